"""Data for the analyst-layer tests (views, dashboard): the small known fixture with its exact
view results, and datasets loaded with the project's own migration, once per test session."""

import datetime
import functools
from decimal import Decimal
from pathlib import Path

from clickstream.pipelines import migration

FIXTURE = Path(__file__).parent / "fixtures" / "analyst" / "visits.jsonl"
FIXTURE_DATASET = "analyst_fixture"
LAB_DATASET = "analyst_lab"


def _minute(hhmm: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(f"2024-07-01T{hhmm}:00+00:00")


# The fixture's four visits: two share session SID-1 (visits count visit_id, not sessions), one
# views /cart twice, one has no device_type, one order has no currency and an item without
# category, /products?ref=home is the page /products.
FIXTURE_RESULTS = {
    "visits_by_page": [
        {"page_path": "/home", "visits": 3, "page_views": 3},
        {"page_path": "/products", "visits": 2, "page_views": 2},
        {"page_path": "/cart", "visits": 1, "page_views": 2},
        {"page_path": "/", "visits": 1, "page_views": 1},
    ],
    "popular_items": [
        {
            "product_id": "PER-001",
            "product_name": "Wireless Mouse",
            "category": "peripherals",
            "currency": "USD",
            "units_sold": 5,
            "revenue": Decimal("149.95"),
            "orders": 2,
            "units_rank": 1,
            "revenue_rank": 2,
        },
        {
            "product_id": "HDW-001",
            "product_name": "Laptop X200",
            "category": "hardware",
            "currency": "USD",
            "units_sold": 1,
            "revenue": Decimal("999.99"),
            "orders": 1,
            "units_rank": 2,
            "revenue_rank": 1,
        },
        {
            "product_id": "GFT-001",
            "product_name": "Gift Card",
            "category": "(not set)",
            "currency": "(not set)",
            "units_sold": 2,
            "revenue": Decimal("50"),
            "orders": 1,
            "units_rank": 1,
            "revenue_rank": 2,
        },
        {
            "product_id": "SFT-001",
            "product_name": "Office Suite Pro",
            "category": "software",
            "currency": "(not set)",
            "units_sold": 1,
            "revenue": Decimal("199.5"),
            "orders": 1,
            "units_rank": 2,
            "revenue_rank": 1,
        },
    ],
    "sales_by_category": [
        {
            "category": "hardware",
            "currency": "USD",
            "revenue": Decimal("999.99"),
            "units_sold": 1,
            "orders": 1,
        },
        {
            "category": "peripherals",
            "currency": "USD",
            "revenue": Decimal("149.95"),
            "units_sold": 5,
            "orders": 2,
        },
        {
            "category": "software",
            "currency": "(not set)",
            "revenue": Decimal("199.5"),
            "units_sold": 1,
            "orders": 1,
        },
        {
            "category": "(not set)",
            "currency": "(not set)",
            "revenue": Decimal("50"),
            "units_sold": 2,
            "orders": 1,
        },
    ],
    "visits_by_device": [
        {"device_type": "mobile", "visits": 2, "visits_with_purchase": 1, "page_views": 5},
        {"device_type": "desktop", "visits": 1, "visits_with_purchase": 1, "page_views": 2},
        {"device_type": "(not set)", "visits": 1, "visits_with_purchase": 1, "page_views": 1},
    ],
    "page_views_per_minute": [
        {"minute": _minute("09:00"), "page_path": "/home", "page_views": 1},
        {"minute": _minute("09:00"), "page_path": "/products", "page_views": 1},
        {"minute": _minute("09:01"), "page_path": "/home", "page_views": 1},
        {"minute": _minute("09:01"), "page_path": "/cart", "page_views": 2},
        {"minute": _minute("09:02"), "page_path": "/home", "page_views": 1},
        {"minute": _minute("09:03"), "page_path": "/", "page_views": 1},
        {"minute": _minute("09:03"), "page_path": "/products", "page_views": 1},
    ],
}


@functools.cache
def loaded(path: str, dataset: str) -> str:
    """Migrates ``path`` into ``dataset`` of the running local stack (the migration applies the
    views), once per session; returns the dataset."""
    report = migration.migrate(path, dataset)
    assert report["reconciled"] and report["visits_rejected"] == 0, report
    return dataset


def fixture_dataset() -> str:
    return loaded(str(FIXTURE), FIXTURE_DATASET)


def lab_dataset(lab_data: Path) -> str:
    return loaded(str(lab_data / "*.jsonl"), LAB_DATASET)
