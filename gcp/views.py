"""The analyst views in BigQuery: ``metadata/views/<name>.sql`` created or updated in a dataset.

On the BigQuery emulator (bqemulator 1.4.0) ``CREATE VIEW`` DDL drops ``OPTIONS(description)``
and reading a view back returns neither its SQL nor its schema, so views go through the tables
API, which BigQuery serves the same way.
"""

from google.api_core.exceptions import Conflict
from google.cloud import bigquery

from clickstream.core import contract
from clickstream.gcp import bigquery_tables


def apply_views(project: str | None, dataset: str) -> list[str]:
    """Create every view in ``dataset``, or update its SQL and description if it exists
    (idempotent); returns the view ids. Without ``project``, the client's default project."""
    bq = bigquery_tables.client(project)
    ids = []
    for view in contract.views():
        table = bigquery.Table(f"{bq.project}.{dataset}.{view.name}")
        table.view_query = view.query(bq.project, dataset)
        table.description = view.description
        try:
            bq.create_table(table)
        except Conflict:
            bq.update_table(table, ["view_query", "description"])
        ids.append(f"{bq.project}.{dataset}.{view.name}")
    return ids
