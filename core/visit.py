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
"""

import collections
import copy
import dataclasses
import datetime
import decimal
import functools
import hashlib
import operator
import typing
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import fastjsonschema
import orjson

from clickstream.core import contract

EVENT_TABLES = {
    "page_view": "page_views",
    "add_item_to_cart": "cart_adds",
    "purchase": "purchases",
}
_BOM = "\ufeff"
_CENT = decimal.Decimal("1e-9")  # BigQuery NUMERIC scale: drops float artifacts, keeps cents
_NUMERIC = decimal.Context(prec=38)  # BigQuery NUMERIC precision
_NUMERIC_LIMIT = decimal.Decimal("1e29")  # NUMERIC holds 29 digits before the point


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


@functools.lru_cache(maxsize=8192)
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
    try:
        lat, lng = (float(part) for part in str(geolocation).split(","))
    except ValueError:
        return None, None
    if -90 <= lat <= 90 and -180 <= lng <= 180:
        return lat, lng
    return None, None


def decode(payload: bytes | str) -> object:
    """Bytes or text of one record to its JSON value. Raises ValueError with a short reason."""
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
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(table, row) for a valid, normalised event: one row, plus purchase_items for a purchase."""
    details = event["details"]
    common = {
        "visit_id": visit_id,
        "event_index": index,
        "event_timestamp": event["timestamp"],
        "session_id": visit["session_id"],
        "user_id": visit["user_id"],
        "device_type": visit.get("device_type"),
    }
    kind = event["event_type"]
    if kind == "page_view":
        url = details["page_url"]
        yield (
            "page_views",
            {
                **common,
                "page_url": url,
                "page_path": _page_path(url),
                "referrer_url": details.get("referrer_url"),
            },
        )
        return
    if kind == "add_item_to_cart":
        yield "cart_adds", {**common, **_product_line(details)}
        return
    items = details["items"]
    yield (
        "purchases",
        {
            **common,
            "order_id": details["order_id"],
            "amount": _numeric_text(_numeric(details["amount"])),
            "currency": details.get("currency"),
            "item_count": len(items),
            "unit_count": sum(int(item["quantity"]) for item in items),
        },
    )
    for item_index, item in enumerate(items):
        yield (
            "purchase_items",
            {
                "visit_id": visit_id,
                "event_index": index,
                "item_index": item_index,
                "event_timestamp": common["event_timestamp"],
                "order_id": details["order_id"],
                "device_type": common["device_type"],
                **_product_line(item),
                "currency": details.get("currency"),
            },
        )


def _product_line(details: dict[str, Any]) -> dict[str, Any]:
    price = _numeric(details["price"])
    return {
        "product_id": details["product_id"],
        "product_name": details.get("product_name"),
        "category": details.get("category"),
        "price": _numeric_text(price),
        "quantity": int(details["quantity"]),  # draft-07 integers include 2.0
        "line_amount": _numeric_text(_line_amount(price, details["quantity"])),
    }


class NormalisedEvent(typing.NamedTuple):
    raw: object  # as received
    event: dict[str, Any] | None  # unwrapped, timestamp as UTC ISO text; None when rejected
    moment: datetime.datetime | None
    reason: str = ""  # why it was rejected


def _reason(error: fastjsonschema.JsonSchemaValueException, subject: str) -> str:
    """fastjsonschema's message ("data.x must be ...") about ``subject`` ("event.x must be")."""
    return subject + error.message.removeprefix("data")


def _unwrap(raw: object) -> Any:
    """The schema's event_entry is bare or wrapped as {"event": {...}}; this is the event.
    Unwrapping before validation reports a bad wrapped event by its real fault."""
    return raw["event"] if isinstance(raw, dict) and len(raw) == 1 and "event" in raw else raw


def _check_line_amounts(event: dict[str, Any]) -> None:
    """Raises ValueError when a price x quantity does not fit BigQuery NUMERIC."""
    kind, details = event["event_type"], event["details"]
    lines = (
        [details] if kind == "add_item_to_cart" else details["items"] if kind == "purchase" else ()
    )
    for line in lines:
        _line_amount(_numeric(line["price"]), line["quantity"])


def normalise_event(raw: object) -> NormalisedEvent:
    """Unwrap, validate and convert one event; a rejected one carries the reason."""
    event = _unwrap(raw)
    try:
        _validate_event(event)
    except fastjsonschema.JsonSchemaValueException as error:
        return NormalisedEvent(raw, None, None, _reason(error, "event"))
    try:
        _validate_details[event["event_type"]](event["details"])
    except fastjsonschema.JsonSchemaValueException as error:
        return NormalisedEvent(raw, None, None, _reason(error, "event.details"))
    try:
        moment, stamp = _utc(event["timestamp"])
    except ValueError as error:
        return NormalisedEvent(
            raw, None, None, f"invalid timestamp {event['timestamp']!r}: {error}"
        )
    try:
        _check_line_amounts(event)
    except ValueError as error:
        return NormalisedEvent(raw, None, None, str(error))
    return NormalisedEvent(raw, {**event, "timestamp": stamp}, moment)


class InvalidVisit(ValueError):
    """A record that cannot be a visit; the message is the reason kept in the dead letter."""


def read_visit(payload: bytes | str) -> dict[str, Any]:
    """Decode one record and check it against the visit schema, events aside."""
    visit = decode(payload)
    if not isinstance(visit, dict):
        raise InvalidVisit(f"not a visit: a JSON {type(visit).__name__}, expected an object")
    try:
        _validate_envelope(visit)
    except fastjsonschema.JsonSchemaValueException as error:
        raise InvalidVisit(_reason(error, "visit")) from None
    return visit


def visit_key(visit: dict[str, Any], events: list[NormalisedEvent]) -> str:
    """The visit's deterministic id: a hash of the visit with its events normalised, so both
    input shapes of one visit, and any key order, give the same id."""
    return _hash(
        {**visit, "events": [_unwrap(e.raw) if e.event is None else e.event for e in events]}
    )


def visit_row(
    visit: dict[str, Any], visit_id: str, events: list[NormalisedEvent]
) -> dict[str, Any]:
    """The ``visits`` row: the visit's attributes and what became of its events."""
    timed = [(e.moment, e.event) for e in events if e.moment is not None and e.event is not None]
    valid = [event for _, event in timed]
    first = min(timed, key=operator.itemgetter(0))[1] if timed else None
    last = max(timed, key=operator.itemgetter(0))[1] if timed else None
    kinds = collections.Counter(event["event_type"] for event in valid)
    amount = functools.reduce(
        _NUMERIC.add,
        (
            _numeric(event["details"]["amount"])
            for event in valid
            if event["event_type"] == "purchase"
        ),
        decimal.Decimal(0),
    )
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
        "page_view_count": kinds["page_view"],
        "cart_add_count": kinds["add_item_to_cart"],
        "purchase_count": kinds["purchase"],
        "rejected_event_count": len(events) - len(valid),
        "purchase_amount": _numeric_text(amount) if amount < _NUMERIC_LIMIT else None,
    }


def parse_visit(payload: bytes | str, source: str) -> ParsedRecord:
    """Parse one record (a JSON line or a Pub/Sub message) into rows for every table."""
    rows = _empty_rows()
    try:
        visit = read_visit(payload)
    except ValueError as error:
        rows["dead_letter"].append(dead_letter_row(payload, source, str(error)))
        return ParsedRecord(rows)
    events = [normalise_event(raw) for raw in visit["events"]]
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
            continue
        for table, row in event_rows(visit, visit_id, index, event.event):
            rows[table].append(row)
    rows["visits"].append(visit_row(visit, visit_id, events))
    return ParsedRecord(rows)
