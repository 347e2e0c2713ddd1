"""The visit model (transforms.visit): nasty input, keys, timestamps, numbers, dead letters, and
the whole real lab data."""

import decimal
import json
from collections import Counter
from pathlib import Path

import nasty_corpus
import pytest

from clickstream.core import contract
from clickstream.core.names import EVENT_TABLES
from clickstream.core.visit import parse_visit

VALID = Path(__file__).parent / "fixtures" / "visits" / "valid"
EVENT_TYPE_OF = {table: kind for kind, table in EVENT_TABLES.items()}


def parse(visit: object, source: str = "test:1"):
    return parse_visit(json.dumps(visit).encode(), source)


def fixture(name: str) -> dict:
    return json.loads((VALID / f"{name}.json").read_bytes())


def visit_id(visit: object) -> str:
    return parse(visit).rows["visits"][0]["visit_id"]


def page_view(timestamp="2024-07-01T09:00:00Z", url="https://example.com/home") -> dict:
    return {"event_type": "page_view", "timestamp": timestamp, "details": {"page_url": url}}


def cart_add(price: object, quantity: object) -> dict:
    details = {"product_id": "HDW-001", "price": price, "quantity": quantity}
    return {
        "event_type": "add_item_to_cart",
        "timestamp": "2024-07-01T09:00:00",
        "details": details,
    }


def purchase(amount: object, items: list[tuple[object, object]]) -> dict:
    lines = [{"product_id": f"P-{i}", "price": p, "quantity": q} for i, (p, q) in enumerate(items)]
    details = {"order_id": "ORD-1", "amount": amount, "currency": "USD", "items": lines}
    return {"event_type": "purchase", "timestamp": "2024-07-01T09:00:00", "details": details}


def visit_of(*events: dict) -> dict:
    return {"session_id": "SID-1", "user_id": "UID-1", "device_type": "mobile", "events": events}


def read_records(data: bytes) -> list[bytes]:
    """Split like a JSON-lines reader: BOM at the start dropped, LF or CRLF, blank lines skipped."""
    lines = data.removeprefix(nasty_corpus.BOM).split(b"\n")
    return [line.removesuffix(b"\r") for line in lines if line.strip()]


def reversed_keys(value: object) -> object:
    if isinstance(value, dict):
        return {key: reversed_keys(value[key]) for key in reversed(value)}
    if isinstance(value, list):
        return [reversed_keys(item) for item in value]
    return value


# --- the nasty corpus -------------------------------------------------------------------------

RECORD_LINES = [line for line in nasty_corpus.lines() if line.record]


@pytest.mark.parametrize("line", RECORD_LINES, ids=lambda line: line.name)
def test_nasty_line_outcome(line):
    parsed = parse_visit(line.text, f"nasty:{line.name}")
    levels = Counter(row["level"] for row in parsed.rows["dead_letter"])
    if not line.loaded:
        assert not parsed.visit_loaded
        assert levels == {"visit": 1}
        return
    loaded = {EVENT_TYPE_OF[table]: len(parsed.rows[table]) for table in EVENT_TYPE_OF}
    assert {kind: count for kind, count in loaded.items() if count} == line.events
    assert levels == ({"event": line.events_rejected} if line.events_rejected else {})
    visit = parsed.rows["visits"][0]
    assert visit["event_count"] == sum(line.events.values()) + line.events_rejected
    assert visit["rejected_event_count"] == line.events_rejected


def test_nasty_corpus_split_like_a_reader():
    data, _ = nasty_corpus.corpus()
    assert data.startswith(nasty_corpus.BOM)
    assert b"\r\n" in data
    assert read_records(data) == [line.text.removeprefix(nasty_corpus.BOM) for line in RECORD_LINES]


def test_nasty_corpus_reconciles():
    data, expected = nasty_corpus.corpus()
    totals = Counter()
    by_type = dict.fromkeys(nasty_corpus.EVENT_TYPES, 0)
    visit_ids = set()
    for number, record in enumerate(read_records(data), start=1):
        parsed = parse_visit(record, f"nasty.jsonl:{number}")
        totals["records_read"] += 1
        totals["visits_loaded"] += parsed.visit_loaded
        totals["visits_rejected"] += len(parsed.dead_letters("visit"))
        totals["events_rejected"] += len(parsed.dead_letters("event"))
        totals["event_count"] += sum(visit["event_count"] for visit in parsed.rows["visits"])
        visit_ids.update(visit["visit_id"] for visit in parsed.rows["visits"])
        for table, kind in EVENT_TYPE_OF.items():
            by_type[kind] += len(parsed.rows[table])
    actual = {
        "records_read": totals["records_read"],
        "visits_loaded": totals["visits_loaded"],
        "visits_rejected": totals["visits_rejected"],
        "events_loaded": sum(by_type.values()),
        "events_rejected": totals["events_rejected"],
        "events_by_type": by_type,
    }
    assert actual == expected
    assert expected["records_read"] == expected["visits_loaded"] + expected["visits_rejected"]
    assert totals["event_count"] == expected["events_loaded"] + expected["events_rejected"]
    assert len(visit_ids) == len({line.text for line in RECORD_LINES if line.loaded})


# --- keys -------------------------------------------------------------------------------------


def test_same_input_same_keys():
    payload = (VALID / "documented-shape.json").read_bytes()
    first, second = parse_visit(payload, "a:1"), parse_visit(payload, "b:7")
    assert first.rows == second.rows
    assert len(first.rows["visits"][0]["visit_id"]) == 32


def test_documented_and_lab_shapes_give_the_same_rows():
    documented = parse(fixture("documented-shape"))
    assert documented.rows == parse(fixture("lab-shape")).rows
    assert len(documented.rows["page_views"]) == len(documented.rows["purchases"]) == 1


def test_documented_and_lab_shapes_with_a_bad_event_share_the_visit_id():
    bad = {"event_type": "page_view", "timestamp": "2024-07-01T09:00:00Z", "details": {}}
    documented, lab = (
        parse(visit_of(page_view(), bad)),
        parse(visit_of(page_view(), {"event": bad})),
    )
    assert len(documented.dead_letters("event")) == len(lab.dead_letters("event")) == 1
    assert documented.rows["visits"][0]["visit_id"] == lab.rows["visits"][0]["visit_id"]


def test_valid_fixtures_have_distinct_visit_ids():
    names = [path.stem for path in sorted(VALID.glob("*.json")) if path.stem != "lab-shape"]
    assert len({visit_id(fixture(name)) for name in names}) == len(names)


@pytest.mark.parametrize(
    "change",
    [
        lambda visit: visit.update(user_id="UID-2"),
        lambda visit: visit.update(device_type="tablet"),
        lambda visit: visit.update(app_version="2"),  # unknown properties are part of the visit
        lambda visit: visit["events"].reverse(),
        lambda visit: visit["events"][0].update(timestamp="2024-07-01T09:00:01Z"),
        lambda visit: visit["events"][1]["details"].update(price=1.5),
        lambda visit: visit["events"].pop(),
    ],
    ids=["user", "device", "extra-field", "event-order", "timestamp", "price", "event-removed"],
)
def test_different_visits_get_different_visit_ids(change):
    original = visit_of(page_view(), cart_add(1.25, 2))
    changed = json.loads(json.dumps(original))
    change(changed)
    assert visit_id(changed) != visit_id(original)


@pytest.mark.parametrize("path", sorted(VALID.glob("*.json")), ids=lambda path: path.stem)
def test_key_order_does_not_change_visit_id(path):
    visit = json.loads(path.read_bytes())
    assert json.dumps(reversed_keys(visit)) != json.dumps(visit)
    assert visit_id(reversed_keys(visit)) == visit_id(visit)


# --- timestamps and numbers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timestamp", "utc"),
    [
        ("2024-07-01T09:00:00", "2024-07-01T09:00:00+00:00"),
        ("2024-07-01T09:00:00Z", "2024-07-01T09:00:00+00:00"),
        ("2024-07-01 09:00:00", "2024-07-01T09:00:00+00:00"),
        ("2024-07-01T14:34:56+02:00", "2024-07-01T12:34:56+00:00"),
        ("2024-07-01T01:00:00+02:00", "2024-06-30T23:00:00+00:00"),
        ("2024-12-31T20:00:00-05:30", "2025-01-01T01:30:00+00:00"),
        ("2024-07-01T09:00:00.5Z", "2024-07-01T09:00:00.500000+00:00"),
        ("2024-07-01T09:00:00.123456+01:00", "2024-07-01T08:00:00.123456+00:00"),
    ],
)
def test_timestamps_become_utc(timestamp, utc):
    parsed = parse(visit_of(page_view(timestamp)))
    assert parsed.rows["page_views"][0]["event_timestamp"] == utc
    assert parsed.rows["visits"][0]["visit_start"] == parsed.rows["visits"][0]["visit_end"] == utc


def test_offset_fixture_becomes_utc():
    parsed = parse(fixture("offset-timestamp"))
    assert parsed.rows["page_views"][0]["event_timestamp"] == "2024-07-04T12:34:56+00:00"


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (379.94000000000005, "379.94"),
        (0.1 + 0.2, "0.3"),
        (89.99, "89.99"),
        (10, "10"),
        (10.0, "10"),
        (0, "0"),
        (0.000000001, "0.000000001"),
    ],
)
def test_float_artifacts_are_removed(number, text):
    parsed = parse(visit_of(purchase(number, [(number, 1)])))
    assert parsed.rows["purchases"][0]["amount"] == text
    assert parsed.rows["purchase_items"][0]["price"] == text
    assert parsed.rows["visits"][0]["purchase_amount"] == text


@pytest.mark.parametrize(
    ("price", "quantity", "line_amount"),
    [(89.99, 3, "269.97"), (0.1, 3, "0.3"), (379.94000000000005, 2, "759.88"), (5, 1, "5")],
)
def test_line_amount_is_price_times_quantity(price, quantity, line_amount):
    parsed = parse(visit_of(cart_add(price, quantity), purchase(0, [(price, quantity), (1, 2)])))
    assert parsed.rows["cart_adds"][0]["line_amount"] == line_amount
    assert parsed.rows["purchase_items"][0]["line_amount"] == line_amount
    assert parsed.rows["purchases"][0]["item_count"] == 2
    assert parsed.rows["purchases"][0]["unit_count"] == quantity + 2


def test_null_currency_fixture():
    parsed = parse(fixture("null-currency"))
    assert parsed.rows["purchases"][0]["currency"] is None
    assert parsed.rows["purchases"][0]["amount"] == "379.94"
    assert parsed.rows["purchase_items"][0]["line_amount"] == "379.94"


@pytest.mark.parametrize(
    ("event", "table", "column", "value"),
    [
        (cart_add(2.5, 2.0), "cart_adds", "line_amount", "5"),  # 2.0 is an integer to draft-07
        (cart_add(1e20, 1), "cart_adds", "price", "100000000000000000000"),  # fits NUMERIC
        (purchase(1e20, [(1e20, 1)]), "purchases", "amount", "100000000000000000000"),
        (cart_add(1e30, 1), "dead_letter", "reason", "price"),  # beyond NUMERIC
        (page_view("0001-01-01T00:30:00+01:00"), "dead_letter", "reason", "invalid timestamp"),
        (page_view("9999-12-31T23:30:00-01:00"), "dead_letter", "reason", "invalid timestamp"),
    ],
    ids=[
        "integral-float-quantity",
        "price-1e20",
        "amount-1e20",
        "price-beyond-numeric",
        "before-year-1-in-utc",
        "after-year-9999-in-utc",
    ],
)
def test_schema_valid_edge_cases_load_or_dead_letter(event, table, column, value):
    """Values the schema accepts: loaded exactly, or the event dead-lettered; never a crash."""
    parsed = parse(visit_of(page_view(), event))
    assert parsed.visit_loaded
    assert len(parsed.rows[table]) == 1
    assert value in str(parsed.rows[table][0][column])


# --- dead letters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "level", "reason"),
    [
        (b'{"session_id": "SID-1", "user_id": ', "visit", "invalid JSON"),
        (b'{"session_id": "caf\xe9"}', "visit", "not UTF-8"),
        (b"[1, 2]", "visit", "not a visit"),
        (b'{"user_id": "UID-1", "events": []}', "visit", "session_id"),
        (b'{"session_id": "S", "user_id": "U", "events": {}}', "visit", "must be array"),
        (json.dumps(visit_of(cart_add("12", 1))).encode(), "event", "must be number"),
        (json.dumps(visit_of(cart_add(12, 0))).encode(), "event", "quantity"),
        (json.dumps(visit_of(page_view("2024-13-01T09:00:00"))).encode(), "event", "timestamp"),
    ],
)
def test_dead_letter_rows(payload, level, reason):
    parsed = parse_visit(payload, "visits.jsonl:42")
    [row] = parsed.rows["dead_letter"]
    assert list(row) == contract.column_names("dead_letter")
    assert (row["level"], row["source"]) == (level, "visits.jsonl:42")
    assert reason in row["reason"]
    assert len(row["dead_letter_id"]) == 32
    if level == "visit":
        assert row["payload"] == payload.decode("utf-8", errors="replace")
        assert (row["visit_id"], row["event_index"]) == (None, None)
    else:
        assert json.loads(row["payload"]) == json.loads(payload)["events"][0]
        assert (row["visit_id"], row["event_index"]) == (parsed.rows["visits"][0]["visit_id"], 0)


@pytest.mark.parametrize("path", sorted(VALID.glob("*.json")), ids=lambda path: path.stem)
def test_rows_have_their_tables_columns(path):
    parsed = parse_visit(path.read_bytes(), f"fixture:{path.name}")
    for table, rows in parsed.rows.items():
        for row in rows:
            assert list(row) == contract.column_names(table), table


# --- the real lab data ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab_parsed(lab_data):
    return [
        parse_visit(line, f"{path.name}:{number}")
        for path in sorted(lab_data.glob("*.jsonl"))
        for number, line in enumerate(path.read_bytes().splitlines(), start=1)
    ]


def test_lab_data_totals(lab_parsed):
    tables = Counter()
    for parsed in lab_parsed:
        tables.update({table: len(rows) for table, rows in parsed.rows.items()})
    assert len(lab_parsed) == tables["visits"] == 8804
    assert tables["dead_letter"] == 0
    assert (tables["page_views"], tables["cart_adds"], tables["purchases"]) == (35422, 8999, 2213)
    assert tables["page_views"] + tables["cart_adds"] + tables["purchases"] == 46634
    assert len({parsed.rows["visits"][0]["visit_id"] for parsed in lab_parsed}) == 8804


def test_lab_purchase_amounts_equal_their_line_amounts(lab_parsed):
    checked = 0
    for parsed in lab_parsed:
        for order in parsed.rows["purchases"]:
            lines = [
                decimal.Decimal(item["line_amount"])
                for item in parsed.rows["purchase_items"]
                if item["event_index"] == order["event_index"]
            ]
            assert lines, order
            assert decimal.Decimal(order["amount"]) == sum(lines), order
            checked += 1
    assert checked == 2213
