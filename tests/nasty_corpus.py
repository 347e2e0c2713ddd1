"""A deterministic JSON-lines corpus of nasty input, with what a correct reader makes of each line.

Generated in code, never stored. Each line's outcome is written by hand beside it, so the expected
totals are an independent check of the visit model, not a replay of it.

Reading rules: a record is a non-blank line; the BOM at the start of the file and the line ending
(LF or CRLF) are not part of it; empty and whitespace-only lines are not records. Identical lines
are separate records (and the same visit: a sink merging on visit_id keeps one).
"""

import dataclasses
import json

EVENT_TYPES = ("page_view", "add_item_to_cart", "purchase")
BOM = b"\xef\xbb\xbf"
NAIVE = "2024-07-01T09:00:00"  # the lab's timestamps: no zone


@dataclasses.dataclass(frozen=True)
class Line:
    """One line: its bytes without the line ending, and its expected outcome."""

    name: str
    text: bytes
    ending: bytes = b"\n"
    record: bool = True
    loaded: bool = False
    events: dict[str, int] = dataclasses.field(default_factory=dict)  # loaded, by event type
    events_rejected: int = 0


def _dumps(value: object, *, ascii_only: bool = False) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")


def _visit(number: int, events: object, **fields: object) -> dict:
    return {
        "session_id": f"SID-9{number:03d}",
        "user_id": f"UID-9{number:03d}",
        "device_type": "desktop",
        **fields,
        "events": events,
    }


def _page_view(url="https://example.com/home", ts="2024-07-01T09:00:00Z", referrer=None) -> dict:
    details = {"page_url": url, "referrer_url": referrer}
    return {"event_type": "page_view", "timestamp": ts, "details": details}


def _item(name="Laptop", price: object = 999.99, quantity: object = 1) -> dict:
    return {
        "product_id": "HDW-001",
        "product_name": name,
        "category": "hardware",
        "price": price,
        "quantity": quantity,
    }


def _cart(ts="2024-07-01T09:01:00Z", **item: object) -> dict:
    return {"event_type": "add_item_to_cart", "timestamp": ts, "details": _item(**item)}


def _purchase(items: list[dict], ts="2024-07-01T09:02:00Z", amount: object = 999.99) -> dict:
    details = {"order_id": "ORD-9000", "amount": amount, "currency": "USD", "items": items}
    return {"event_type": "purchase", "timestamp": ts, "details": details}


def _wrap(event: dict) -> dict:
    return {"event": event}


def _clock(second: int) -> str:
    return f"2024-07-01T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"


def _big_visit() -> dict:
    """5,000 events: in every ten, 7 page views, 2 cart additions, 1 purchase."""
    events = []
    for second in range(5000):
        slot = second % 10
        if slot < 7:
            events.append(_page_view(f"https://example.com/p/{second}", _clock(second)))
        elif slot < 9:
            events.append(_cart(_clock(second)))
        else:
            events.append(_purchase([_item()], _clock(second)))
    return _visit(7, events)


def _unicode_events() -> list[dict]:
    """Emoji, RTL text (with its marks), combining marks and U+2028 in URLs and product names."""
    return [
        _page_view("https://example.com/produits/café-☕?q=😀", referrer="https://例え.jp/"),
        _page_view("https://example.com/עברית/\u200fعربي", referrer="https://e\u0301\u0327x.com/"),
        _cart(name="Cle\u0301 USB 🔑 \u2028 second line", price=19.5),
        _purchase(
            [_item("لوحة المفاتيح ⌨️", 49.5, 2), _item("Z\u0351\u0364a\u0352lgo 🖱️", 10.0, 1)],
            amount=109.0,
        ),
    ]


def _loaded(name: str, text: bytes, *, ending=b"\n", rejected: int = 0, **events: int) -> Line:
    return Line(name, text, ending, loaded=True, events=events, events_rejected=rejected)


def lines() -> list[Line]:
    """The corpus, line by line, in file order."""
    duplicate = _dumps(_visit(14, [_page_view()]))
    unicode_visit = _visit(5, _unicode_events())
    invalid_utf8 = _dumps(_visit(4, [_page_view("https://example.com/@")])).replace(
        b"@", b"caf\xe9-\xff\xfe"
    )
    return [
        _loaded(
            "bom-then-documented-visit",
            BOM + _dumps(_visit(1, [_page_view(), _cart(), _purchase([_item()])])),
            page_view=1,
            add_item_to_cart=1,
            purchase=1,
        ),
        _loaded(
            "crlf-lab-visit",
            _dumps(_visit(2, [_wrap(_page_view(ts=NAIVE)), _wrap(_cart(NAIVE))])),
            ending=b"\r\n",
            page_view=1,
            add_item_to_cart=1,
        ),
        Line("empty-line", b"", record=False),
        Line("whitespace-only-crlf", b" \t  ", ending=b"\r\n", record=False),
        Line("truncated-json", _dumps(_visit(3, [_page_view()]))[:60]),
        Line("json-array", b"[1, 2, 3]"),
        Line("json-number", b"42", ending=b"\r\n"),
        Line("json-string", b'"a visit"'),
        Line("json-null", b"null"),
        Line("tab-only", b"\t", record=False),
        Line("invalid-utf8", invalid_utf8),
        _loaded(
            "unicode-raw-utf8",
            _dumps(unicode_visit),
            page_view=2,
            add_item_to_cart=1,
            purchase=1,
        ),
        _loaded(
            "unicode-escaped",
            _dumps({**unicode_visit, "session_id": "SID-9006"}, ascii_only=True),
            page_view=2,
            add_item_to_cart=1,
            purchase=1,
        ),
        _loaded(
            "visit-of-5000-events",
            _dumps(_big_visit()),
            page_view=3500,
            add_item_to_cart=1000,
            purchase=500,
        ),
        _loaded(
            "bad-timestamps",
            _dumps(
                _visit(
                    8,
                    [
                        _page_view(ts="2024-13-01T09:00:00Z"),  # month 13
                        _page_view(ts="2024-07-01"),  # no time part
                        _page_view(ts="yesterday"),
                        _page_view(ts=""),
                        _page_view(ts=1719824400),  # epoch seconds, not a string
                        _page_view(),
                    ],
                )
            ),
            rejected=5,
            page_view=1,
        ),
        _loaded(
            "unknown-event-types",
            _dumps(
                _visit(
                    9,
                    [
                        {"event_type": "checkout", "timestamp": NAIVE, "details": {}},
                        {**_page_view(), "event_type": "PAGE_VIEW"},
                        {**_page_view(), "event_type": None},
                        _cart(),
                    ],
                )
            ),
            rejected=3,
            add_item_to_cart=1,
        ),
        _loaded(
            "wrong-types-in-events",
            _dumps(
                _visit(
                    10,
                    [
                        _cart(price="19.99"),
                        _cart(quantity=1.5),
                        _purchase([_item(quantity="2")]),
                        _purchase([_item(price=5.25, quantity=4)], amount=21.0),
                    ],
                )
            ),
            rejected=3,
            purchase=1,
        ),
        Line("events-as-object", _dumps(_visit(11, _page_view()))),
        Line("session-id-as-number", _dumps(_visit(12, [_page_view()], session_id=1234))),
        _loaded(
            "all-events-bad",
            _dumps(
                _visit(
                    13,
                    [
                        "page_view",
                        None,
                        {**_wrap(_page_view()), "received_at": NAIVE},  # beside "event"
                        {
                            **_purchase([]),
                            "details": {"order_id": "ORD-1", "amount": 1},
                        },  # no items
                    ],
                )
            ),
            rejected=4,
        ),
        _loaded("empty-events", _dumps(_visit(15, []))),
        _loaded("duplicate-first", duplicate, page_view=1),
        _loaded("duplicate-second", duplicate, page_view=1),
        _loaded(
            "last-line-without-newline",
            _dumps(_visit(16, [_page_view(ts="2024-07-01T11:00:00+02:00")])),
            ending=b"",
            page_view=1,
        ),
    ]


def corpus() -> tuple[bytes, dict]:
    """The corpus as file bytes, and the totals a correct load of it reports."""
    every = lines()
    records = [line for line in every if line.record]
    loaded = [line for line in records if line.loaded]
    by_type = {kind: sum(line.events.get(kind, 0) for line in loaded) for kind in EVENT_TYPES}
    expected = {
        "records_read": len(records),
        "visits_loaded": len(loaded),
        "visits_rejected": len(records) - len(loaded),
        "events_loaded": sum(by_type.values()),
        "events_rejected": sum(line.events_rejected for line in loaded),
        "events_by_type": by_type,
    }
    return b"".join(line.text + line.ending for line in every), expected
