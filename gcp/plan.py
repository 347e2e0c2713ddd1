"""Plan, then apply: the catalog's operational resources (Cloud Monitoring for the
denial-of-service drill, Dataplex for governance) as code, with one mechanism for all of them.

A resource is declared once: a ``Resource`` with its kind, a stable name and the fields it must
have, in the JSON form of its API (as ``proto-plus`` ``to_dict`` gives it). ``plan`` reads what
exists through the kind's ``Adapter`` and compares, field by field, only what the declaration
says (fields the server fills in are not compared):

- ``create``: it does not exist;
- ``update``: declared fields differ, and the API can change them in place (they are listed);
- ``replace``: a field the API cannot change differs (listed): it is deleted, then created;
  so is every resource declared ``after`` it (a zone's assets go with the zone);
- ``unchanged``: every declared field matches.

``render`` prints a plan for review; ``validate`` asks the APIs that offer it (``validate_only``)
to check the changes without making them; ``apply`` performs exactly the plan's changes and
nothing else: first the deletions of replaced resources (dependents before what they depend on),
then creations and updates in declaration order (a resource's dependencies come before it). So
planning again shows every resource unchanged and applying twice changes nothing.
"""

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

CREATE, UPDATE, REPLACE, UNCHANGED = "create", "update", "replace", "unchanged"
SYMBOLS = {CREATE: "+", UPDATE: "~", REPLACE: "-/+", UNCHANGED: "="}


@dataclasses.dataclass(frozen=True)
class Resource:
    """One resource as declared: ``fields`` in its API's JSON form; ``immutable`` names the
    fields (dotted paths, or their prefixes) that the API cannot change in place; ``after``
    the labels of the resources it needs (declared before it)."""

    kind: str
    name: str
    fields: Mapping[str, Any]
    immutable: tuple[str, ...] = ()
    after: tuple[str, ...] = ()

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


class Validating(Adapter, Protocol):
    """An adapter whose API can check a change without making it (``validate_only``)."""

    def validate(self, change: "Change") -> str | None:
        """None when the API accepts the change, else its reason for refusing it."""


@dataclasses.dataclass(frozen=True)
class Change:
    action: str  # CREATE, UPDATE, REPLACE or UNCHANGED
    resource: Resource
    fields: tuple[str, ...] = ()  # what differs (update, replace)
    current: dict | None = None  # what exists (update, replace, unchanged)
    because: str = ""  # replace: the label of the replaced resource it needs, if that is why


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
    replaced: set[str] = set()
    for resource in resources:
        current = adapters[resource.kind].read(resource)
        fields = () if current is None else tuple(differences(resource.fields, current))
        cause = next((label for label in resource.after if label in replaced), "")
        if current is None:
            changes.append(Change(CREATE, resource))
        elif cause:
            changes.append(Change(REPLACE, resource, fields, current, because=cause))
        elif not fields:
            changes.append(Change(UNCHANGED, resource, (), current))
        elif _immutable(resource, fields):
            changes.append(Change(REPLACE, resource, fields, current))
        else:
            changes.append(Change(UPDATE, resource, fields, current))
        if changes[-1].action == REPLACE:
            replaced.add(resource.label)
    return changes


def _value(fields: Any, path: str) -> Any:
    """The value at a dotted path; keys may hold dots themselves (an IAM role's name), list
    items are reached by index."""
    if isinstance(fields, list):
        index, _, rest = path.partition(".")
        if not index.isdigit() or int(index) >= len(fields):
            return None
        return fields[int(index)] if not rest else _value(fields[int(index)], rest)
    if not isinstance(fields, Mapping):
        return None
    if path in fields:
        return fields[path]
    key = next((k for k in fields if path.startswith(f"{k}.")), None)
    return None if key is None else _value(fields[key], path[len(key) + 1 :])


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
        if change.because:
            lines.append(f"      (replaced with {change.because})")
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


def validate(changes: list[Change], adapters: Mapping[str, Adapter]) -> list[tuple[Change, str]]:
    """Ask the API to check each creation, update and replacement without making it, where the
    kind's adapter can (``Validating``). A verdict per change: ``ok``, ``refused: <reason>``, or
    ``not checked: <why>`` (the API offers no check, or a resource it needs is created first)."""
    created = {c.resource.label for c in changes if c.action in (CREATE, REPLACE)}
    verdicts = []
    for change in changes:
        if change.action == UNCHANGED:
            continue
        adapter = adapters[change.resource.kind]
        waiting = [label for label in change.resource.after if label in created]
        if not hasattr(adapter, "validate"):
            verdict = f"not checked: the {change.resource.kind} API has no validate_only"
        elif change.action == REPLACE:
            verdict = "not checked: it is deleted before it is created again"
        elif waiting:
            verdict = f"not checked: needs {waiting[0]} first"
        else:
            refused = adapter.validate(change)
            verdict = f"refused: {refused}" if refused else "ok"
        verdicts.append((change, verdict))
    return verdicts


def apply(
    changes: list[Change],
    adapters: Mapping[str, Adapter],
    on_done: Callable[[Change], None] | None = None,
) -> list[Change]:
    """Perform the plan's changes: the deletions of replaced resources (last declared first),
    then creations and updates in order, calling ``on_done`` after each. Returns those performed
    (every one but the unchanged)."""
    for change in reversed(changes):
        if change.action == REPLACE:
            adapters[change.resource.kind].delete(change.resource, change.current or {})
    done = []
    for change in changes:
        adapter = adapters[change.resource.kind]
        if change.action in (CREATE, REPLACE):
            adapter.create(change.resource)
        elif change.action == UPDATE:
            adapter.update(change.resource, change.current or {}, change.fields)
        else:
            continue
        done.append(change)
        if on_done:
            on_done(change)
    return done


def top_level(fields: Iterable[str]) -> list[str]:
    """The top-level fields of dotted paths, for an update mask of an API that takes those."""
    return sorted({field.split(".")[0] for field in fields})
