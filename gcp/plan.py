"""Plan, then apply: the catalog's operational resources (Pub/Sub topics and subscriptions,
Cloud Monitoring for the denial-of-service drill, Dataplex for governance) as code, with one
mechanism for all of them.

A resource is declared once: a ``Resource`` with its kind, a stable name and the fields it must
have, in the JSON form of its API (as ``proto-plus`` ``to_dict`` gives it). ``plan`` reads what
exists through the kind's ``Adapter`` and compares, field by field, only what the declaration
says (fields the server fills in are not compared):

- ``create``: it does not exist;
- ``update``: declared fields differ, and the API can change them in place (they are listed);
- ``replace``: a field the API cannot change differs (listed): it is deleted, then created; so
  is every resource declared ``after`` it (a zone's assets go with the zone);
- ``unchanged``: every declared field matches.

A field may hold a ``Reference`` to an earlier resource's name when the server assigns it (an
alert policy's notification channel): it is resolved from what exists, or, for a resource still
to be created, shown as known after apply and resolved once apply has created it.

``render`` prints a plan for review; ``validate`` asks the APIs that offer it (``validate_only``)
to check the changes without making them; ``apply`` performs exactly the plan's changes and
nothing else: first the deletions of replaced resources (dependents before what they depend on),
then creations and updates in declaration order (a resource's dependencies come before it). So
planning again shows every resource unchanged and applying twice changes nothing.
"""

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the messages of the Google client libraries
    import proto

from google.api_core import exceptions

CREATE, UPDATE, REPLACE, UNCHANGED = "create", "update", "replace", "unchanged"
# How Google answers a call to an API the project has not enabled (PERMISSION_DENIED).
DISABLED_API = "has not been used in project"
SYMBOLS = {CREATE: "+", UPDATE: "~", REPLACE: "-/+", UNCHANGED: "="}


class PlanError(RuntimeError):
    """The declarations cannot be planned or applied as they are."""


@dataclasses.dataclass(frozen=True)
class Reference:
    """The value of ``field`` (by default its server-assigned name) of the declared resource
    ``kind`` ``name``, which must be declared before the resource that refers to it."""

    kind: str
    name: str
    field: str = "name"

    def __str__(self) -> str:
        return f"({self.field} of {self.kind} {self.name}, known after apply)"


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

    def read(self, resource: Resource) -> dict[str, Any] | None:
        """The resource as it exists, in the same JSON form; None when it does not."""

    def create(self, resource: Resource) -> dict[str, Any] | None:
        """Create it; returns it as created (in the same JSON form), which resources that refer
        to it need (None when nothing does)."""

    def update(self, resource: Resource, current: dict[str, Any], fields: tuple[str, ...]) -> None:
        """Change ``fields`` (dotted paths) to their declared values, nothing else."""

    def delete(self, resource: Resource, current: dict[str, Any]) -> None: ...


class Validating(Adapter, Protocol):
    """An adapter whose API can check a change without making it (``validate_only``)."""

    def validate(self, change: "Change") -> str | None:
        """None when the API accepts the change, else its reason for refusing it."""


@dataclasses.dataclass(frozen=True)
class Change:
    action: str  # CREATE, UPDATE, REPLACE or UNCHANGED
    resource: Resource
    fields: tuple[str, ...] = ()  # what differs (update, replace)
    current: dict[str, Any] | None = None  # what exists (update, replace, unchanged)
    because: str = ""  # replace: the label of the replaced resource it needs, if that is why


def fields_of(message: "proto.Message") -> dict[str, Any]:
    """A proto-plus message in the JSON form declarations use (enums by name)."""
    fields: dict[str, Any] = type(message).to_dict(message, use_integers_for_enums=False)
    return fields


def differences(declared: Any, current: Any, path: str = "") -> list[str]:
    """Dotted paths where ``current`` differs from ``declared``. Only the keys ``declared``
    has are compared; lists are compared whole (their order matters), but for lists of objects
    of the same length the path goes on into the differing items, by index
    (``conditions.0.threshold_value``)."""
    if isinstance(declared, Mapping) and isinstance(current, Mapping):
        found = []
        for key, value in declared.items():
            found += differences(value, current.get(key), f"{path}.{key}" if path else key)
        return found
    if (
        isinstance(declared, list)
        and isinstance(current, list)
        and len(declared) == len(current)
        and all(isinstance(item, Mapping) for item in declared)
    ):
        found = []
        for index, (item, existing) in enumerate(zip(declared, current, strict=True)):
            found += differences(item, existing, f"{path}.{index}" if path else str(index))
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
    return bool(declared == current)


def _immutable(resource: Resource, fields: Iterable[str]) -> bool:
    return any(
        field == frozen or field.startswith(frozen + ".")
        for field in fields
        for frozen in resource.immutable
    )


def _resolved(value: Any, known: Mapping[tuple[str, str], dict[str, Any]]) -> Any:
    """``value`` with each Reference to a resource in ``known`` replaced by its field there."""
    if isinstance(value, Reference):
        found = known.get((value.kind, value.name))
        return value if found is None else found.get(value.field)
    if isinstance(value, Mapping):
        return {key: _resolved(item, known) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolved(item, known) for item in value]
    return value


def _references(value: Any) -> Iterable[Reference]:
    if isinstance(value, Reference):
        yield value
    elif isinstance(value, Mapping | list):
        for item in value.values() if isinstance(value, Mapping) else value:
            yield from _references(item)


def _check_order(resources: list[Resource]) -> None:
    declared: set[tuple[str, str]] = set()
    for resource in resources:
        for reference in _references(resource.fields):
            if (reference.kind, reference.name) not in declared:
                raise PlanError(
                    f"{resource.label} refers to {reference.kind} {reference.name}, which is "
                    "not declared before it"
                )
        declared.add((resource.kind, resource.name))


def plan(resources: Iterable[Resource], adapters: Mapping[str, Adapter]) -> list[Change]:
    """The change each resource needs, in declaration order. References are resolved from what
    exists; those to resources that apply will create or replace stay unresolved."""
    resources = list(resources)
    _check_order(resources)
    changes: list[Change] = []
    replaced: set[str] = set()
    known: dict[tuple[str, str], dict[str, Any]] = {}
    for declared in resources:
        resource = dataclasses.replace(declared, fields=_resolved(declared.fields, known))
        current = _read(adapters[resource.kind], resource)
        fields = () if current is None else tuple(differences(resource.fields, current))
        cause = next((label for label in resource.after if label in replaced), "")
        if current is None:
            changes.append(Change(CREATE, resource))
            continue
        if cause:
            changes.append(Change(REPLACE, resource, fields, current, because=cause))
        elif not fields:
            changes.append(Change(UNCHANGED, resource, (), current))
        elif _immutable(resource, fields):
            changes.append(Change(REPLACE, resource, fields, current))
        else:
            changes.append(Change(UPDATE, resource, fields, current))
        if changes[-1].action == REPLACE:
            replaced.add(resource.label)
        else:
            known[(resource.kind, resource.name)] = current
    return changes


def _read(adapter: Adapter, resource: Resource) -> dict[str, Any] | None:
    """The resource as it exists; None also when its API is not enabled in the project yet (on
    a new project nothing of that API can exist; apply enables it before it creates this)."""
    try:
        return adapter.read(resource)
    except exceptions.PermissionDenied as error:
        if DISABLED_API in str(error.message):
            return None
        raise


def value(fields: Any, path: str) -> Any:
    """The value at a dotted path; keys may hold dots themselves (an IAM role's name), list
    items are reached by index."""
    if isinstance(fields, list):
        index, _, rest = path.partition(".")
        if not index.isdigit() or int(index) >= len(fields):
            return None
        return fields[int(index)] if not rest else value(fields[int(index)], rest)
    if not isinstance(fields, Mapping):
        return None
    if path in fields:
        return fields[path]
    key = next((k for k in fields if path.startswith(f"{k}.")), None)
    return None if key is None else value(fields[key], path[len(key) + 1 :])


def render(changes: list[Change], limit: int | None = 160) -> str:
    """The plan as text: one line per resource, the changed fields (with their declared values,
    cut at ``limit`` characters; None: whole) under updates and replacements, every declared
    field under creations, then a summary."""
    lines = []
    for change in changes:
        lines.append(f"{SYMBOLS[change.action]:>3} {change.action:<9} {change.resource.label}")
        if change.because:
            lines.append(f"      (replaced with {change.because})")
        shown = change.fields if change.fields else ()
        if change.action == CREATE:
            shown = tuple(_leaves(change.resource.fields))
        for field in shown:
            frozen = change.action == REPLACE and _immutable(change.resource, [field])
            why = " (cannot change in place)" if frozen else ""
            text = short(value(change.resource.fields, field), limit)
            lines.append(f"      {field}: {text}{why}")
    counts = {action: sum(c.action == action for c in changes) for action in SYMBOLS}
    lines.append(
        f"Plan: {counts[CREATE]} to create, {counts[UPDATE]} to update, "
        f"{counts[REPLACE]} to replace, {counts[UNCHANGED]} unchanged."
    )
    return "\n".join(lines)


def performed(change: Change) -> str:
    """One line for a change apply has made."""
    return f"done: {SYMBOLS[change.action]} {change.action} {change.resource.label}"


def _leaves(fields: Mapping[str, Any] | list[Any], path: str = "") -> Iterable[str]:
    """The dotted paths of the values in ``fields``, into objects and lists of objects."""
    items = fields.items() if isinstance(fields, Mapping) else enumerate(fields)
    for key, value in items:
        dotted = f"{path}.{key}" if path else str(key)
        nested = isinstance(value, list) and all(isinstance(item, Mapping) for item in value)
        if value and (isinstance(value, Mapping) or nested):
            yield from _leaves(value, dotted)
        else:
            yield dotted


def short(found: Any, limit: int | None = 160) -> str:
    """A value as JSON, cut at ``limit`` characters (None: whole)."""
    text = json.dumps(found, sort_keys=True, default=str)
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


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
    performed: Callable[[Change], None] | None = None,
) -> list[Change]:
    """Perform the plan's changes: the deletions of replaced resources (last declared first),
    then creations and updates in order, each resource with the references that apply resolved
    before it, calling ``performed`` after each. Returns those performed (every one but the
    unchanged)."""
    for change in reversed(changes):
        if change.action == REPLACE:
            adapters[change.resource.kind].delete(change.resource, change.current or {})
    done = []
    known: dict[tuple[str, str], dict[str, Any]] = {}
    for change in changes:
        resource = dataclasses.replace(
            change.resource, fields=_resolved(change.resource.fields, known)
        )
        for reference in _references(resource.fields):
            raise PlanError(
                f"{resource.label} refers to {reference.kind} {reference.name}, whose "
                f"{reference.field} is unknown: its adapter's create returned nothing"
            )
        adapter = adapters[resource.kind]
        created = None
        if change.action in (CREATE, REPLACE):
            created = adapter.create(resource)
        elif change.action == UPDATE:
            adapter.update(resource, change.current or {}, change.fields)
        current = created if change.action in (CREATE, REPLACE) else change.current
        if current is not None:
            known[(resource.kind, resource.name)] = current
        if change.action == UNCHANGED:
            continue
        done.append(change)
        if performed:
            performed(change)
    return done


def top_level(fields: Iterable[str]) -> list[str]:
    """The top-level fields of dotted paths, for an update mask of an API that takes those."""
    return sorted({field.split(".")[0] for field in fields})
