"""Simulated visits: seeded, realistic, and valid against ``metadata/visit.schema.json``.

A visit is one session on a small shop selling the lab's 18 products. It lands on a page from a
search engine, a social link, a newsletter or directly, walks through category and product pages
(each page's referrer is the page before), adds items to the cart on product pages, and sometimes
checks out: the purchase lists the cart, and its amount is exactly the sum of price x quantity.
The device type agrees with the user agent. Events are spread over the session (at most
``MAX_SESSION_SECONDS``) and the last one happens at the visit's end time. Visits have the
documented shape: bare events, UTC timestamps with a ``Z``.

A *bot* visit is what a denial-of-service burst is made of: one scripted client requesting a few
pages within a second. A *malformed* message is a visit broken so that the whole record is
rejected (``transforms/visit.py``): cut short, not JSON, not an object, not UTF-8, or breaking
the visit schema.

``messages(plan, start)`` is everything one simulator run sends, in order, each message due at
an offset from the start. The same plan (seed included) and start give the same messages, byte
for byte; the visits of the steady stream do not change when a burst or malformed messages are
added, because each of the three draws from its own random stream.
"""

import dataclasses
import datetime
import decimal
import itertools
import math
import random
from collections.abc import Iterator

import orjson

SITE = "https://example.com"
MAX_SESSION_SECONDS = 300.0  # well within the streaming specs' default allowed lateness (600 s)
TIME_ATTRIBUTE = "event_time"  # message attribute: when the visit began (RFC 3339)


@dataclasses.dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    category: str
    price: float


CATALOGUE = (
    Product("HDW-001", "Laptop X200", "hardware", 999.99),
    Product("HDW-002", "Desktop Z500", "hardware", 1299.99),
    Product("HDW-003", "Gaming PC Y900", "hardware", 1899.99),
    Product("HDW-004", "Ultrabook A400", "hardware", 1199.99),
    Product("HDW-005", "Workstation Pro 9000", "hardware", 2599.99),
    Product("HDW-006", "Mini PC Cube", "hardware", 699.99),
    Product("PER-001", "Wireless Mouse", "peripherals", 29.99),
    Product("PER-002", "Mechanical Keyboard", "peripherals", 89.99),
    Product("PER-003", '27" 4K Monitor', "peripherals", 399.99),
    Product("PER-004", "USB-C Docking Station", "peripherals", 129.99),
    Product("PER-005", "Noise Cancelling Headphones", "peripherals", 199.99),
    Product("PER-006", "Webcam HD 1080p", "peripherals", 49.99),
    Product("SFT-001", "Office Suite Pro", "software", 199.99),
    Product("SFT-002", "Antivirus Shield", "software", 49.99),
    Product("SFT-003", "Photo Editor Pro", "software", 79.99),
    Product("SFT-004", "Project Manager Plus", "software", 299.99),
    Product("SFT-005", "Video Editor Pro", "software", 149.99),
    Product("SFT-006", "Music Studio 2024", "software", 89.99),
)
CATEGORIES = ("hardware", "peripherals", "software")
SEARCH_TERMS = ("laptop", "monitor", "keyboard", "office", "gaming", "antivirus", "webcam")

# Where a page leads: (next kind of page, weight); "exit" ends the visit.
TRANSITIONS = {
    "home": (("category", 4), ("products", 3), ("product", 2), ("search", 1), ("about", 1),
             ("contact", 1), ("exit", 2)),
    "products": (("category", 5), ("product", 4), ("exit", 1)),
    "category": (("product", 7), ("category", 1), ("products", 1), ("exit", 1)),
    "product": (("product", 3), ("category", 2), ("cart", 2), ("home", 1), ("search", 1),
                ("exit", 2)),
    "search": (("product", 6), ("category", 1), ("exit", 1)),
    "cart": (("checkout", 5), ("product", 2), ("exit", 2)),
    "about": (("home", 2), ("contact", 1), ("exit", 2)),
    "contact": (("home", 1), ("exit", 3)),
}  # fmt: skip
LANDING = (("home", 45), ("product", 25), ("category", 15), ("products", 10), ("search", 5))
EXTERNAL_REFERRERS = (
    (None, 35), ("https://www.google.com/", 40), ("https://www.bing.com/", 8),
    ("https://www.facebook.com/", 6), ("https://t.co/", 4), ("https://news.example.com/weekly", 7),
)  # fmt: skip
DEVICES = (("mobile", 55), ("desktop", 35), ("tablet", 10))
USER_AGENTS = {
    "desktop": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Safari/605.1.15",
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
    ),
    "mobile": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36",
    ),
    "tablet": (
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Safari/537.36",
    ),
}
BOT_USER_AGENTS = (
    "python-requests/2.32.3",
    "curl/8.7.1",
    "Mozilla/5.0 (compatible; FloodBot/2.1; +http://bots.example.net/floodbot)",
)
CITIES = (
    (40.7128, -74.0060), (34.0522, -118.2437), (41.8781, -87.6298), (37.7749, -122.4194),
    (51.5074, -0.1278), (48.8566, 2.3522), (52.5200, 13.4050), (40.4168, -3.7038),
    (35.6762, 139.6503), (1.3521, 103.8198), (-33.8688, 151.2093), (19.4326, -99.1332),
    (-23.5505, -46.6333), (28.6139, 77.2090), (43.6532, -79.3832), (55.7558, 37.6173),
)  # fmt: skip
BOTNET = ((50.4501, 30.5234), (22.3193, 114.1694), (6.5244, 3.3792))
USERS = 5000  # returning users: user ids repeat across visits, as in the lab data
MALFORMED_KINDS = (
    "truncated", "not_json", "not_an_object", "no_session_id", "bad_device", "events_not_a_list",
    "not_utf8",
)  # fmt: skip


def _pick(rng: random.Random, weighted):
    values, weights = zip(*weighted, strict=True)
    return rng.choices(values, weights)[0]


def rfc3339(moment: datetime.datetime) -> str:
    """A UTC time as RFC 3339 with milliseconds and a Z, e.g. 2024-07-01T09:00:00.000Z."""
    text = moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"


def _amount(lines) -> float:
    """The exact sum of price x quantity as the float whose shortest form is that sum."""
    total = sum(decimal.Decimal(repr(line["price"])) * line["quantity"] for line in lines)
    return float(total)


class VisitGenerator:
    """Visits drawn from one seeded random stream."""

    def __init__(self, seed: int | str):
        self.rng = random.Random(seed)

    def visit(self, end: datetime.datetime) -> dict:
        """A normal visit whose last event happens at ``end``."""
        rng = self.rng
        device = _pick(rng, DEVICES)
        events: list[tuple[float, dict]] = []  # (seconds since the previous event, event)
        cart: dict[Product, int] = {}
        page: str | None = self._page(_pick(rng, LANDING))
        referrer = _pick(rng, EXTERNAL_REFERRERS)
        while page is not None and len(events) < 10:
            events.append((_dwell(rng), _page_view(page, referrer)))
            product = _product_of(page)
            if product and rng.random() < 0.3:
                cart[product] = cart.get(product, 0) + rng.randint(1, 3)
                events.append((rng.uniform(2, 12), _cart_add(product, cart[product])))
            if page == "/checkout":
                if cart:
                    events.append((rng.uniform(8, 40), self._purchase(cart)))
                break
            referrer = SITE + page
            kind = _pick(rng, TRANSITIONS[_kind_of(page)])
            if kind == "checkout" and not cart:
                kind = "exit"
            page = None if kind == "exit" else self._page(kind)
        return {
            "session_id": f"SID-{rng.getrandbits(48):012x}",
            "user_id": f"UID-{rng.randrange(USERS):05d}",
            "device_type": device,
            "geolocation": self._geolocation(CITIES, 0.2),
            "user_agent": rng.choice(USER_AGENTS[device]),
            "events": _timed(events, end),
        }

    def bot_visit(self, end: datetime.datetime) -> dict:
        """A scripted client hammering a few pages within about a second, ending at ``end``."""
        rng = self.rng
        pages = ("/home", "/search?q=" + rng.choice(SEARCH_TERMS), "/products")
        views = [(rng.uniform(0.02, 0.2), _page_view(rng.choice(pages), None)) for _ in range(8)]
        return {
            "session_id": f"SID-{rng.getrandbits(48):012x}",
            "user_id": f"UID-B{rng.randrange(10**6):06d}",
            "device_type": "desktop",
            "geolocation": self._geolocation(BOTNET, 0.01),
            "user_agent": rng.choice(BOT_USER_AGENTS),
            "events": _timed(views, end),
        }

    def malformed(self, visit: dict, kind: str | None = None) -> bytes:
        """``visit`` broken so that the whole record is rejected, in one of ``MALFORMED_KINDS``
        (``kind``, or one at random)."""
        kind = kind or self.rng.choice(MALFORMED_KINDS)
        if kind == "truncated":
            text = orjson.dumps(visit)
            return text[: self.rng.randrange(1, len(text) - 1)]
        if kind == "not_json":
            return b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        if kind == "not_an_object":
            return orjson.dumps(visit["events"])
        if kind == "not_utf8":
            return orjson.dumps(visit).replace(b'"SID-', b'"SID-\xff\xfe', 1)
        broken = dict(visit)
        if kind == "no_session_id":
            del broken["session_id"]
        elif kind == "bad_device":
            broken["device_type"] = "smart-fridge"
        else:
            broken["events"] = {"count": len(visit["events"])}
        return orjson.dumps(broken)

    def _page(self, kind: str) -> str:
        rng = self.rng
        if kind == "product":
            product = rng.choice(CATALOGUE)
            return f"/products/{product.category}/{product.product_id}"
        if kind == "category":
            return f"/products/{rng.choice(CATEGORIES)}"
        if kind == "search":
            return f"/search?q={rng.choice(SEARCH_TERMS)}"
        return f"/{kind}"

    def _purchase(self, cart: dict[Product, int]) -> dict:
        items = [
            {
                "product_id": product.product_id,
                "product_name": product.name,
                "category": product.category,
                "price": product.price,
                "quantity": quantity,
            }
            for product, quantity in cart.items()
        ]
        return {
            "event_type": "purchase",
            "details": {
                "order_id": f"ORD-{self.rng.getrandbits(40):010x}",
                "amount": _amount(items),
                "currency": "USD",
                "items": items,
            },
        }

    def _geolocation(self, places, spread: float) -> str:
        lat, lng = self.rng.choice(places)
        jitter = self.rng.uniform
        return f"{lat + jitter(-spread, spread):.6f},{lng + jitter(-spread, spread):.6f}"


def _kind_of(path: str) -> str:
    parts = path.split("?")[0].strip("/").split("/")
    if parts[0] == "products" and len(parts) > 1:
        return "product" if len(parts) == 3 else "category"
    return parts[0]


def _product_of(path: str) -> Product | None:
    if _kind_of(path) != "product":
        return None
    product_id = path.rsplit("/", 1)[1]
    return next(p for p in CATALOGUE if p.product_id == product_id)


def _dwell(rng: random.Random) -> float:
    """Seconds spent on a page before the next event: mostly 5-60 s, sometimes more."""
    return min(max(rng.lognormvariate(math.log(20), 0.8), 2.0), 120.0)


def _page_view(path: str, referrer: str | None) -> dict:
    return {
        "event_type": "page_view",
        "details": {"page_url": SITE + path, "referrer_url": referrer},
    }


def _cart_add(product: Product, quantity: int) -> dict:
    return {
        "event_type": "add_item_to_cart",
        "details": {
            "product_id": product.product_id,
            "product_name": product.name,
            "category": product.category,
            "price": product.price,
            "quantity": quantity,
        },
    }


def _timed(events: list[tuple[float, dict]], end: datetime.datetime) -> list[dict]:
    """The events with timestamps: the last at ``end``, the others earlier by the gaps that
    follow them, the session squeezed into ``MAX_SESSION_SECONDS`` when longer."""
    gaps = [gap for gap, _ in events[1:]]
    scale = min(1.0, MAX_SESSION_SECONDS / sum(gaps)) if gaps else 1.0
    offsets = list(itertools.accumulate(reversed(gaps), initial=0.0))[::-1]
    return [
        {**event, "timestamp": rfc3339(end - datetime.timedelta(seconds=offset * scale))}
        for offset, (_, event) in zip(offsets, events, strict=True)
    ]


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a simulator run sends.

    The steady stream holds ``visits_per_minute`` (malformed messages included: each steady
    message is malformed with probability ``malformed_rate``) for ``duration`` seconds or
    ``count`` messages, whichever comes first; neither means until stopped. ``burst`` bot
    visits are added all at once ``burst_at`` seconds after the start (default: halfway).
    """

    visits_per_minute: float = 60.0
    count: int | None = None
    duration: float | None = None
    seed: int = 0
    burst: int = 0
    burst_at: float | None = None
    malformed_rate: float = 0.0

    def __post_init__(self):
        if not self.visits_per_minute > 0:
            raise ValueError("visits per minute must be positive")
        if self.count is not None and self.count < 0:
            raise ValueError("count must not be negative")
        if self.duration is not None and not self.duration > 0:
            raise ValueError("duration must be positive")
        if not 0 <= self.malformed_rate <= 1:
            raise ValueError("malformed rate must be between 0 and 1")
        if self.burst < 0 or (self.burst_at is not None and self.burst_at < 0):
            raise ValueError("burst and burst time must not be negative")

    @property
    def interval(self) -> float:
        """Seconds between two steady messages."""
        return 60.0 / self.visits_per_minute

    @property
    def total(self) -> int | None:
        """Steady messages to send; None when the run lasts until stopped."""
        limits = [self.count] if self.count is not None else []
        if self.duration is not None:
            limits.append(round(self.duration / self.interval))
        return min(limits) if limits else None

    @property
    def seconds(self) -> float | None:
        """How long the steady stream lasts (the last message's interval included)."""
        return None if self.total is None else self.total * self.interval

    @property
    def burst_offset(self) -> float:
        if self.burst_at is not None:
            return self.burst_at
        return self.seconds / 2 if self.seconds else 0.0


@dataclasses.dataclass(frozen=True)
class Message:
    offset: float  # seconds after the start when it is due
    data: bytes
    attributes: dict[str, str]
    kind: str  # "visit", "malformed" or "burst"


def messages(plan: Plan, start: datetime.datetime) -> Iterator[Message]:
    """The run's messages in sending order. A visit ends when it is due; its message carries
    the time of its first event in the ``event_time`` attribute."""
    visits = VisitGenerator(f"{plan.seed}/visits")
    breaker = VisitGenerator(f"{plan.seed}/malformed")
    bots = VisitGenerator(f"{plan.seed}/burst")
    burst = _burst(plan, start, bots)
    steady = range(plan.total) if plan.total is not None else itertools.count()
    for index in steady:
        offset = index * plan.interval
        if offset >= plan.burst_offset:
            yield from burst
        end = start + datetime.timedelta(seconds=offset)
        visit = visits.visit(end)
        if plan.malformed_rate and breaker.rng.random() < plan.malformed_rate:
            broken = breaker.malformed(visit)
            yield Message(offset, broken, {TIME_ATTRIBUTE: rfc3339(end)}, "malformed")
        else:
            yield _message(offset, visit, "visit")
    yield from burst  # a burst due after the steady stream ended


def _burst(plan: Plan, start: datetime.datetime, bots: VisitGenerator) -> Iterator[Message]:
    moment = start + datetime.timedelta(seconds=plan.burst_offset)
    for _ in range(plan.burst):
        end = moment - datetime.timedelta(seconds=bots.rng.uniform(0, 1))
        yield _message(plan.burst_offset, bots.bot_visit(end), "burst")


def _message(offset: float, visit: dict, kind: str) -> Message:
    first = visit["events"][0]["timestamp"]
    return Message(offset, orjson.dumps(visit), {TIME_ATTRIBUTE: first}, kind)
