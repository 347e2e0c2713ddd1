"""The analyst views in BigQuery, created or updated in a dataset: one row per key of each table
(generated), and the views of ``metadata/views/<name>.sql``.

On the BigQuery emulator (bqemulator 1.4.0) ``CREATE VIEW`` DDL drops ``OPTIONS(description)``
and reading a view back returns neither its SQL nor its schema, so views go through the tables
API, which BigQuery serves the same way.
"""

from google.api_core.exceptions import Conflict
from google.cloud import bigquery

from clickstream.core import contract
from clickstream.gcp import bigquery_tables, warehouse


def analyst_views() -> list[contract.View]:
    """Every view analysts read: one row per key of each table (``<table>_unique``, generated
    from the table definitions), then the views of ``metadata/views``, which read those."""
    tables = (*contract.TABLES, *contract.AGGREGATES)
    return [*(warehouse.unique_view(table) for table in tables), *contract.views()]


def apply_views(project: str | None, dataset: str) -> list[str]:
    """Create every view in ``dataset``, or update its SQL and description if it exists
    (idempotent); returns the view ids. Without ``project``, the client's default project."""
    bq = bigquery_tables.client(project)
    ids = []
    for view in analyst_views():
        table = bigquery.Table(f"{bq.project}.{dataset}.{view.name}")
        table.view_query = view.query(bq.project, dataset)
        table.description = view.description
        try:
            bq.create_table(table)
        except Conflict:
            bq.update_table(table, ["view_query", "description"])
        ids.append(f"{bq.project}.{dataset}.{view.name}")
    return ids


def ensure_analyst_dataset(project: str | None, dataset: str, location: str | None = None) -> int:
    """The dataset with every table of ``metadata/tables`` and every analyst view, created where
    missing (views updated); returns how many tables the dataset has."""
    tables = bigquery_tables.ensure_tables(project, dataset, location)
    apply_views(project, dataset)
    return len(tables)
