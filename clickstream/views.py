"""The analyst views (``clickstream views apply``): BigQuery SQL in ``metadata/views/<name>.sql``.

A view file's leading ``--`` lines are the view's description; its table references are written
``{project}.{dataset}.<table>`` in backticks (Python ``str.format`` placeholders, filled in when
the view is created), so one file serves the local stack and any BigQuery dataset.
"""

import argparse
import functools
from dataclasses import dataclass
from importlib import resources

VIEWS_FOLDER = resources.files("metadata").joinpath("views")


@dataclass(frozen=True)
class View:
    name: str
    description: str
    template: str  # the SQL with {project} and {dataset} placeholders

    def query(self, project: str, dataset: str) -> str:
        """The view's SQL for ``project.dataset``."""
        return self.template.format(project=project, dataset=dataset)


def parse(name: str, text: str) -> View:
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
def load() -> tuple[View, ...]:
    """Every view of ``metadata/views``, by name."""
    files = sorted(f for f in VIEWS_FOLDER.iterdir() if f.name.endswith(".sql"))
    return tuple(parse(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files)


def apply_views(project: str | None, dataset: str) -> list[str]:
    """Create every view in ``dataset``, or update its SQL and description if it exists
    (idempotent); returns the view ids. Without ``project``, the client's default project."""
    from google.api_core.exceptions import Conflict  # heavy imports, only needed here
    from google.cloud import bigquery

    from transforms import bigquery_tables

    bq = bigquery_tables.client(project)
    ids = []
    for view in load():
        table = bigquery.Table(f"{bq.project}.{dataset}.{view.name}")
        table.view_query = view.query(bq.project, dataset)
        table.description = view.description
        try:
            bq.create_table(table)
        except Conflict:
            bq.update_table(table, ["view_query", "description"])
        ids.append(f"{bq.project}.{dataset}.{view.name}")
    return ids


def register(commands) -> None:
    """Add ``views`` to the ``clickstream`` command's subcommands."""
    from clickstream.cli import DEFAULT_DATASET

    names = ", ".join(view.name for view in load())
    parser = commands.add_parser(
        "views",
        help="create or update the analyst views (metadata/views/*.sql)",
        description=f"`apply` creates the analyst views ({names}) in the dataset, or updates "
        "their SQL and description, after creating the dataset and tables if missing. "
        "Idempotent. Without --project it works on the local stack (`clickstream local up` "
        "applies them too).",
    )
    parser.add_argument("action", choices=["apply"], help="apply: create or update every view")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="BigQuery dataset")
    parser.add_argument("--project", help="Google Cloud project (default: the local stack)")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> None:
    from clickstream.cli import use_local_stack
    from transforms import bigquery_tables

    if args.project is None:
        use_local_stack()
    bigquery_tables.ensure_tables(args.project, args.dataset)
    for view_id in apply_views(args.project, args.dataset):
        print(f"view {view_id} ready")
