"""Plan, then apply: the catalog's operational resources (Cloud Monitoring for the
denial-of-service drill, Dataplex for governance) as code, with one mechanism for all of them.

A resource is declared once: a ``Resource`` with its kind, a stable name and the fields it must
have, in the JSON form of its API (as ``proto-plus`` ``to_dict`` gives it). ``plan`` reads what
exists through the kind's ``Adapter`` and compares, field by field, only what the declaration
says (fields the server fills in are not compared):

- ``create``: it does not exist;
- ``update``: declared fields differ, and the API can change them in place (they are listed);
- ``replace``: a field the API cannot change differs (listed): it is deleted, then created;
- ``unchanged``: every declared field matches.

``render`` prints a plan for review; ``apply`` performs exactly its changes, in order (a
resource's dependencies come before it), and nothing else, so planning again shows every
resource unchanged and applying twice changes nothing.
"""

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

CREATE, UPDATE, REPLACE, UNCHANGED = "create", "update", "replace", "unchanged"
SYMBOLS = {CREATE: "+", UPDATE: "~", REPLACE: "-/+", UNCHANGED: "="}


@dataclasses.dataclass(frozen=True)
class Resource:
    """One resource as declared: ``fields`` in its API's JSON form; ``immutable`` names the
    fields (dotted paths, or their prefixes) that the API cannot change in place."""

    kind: str
    name: str
    fields: Mapping[str, Any]
    immutable: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


class Adapter(Protocol):
    """The API of one kind of resource: the real client library, talking to Google Cloud (or
    to a fake service in tests)."""

    def read(self, resource: Resource) -> dict | None:
        """The resource as it exists, in the same JSON form; None when it does not."""

    def create(self, resource: Resource) -> None: ...

    def update(self, resource: Resource, current: dict, fields: tuple[str, ...]) -> None:
        """Change ``fields`` (dotted paths) to their declared values, nothing else."""

    def delete(self, resource: Resource, current: dict) -> None: ...


@dataclasses.dataclass(frozen=True)
class Change:
    action: str  # CREATE, UPDATE, REPLACE or UNCHANGED
    resource: Resource
    fields: tuple[str, ...] = ()  # what differs (update, replace)
    current: dict | None = None  # what exists (update, replace, unchanged)


def differences(declared: Any, current: Any, path: str = "") -> list[str]:
    """Dotted paths where ``current`` differs from ``declared``. Only the keys ``declared``
    has are compared; lists are compared whole (their order matters)."""
    if isinstance(declared, Mapping) and isinstance(current, Mapping):
        found = []
        for key, value in declared.items():
            found += differences(value, current.get(key), f"{path}.{key}" if path else key)
        return found
    return [] if _same(declared, current) else [path]


def _same(declared: Any, current: Any) -> bool:
    if isinstance(declared, Mapping):
        return isinstance(current, Mapping) and not differences(declared, current)
    if isinstance(declared, list):
        return (
            isinstance(current, list)
            and len(declared) == len(current)
            and all(_same(d, c) for d, c in zip(declared, current, strict=True))
        )
    return declared == current


def _immutable(resource: Resource, fields: Iterable[str]) -> bool:
    return any(
        field == frozen or field.startswith(frozen + ".")
        for field in fields
        for frozen in resource.immutable
    )


def plan(resources: Iterable[Resource], adapters: Mapping[str, Adapter]) -> list[Change]:
    """The change each resource needs, in declaration order."""
    changes = []
    for resource in resources:
        current = adapters[resource.kind].read(resource)
        if current is None:
            changes.append(Change(CREATE, resource))
            continue
        fields = tuple(differences(resource.fields, current))
        if not fields:
            changes.append(Change(UNCHANGED, resource, (), current))
        elif _immutable(resource, fields):
            changes.append(Change(REPLACE, resource, fields, current))
        else:
            changes.append(Change(UPDATE, resource, fields, current))
    return changes


def _value(fields: Mapping[str, Any], path: str) -> Any:
    value: Any = fields
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def render(changes: list[Change]) -> str:
    """The plan as text: one line per resource, the changed fields (with their declared values)
    under updates and replacements, every declared field under creations, then a summary."""
    lines = []
    for change in changes:
        lines.append(f"{SYMBOLS[change.action]:>3} {change.action:<9} {change.resource.label}")
        shown = change.fields if change.fields else ()
        if change.action == CREATE:
            shown = tuple(_leaves(change.resource.fields))
        for field in shown:
            frozen = change.action == REPLACE and _immutable(change.resource, [field])
            why = " (cannot change in place)" if frozen else ""
            lines.append(f"      {field}: {_short(_value(change.resource.fields, field))}{why}")
    counts = {action: sum(c.action == action for c in changes) for action in SYMBOLS}
    lines.append(
        f"Plan: {counts[CREATE]} to create, {counts[UPDATE]} to update, "
        f"{counts[REPLACE]} to replace, {counts[UNCHANGED]} unchanged."
    )
    return "\n".join(lines)


def _leaves(fields: Mapping[str, Any], path: str = "") -> Iterable[str]:
    for key, value in fields.items():
        dotted = f"{path}.{key}" if path else key
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, dotted)
        else:
            yield dotted


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def apply(changes: list[Change], adapters: Mapping[str, Adapter]) -> list[Change]:
    """Perform the plan's changes in order; returns those performed (every one but the
    unchanged)."""
    done = []
    for change in changes:
        adapter = adapters[change.resource.kind]
        if change.action == CREATE:
            adapter.create(change.resource)
        elif change.action == UPDATE:
            adapter.update(change.resource, change.current or {}, change.fields)
        elif change.action == REPLACE:
            adapter.delete(change.resource, change.current or {})
            adapter.create(change.resource)
        else:
            continue
        done.append(change)
    return done


def top_level(fields: Iterable[str]) -> list[str]:
    """The top-level fields of dotted paths, for an update mask of an API that takes those."""
    return sorted({field.split(".")[0] for field in fields})
