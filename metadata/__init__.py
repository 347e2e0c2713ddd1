"""The project's contracts as data: the visit JSON Schema and the BigQuery table definitions.

Every path (pipelines, subscribers, simulator, local stack) reads these files through this module,
so a column or rule is defined once.
"""

import functools
import json
from importlib import resources

TABLES = ("visits", "page_views", "cart_adds", "purchases", "purchase_items", "dead_letter")
AGGREGATES = ("page_view_counts",)  # written by streaming specs from the rows above


def _read(name: str) -> dict:
    return json.loads(resources.files(__name__).joinpath(name).read_text(encoding="utf-8"))


@functools.cache
def visit_schema() -> dict:
    """The visit JSON Schema (draft-07), as a dict."""
    return _read("visit.schema.json")


@functools.cache
def table(name: str) -> dict:
    """A table definition: BigQuery's Table resource fields (description, schema, partitioning,
    clustering, primary key)."""
    if name not in TABLES + AGGREGATES:
        raise KeyError(f"unknown table {name!r}; tables are {', '.join(TABLES + AGGREGATES)}")
    return _read(f"tables/{name}.json")


def primary_key(name: str) -> list[str]:
    """The columns that identify a row of the table (used to merge without duplicates)."""
    return table(name)["tableConstraints"]["primaryKey"]["columns"]


def column_names(name: str) -> list[str]:
    return [field["name"] for field in table(name)["schema"]["fields"]]
