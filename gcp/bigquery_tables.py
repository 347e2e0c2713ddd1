"""BigQuery access shared by the writer, the local stack and the CLI: clients, and the tables of
``metadata/`` created from their definitions.

With ``BIGQUERY_EMULATOR_HOST`` set (the local stack), clients talk to the emulator with anonymous
credentials; otherwise to BigQuery with Application Default Credentials.
"""

import os

from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from clickstream.core import contract

EMULATOR_ENV = "BIGQUERY_EMULATOR_HOST"


def client(project: str | None = None) -> bigquery.Client:
    """A BigQuery client for the emulator (when ``BIGQUERY_EMULATOR_HOST`` is set) or BigQuery.
    Without ``project``, the client's default: ``GOOGLE_CLOUD_PROJECT`` (set by the local stack's
    environment), else that of Application Default Credentials."""
    endpoint = os.environ.get(EMULATOR_ENV)
    if endpoint:
        return bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint},
        )
    return bigquery.Client(project=project)


def table_id(table: str, project: str) -> str:
    """``[project.|project:]dataset.table`` as ``project.dataset.table``."""
    return str(table_ref(table, project))


def table_ref(table: str, project: str) -> bigquery.TableReference:
    """``project.dataset.table``, ``project:dataset.table`` or ``dataset.table`` (in
    ``project``) to a reference."""
    parts = table.replace(":", ".", 1).split(".")
    if len(parts) == 2:
        parts.insert(0, project)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"table {table!r} is not of the form [project.]dataset.table")
    return bigquery.TableReference.from_string(".".join(parts))


def table_resource(ref: bigquery.TableReference, schema_name: str) -> bigquery.Table:
    """A Table built from the metadata definition ``schema_name`` (see ``contract.TABLES``)."""
    definition = contract.table(schema_name)
    return bigquery.Table.from_api_repr(
        {
            "tableReference": ref.to_api_repr(),
            "description": definition["description"],
            "schema": definition["schema"],
            "timePartitioning": definition["timePartitioning"],
            "clustering": definition["clustering"],
            "tableConstraints": definition["tableConstraints"],
        }
    )


def ensure_dataset(bq: bigquery.Client, dataset: str, location: str | None = None) -> None:
    ref = bigquery.DatasetReference(bq.project, dataset)
    resource = bigquery.Dataset(ref)
    if location:
        resource.location = location
    bq.create_dataset(resource, exists_ok=True)


def ensure_tables(project: str | None, dataset: str, location: str | None = None) -> list[str]:
    """Create the dataset and every table of ``metadata/`` that is missing; returns table ids."""
    bq = client(project)
    ensure_dataset(bq, dataset, location)
    ids = []
    for name in (*contract.TABLES, *contract.AGGREGATES):
        ref = bigquery.TableReference(bigquery.DatasetReference(bq.project, dataset), name)
        create_table(bq, ref, name)
        ids.append(str(ref))
    return ids


def create_table(bq: bigquery.Client, ref: bigquery.TableReference, schema_name: str) -> None:
    """Create the table from its metadata definition unless it exists."""
    bq.create_table(table_resource(ref, schema_name), exists_ok=True)


def row_count(bq: bigquery.Client, table: str) -> int:
    count: int = next(iter(bq.query(f"SELECT COUNT(*) FROM `{table}`").result()))[0]
    return count
