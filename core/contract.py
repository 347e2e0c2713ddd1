"""The contracts as data in ``metadata/``: the visit JSON Schema, the BigQuery table definitions,
the analyst views and the templates' metadata. Every path reads them through this module, so a
column, a key or a rule is defined once."""

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

TABLES = ("visits", "page_views", "cart_adds", "purchases", "purchase_items", "dead_letter")
AGGREGATES = ("page_view_counts",)  # written by streaming specs from the rows above
_METADATA = resources.files("clickstream.metadata")


def read_json(name: str) -> dict[str, Any]:
    """A JSON file of ``metadata/``, e.g. ``tables/visits.json``."""
    data: dict[str, Any] = json.loads(_METADATA.joinpath(name).read_text(encoding="utf-8"))
    return data


def has_file(name: str) -> bool:
    return _METADATA.joinpath(name).is_file()


@functools.cache
def visit_schema() -> dict[str, Any]:
    """The visit JSON Schema (draft-07), as a dict."""
    return read_json("visit.schema.json")


@functools.cache
def table(name: str) -> dict[str, Any]:
    """A table definition: BigQuery's Table resource fields (description, schema, partitioning,
    clustering, primary key)."""
    if name not in TABLES + AGGREGATES:
        raise KeyError(f"unknown table {name!r}; tables are {', '.join(TABLES + AGGREGATES)}")
    return read_json(f"tables/{name}.json")


def primary_key(name: str) -> list[str]:
    """The columns that identify a row of the table (used to merge without duplicates)."""
    columns: list[str] = table(name)["tableConstraints"]["primaryKey"]["columns"]
    return columns


def version_column(name: str) -> str | None:
    """The column whose highest value wins among rows of one key (a later update of the same
    window, say); None when rows of one key are identical."""
    return table(name).get("versionColumn")


def column_names(name: str) -> list[str]:
    return [field["name"] for field in table(name)["schema"]["fields"]]


@dataclass(frozen=True)
class View:
    """An analyst view of ``metadata/views/<name>.sql``: its leading ``--`` lines are the
    description; table references are ``{project}.{dataset}.<table>`` in backticks (Python
    ``str.format`` placeholders), so one file serves the local stack and any dataset."""

    name: str
    description: str
    template: str  # the SQL with {project} and {dataset} placeholders

    def query(self, project: str, dataset: str) -> str:
        """The view's SQL for ``project.dataset``."""
        return self.template.format(project=project, dataset=dataset)


def parse_view(name: str, text: str) -> View:
    """A view from its file: the leading ``--`` lines are the description, the rest the SQL."""
    lines = text.strip().splitlines()
    comments = 0
    while comments < len(lines) and lines[comments].startswith("--"):
        comments += 1
    description = " ".join(line.removeprefix("--").strip() for line in lines[:comments])
    template = "\n".join(lines[comments:]).strip()
    if not description or not template:
        raise ValueError(f"view {name}: needs leading -- description lines, then the SQL")
    return View(name, description, template)


@functools.cache
def views() -> tuple[View, ...]:
    """Every view of ``metadata/views``, by name."""
    folder = _METADATA.joinpath("views")
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return tuple(
        parse_view(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files
    )


@functools.cache
def governance() -> dict[str, Any]:
    """The governance definition (``metadata/governance.json``): the lake, its zones and their
    assets, the audiences and what each may do in which zone, and the facts about each table that
    BigQuery does not hold (owner, freshness, lab task, classified columns)."""
    return read_json("governance.json")
