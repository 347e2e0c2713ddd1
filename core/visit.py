"""The one model of a visit: decode, validate, normalise, key and flatten into analyst rows.

Pure Python (no Beam), so pipelines, subscribers and the simulator all call the same code.

Rules:
- A record that cannot be a visit (not UTF-8, not JSON, not an object, or breaking the visit
  schema outside its events) is rejected whole: one ``dead_letter`` row, level ``visit``.
- A bad event inside an otherwise valid visit is rejected alone: one ``dead_letter`` row, level
  ``event``, with the visit's id and the event's index; the visit and its good events load, and
  ``visits.rejected_event_count`` says how many were left out.
- Timestamps become UTC; a timestamp without a zone is read as UTC.
- Keys are deterministic: ``visit_id`` is a hash of the normalised visit, events are keyed by
  ``(visit_id, event_index)``, so every path gives the same visit the same keys.

Validation, both compiled from ``metadata/visit.schema.json``: jsonschema-rs (Rust) judges the
whole visit, events included, in one call; only a visit it rejects is checked again, envelope and
events one by one, by fastjsonschema's validators, whose messages are the dead letters' reasons.
Both implement draft-07, so the verdicts agree (``tests/test_visit_schema.py``).
"""

import copy
import dataclasses
import datetime
import decimal
import functools
import hashlib
import typing
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import fastjsonschema
import jsonschema_rs
import orjson

from clickstream.core import contract, names

_BOM = "\ufeff"
_CENT = decimal.Decimal("1e-9")  # BigQuery NUMERIC scale: drops float artifacts, keeps cents
_NUMERIC = decimal.Context(prec=38)  # BigQuery NUMERIC precision
_NUMERIC_LIMIT = decimal.Decimal("1e29")  # NUMERIC holds 29 digits before the point
_ZERO = decimal.Decimal(0)


Validator = Callable[[object], object]  # raises fastjsonschema.JsonSchemaValueException


def _compile_validators() -> tuple[Validator, Validator, dict[str, Validator]]:
    """Validators compiled from the visit schema: the envelope, an event's common fields and,
    per event type, its details (the schema's if/then rules, applied by dispatch because
    fastjsonschema evaluates a failing ``if`` by raising, which is slow on the hot path)."""
    schema = contract.visit_schema()
    definitions = schema["definitions"]

    def compiled(fragment: dict[str, Any]) -> Validator:
        return fastjsonschema.compile({**fragment, "definitions": definitions})

    envelope = copy.deepcopy(schema)
    # Events are checked one by one, so that a bad event does not sink its visit.
    envelope["properties"]["events"] = {"type": "array"}
    event = {key: value for key, value in definitions["event"].items() if key != "allOf"}
    details = {
        rule["if"]["properties"]["event_type"]["const"]: compiled(
            rule["then"]["properties"]["details"]
        )
        for rule in definitions["event"]["allOf"]
    }
    return fastjsonschema.compile(envelope), compiled(event), details


_validate_envelope, _validate_event, _validate_details = _compile_validators()
# Whether a decoded record is a visit that holds the schema, events included.
holds_schema = jsonschema_rs.validator_for(contract.visit_schema()).is_valid


@dataclasses.dataclass
class ParsedRecord:
    """What one input record became: rows per table name (``contract.TABLES``)."""

    rows: dict[str, list[dict[str, Any]]]

    @property
    def visit_loaded(self) -> bool:
        return bool(self.rows["visits"])

    def dead_letters(self, level: str) -> list[dict[str, Any]]:
        return [row for row in self.rows["dead_letter"] if row["level"] == level]


def _empty_rows() -> dict[str, list[dict[str, Any]]]:
    return {name: [] for name in contract.TABLES}


def _hash(*parts: object) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def _as_text(payload: bytes | str) -> str:
    if isinstance(payload, bytes):
        return payload.decode("utf-8", errors="replace")
    return payload


def dead_letter_row(
    payload: bytes | str,
    source: str,
    reason: str,
    *,
    visit_id: str | None = None,
    event_index: int | None = None,
    level: str | None = None,
) -> dict[str, Any]:
    """A ``dead_letter`` row. Level ``event`` when the event of a loaded visit is meant (or
    another level given for it, e.g. ``late``: a valid event that missed its window)."""
    text = _as_text(payload)
    level = level or ("visit" if visit_id is None else "event")
    key = _hash(level, source, text) if level == "visit" else _hash(level, visit_id, event_index)
    return {
        "dead_letter_id": key,
        "level": level,
        "source": source,
        "reason": reason,
        "payload": text,
        "visit_id": visit_id,
        "event_index": event_index,
    }


def parse_timestamp(text: str) -> datetime.datetime:
    """ISO 8601 to an aware UTC datetime; no zone means UTC. Raises ValueError."""
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.UTC)
    try:
        return moment.astimezone(datetime.UTC)
    except OverflowError:
        raise ValueError("outside years 1-9999 once in UTC") from None


@functools.lru_cache(maxsize=4096)  # a visit's events often share one timestamp
def _utc(text: str) -> tuple[datetime.datetime, str]:
    moment = parse_timestamp(text)
    return moment, moment.isoformat()


@functools.lru_cache(maxsize=8192)  # prices repeat: a shop sells few products
def _numeric(value: float | int) -> decimal.Decimal:
    """A JSON number as a NUMERIC value (9 decimals). Raises ValueError beyond NUMERIC's range."""
    number = _NUMERIC.create_decimal(repr(value)).quantize(_CENT, context=_NUMERIC)
    if abs(number) >= _NUMERIC_LIMIT:
        raise ValueError(f"{value} is beyond BigQuery NUMERIC's range")
    return number


def _line_amount(price: decimal.Decimal, quantity: int) -> decimal.Decimal:
    """price x quantity. Raises ValueError beyond NUMERIC's range."""
    amount = _NUMERIC.multiply(price, int(quantity))
    if amount >= _NUMERIC_LIMIT:
        raise ValueError(f"line amount {price} x {quantity} is beyond BigQuery NUMERIC's range")
    return amount


@functools.lru_cache(maxsize=8192)
def _numeric_text(value: decimal.Decimal) -> str:
    """A NUMERIC as exact text, e.g. '379.94' for the source's 379.94000000000005."""
    return format(value.normalize(), "f")


@functools.lru_cache(maxsize=8192)  # a site has few pages
def _page_path(url: str) -> str:
    return urlsplit(url).path or "/"


def _coordinates(geolocation: object) -> tuple[float | None, float | None]:
    latitude, _, longitude = str(geolocation).partition(",")
    try:
        lat, lng = float(latitude), float(longitude)
    except ValueError:
        return None, None
    if -90 <= lat <= 90 and -180 <= lng <= 180:
        return lat, lng
    return None, None


def decode(payload: bytes | str) -> object:
    """Bytes or text of one record to its JSON value. Raises ValueError with a short reason."""
    try:  # what orjson reads as it is (UTF-8, JSON whitespace around) reads the same below
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        pass
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"not UTF-8: {error.reason} at byte {error.start}") from None
    text = payload.lstrip(_BOM).strip()
    if not text:
        raise ValueError("empty record")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"invalid JSON: {error}") from None


def event_rows(
    visit: dict[str, Any], visit_id: str, index: int, event: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """(table, row) for a valid, normalised event: one row, plus purchase_items for a purchase.
    Each row is one dict, the event's columns first (extended in place, not merged)."""
    details = event["details"]
    kind = event["event_type"]
    stamp = event["timestamp"]
    device = visit.get("device_type")
    row = {
        "visit_id": visit_id,
        "event_index": index,
        "event_timestamp": stamp,
        "session_id": visit["session_id"],
        "user_id": visit["user_id"],
        "device_type": device,
    }
    if kind == "page_view":
        url = details["page_url"]
        row["page_url"] = url
        row["page_path"] = _page_path(url)
        row["referrer_url"] = details.get("referrer_url")
        return [("page_views", row)]
    if kind == "add_item_to_cart":
        row.update(_product_line(details))
        return [("cart_adds", row)]
    items = details["items"]
    order, currency = details["order_id"], details.get("currency")
    row["order_id"] = order
    row["amount"] = _numeric_text(_numeric(details["amount"]))
    row["currency"] = currency
    row["item_count"] = len(items)
    row["unit_count"] = sum(int(item["quantity"]) for item in items)
    rows = [("purchases", row)]
    for item_index, item in enumerate(items):
        line = {
            "visit_id": visit_id,
            "event_index": index,
            "item_index": item_index,
            "event_timestamp": stamp,
            "order_id": order,
            "device_type": device,
            **_product_line(item),
            "currency": currency,
        }
        rows.append(("purchase_items", line))
    return rows


def _product_line(details: dict[str, Any]) -> dict[str, Any]:
    return _priced_product(
        details["product_id"],
        details.get("product_name"),
        details.get("category"),
        details["price"],
        details["quantity"],
    )


@functools.lru_cache(maxsize=8192, typed=True)  # a shop sells few products, at few prices
def _priced_product(
    product_id: str, name: str | None, category: str | None, price: float, quantity: int
) -> dict[str, Any]:
    """The product columns of a cart_adds or purchase_items row (merged into it, never shared)."""
    number = _numeric(price)
    return {
        "product_id": product_id,
        "product_name": name,
        "category": category,
        "price": _numeric_text(number),
        "quantity": int(quantity),  # draft-07 integers include 2.0
        "line_amount": _numeric_text(_line_amount(number, quantity)),
    }


class NormalisedEvent(typing.NamedTuple):
    raw: object  # as received
    event: dict[str, Any] | None  # unwrapped, timestamp as UTC ISO text; None when rejected
    moment: datetime.datetime | None
    reason: str = ""  # why it was rejected


_accepted = tuple.__new__  # a NormalisedEvent of its four fields, without NamedTuple's Python call


def _reason(error: fastjsonschema.JsonSchemaValueException, subject: str) -> str:
    """fastjsonschema's message ("data.x must be ...") about ``subject`` ("event.x must be")."""
    return subject + error.message.removeprefix("data")


def _unwrap(raw: object) -> Any:
    """The schema's event_entry is bare or wrapped as {"event": {...}}; this is the event.
    Unwrapping before validation reports a bad wrapped event by its real fault."""
    return raw["event"] if isinstance(raw, dict) and len(raw) == 1 and "event" in raw else raw


def _check_line_amounts(event: dict[str, Any]) -> None:
    """Raises ValueError when a price x quantity does not fit BigQuery NUMERIC."""
    kind = event["event_type"]
    if kind == "add_item_to_cart":
        _product_line(event["details"])
    elif kind == "purchase":
        for line in event["details"]["items"]:
            _product_line(line)


def _event_fault(event: Any) -> str:
    """Why an (unwrapped) event breaks the schema, or "" when it does not."""
    try:
        _validate_event(event)
    except fastjsonschema.JsonSchemaValueException as error:
        return _reason(error, "event")
    try:
        _validate_details[event["event_type"]](event["details"])
    except fastjsonschema.JsonSchemaValueException as error:
        return _reason(error, "event.details")
    return ""


def normalise_event(raw: object, checked: bool = False) -> NormalisedEvent:
    """Unwrap, validate (unless ``checked``: its visit holds the schema) and convert one event;
    a rejected one carries the reason."""
    event = _unwrap(raw)
    if not checked and (fault := _event_fault(event)):
        return NormalisedEvent(raw, None, None, fault)
    try:
        moment, stamp = _utc(event["timestamp"])
    except ValueError as error:
        return NormalisedEvent(
            raw, None, None, f"invalid timestamp {event['timestamp']!r}: {error}"
        )
    if event["event_type"] != "page_view":
        try:
            _check_line_amounts(event)
        except ValueError as error:
            return NormalisedEvent(raw, None, None, str(error))
    normalised = event.copy()
    normalised["timestamp"] = stamp
    return _accepted(NormalisedEvent, (raw, normalised, moment, ""))


class InvalidVisit(ValueError):
    """A record that cannot be a visit; the message is the reason kept in the dead letter."""


def read_visit(payload: bytes | str) -> tuple[dict[str, Any], bool]:
    """Decode one record and check it against the visit schema: (the visit, whether its events
    hold the schema too; if not, each is checked alone by ``normalise_event``). Raises
    InvalidVisit when the record is not a visit."""
    visit = decode(payload)
    if not isinstance(visit, dict):
        raise InvalidVisit(f"not a visit: a JSON {type(visit).__name__}, expected an object")
    if holds_schema(visit):
        return visit, True
    try:
        _validate_envelope(visit)
    except fastjsonschema.JsonSchemaValueException as error:
        raise InvalidVisit(_reason(error, "visit")) from None
    return visit, False


def visit_key(visit: dict[str, Any], events: list[NormalisedEvent]) -> str:
    """The visit's deterministic id: a hash of the visit with its events normalised, so both
    input shapes of one visit, and any key order, give the same id."""
    return _hash(
        {**visit, "events": [_unwrap(e.raw) if e.event is None else e.event for e in events]}
    )


def visit_row(
    visit: dict[str, Any], visit_id: str, events: list[NormalisedEvent]
) -> dict[str, Any]:
    """The ``visits`` row: the visit's attributes and what became of its events (one pass)."""
    counts = dict.fromkeys(names.EVENT_TABLES, 0)
    amount = _ZERO
    valid = 0
    first = last = None  # the first valid event at the earliest and at the latest moment
    earliest = latest = None
    for normalised in events:
        event, moment = normalised.event, normalised.moment
        if event is None or moment is None:
            continue
        valid += 1
        kind = event["event_type"]
        counts[kind] += 1
        if kind == "purchase":
            amount = _NUMERIC.add(amount, _numeric(event["details"]["amount"]))
        if earliest is None or moment < earliest:
            first, earliest = event, moment
        if latest is None or moment > latest:
            last, latest = event, moment
    latitude, longitude = _coordinates(visit.get("geolocation"))
    return {
        "visit_id": visit_id,
        "session_id": visit["session_id"],
        "user_id": visit["user_id"],
        "device_type": visit.get("device_type"),
        "user_agent": visit.get("user_agent"),
        "geolocation": visit.get("geolocation"),
        "latitude": latitude,
        "longitude": longitude,
        "visit_start": first["timestamp"] if first else None,
        "visit_end": last["timestamp"] if last else None,
        "event_count": len(events),
        "page_view_count": counts["page_view"],
        "cart_add_count": counts["add_item_to_cart"],
        "purchase_count": counts["purchase"],
        "rejected_event_count": len(events) - valid,
        "purchase_amount": _numeric_text(amount) if amount < _NUMERIC_LIMIT else None,
    }


def parse_visit(payload: bytes | str, source: str) -> ParsedRecord:
    """Parse one record (a JSON line or a Pub/Sub message) into rows for every table."""
    rows = _empty_rows()
    try:
        visit, checked = read_visit(payload)
    except ValueError as error:
        rows["dead_letter"].append(dead_letter_row(payload, source, str(error)))
        return ParsedRecord(rows)
    events = [normalise_event(raw, checked) for raw in visit["events"]]
    visit_id = visit_key(visit, events)
    for index, event in enumerate(events):
        if event.event is None:
            rows["dead_letter"].append(
                dead_letter_row(
                    orjson.dumps(event.raw),
                    source,
                    event.reason,
                    visit_id=visit_id,
                    event_index=index,
                )
            )
        else:
            for table, row in event_rows(visit, visit_id, index, event.event):
                rows[table].append(row)
    rows["visits"].append(visit_row(visit, visit_id, events))
    return ParsedRecord(rows)
