"""BigQuery access shared by the sink, the local stack and the CLI: clients, tables from
``metadata/``, and the idempotent merge from a staging table.

With ``BIGQUERY_EMULATOR_HOST`` set (the local stack), clients talk to the emulator with anonymous
credentials; otherwise to BigQuery with Application Default Credentials.
"""

import datetime
import os

from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from clickstream.core import contract

EMULATOR_ENV = "BIGQUERY_EMULATOR_HOST"
STAGING_LIFETIME = datetime.timedelta(days=1)  # a failed run's staging table removes itself


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


def ensure_tables(project: str, dataset: str, location: str | None = None) -> list[str]:
    """Create the dataset and every table of ``metadata/`` that is missing; returns table ids."""
    bq = client(project)
    ensure_dataset(bq, dataset, location)
    ids = []
    for name in contract.TABLES:
        ref = bigquery.TableReference(bigquery.DatasetReference(bq.project, dataset), name)
        create_table(bq, ref, name)
        ids.append(f"{ref.project}.{ref.dataset_id}.{ref.table_id}")
    return ids


def create_table(bq: bigquery.Client, ref: bigquery.TableReference, schema_name: str) -> None:
    """Create the table from its metadata definition unless it exists."""
    bq.create_table(table_resource(ref, schema_name), exists_ok=True)


def create_staging(bq: bigquery.Client, ref: bigquery.TableReference, schema_name: str) -> None:
    """A plain table with the schema of ``schema_name`` that expires by itself after a day."""
    staging = table_resource(ref, schema_name)
    staging.time_partitioning = None
    staging.clustering_fields = None
    staging.table_constraints = None  # staging holds duplicates until the merge
    staging.description = f"Staging rows for {schema_name}; merged and dropped at the end of a run."
    staging.expires = datetime.datetime.now(datetime.UTC) + STAGING_LIFETIME
    bq.create_table(staging, exists_ok=True)


def merge_statement(
    target: str, staging: str, schema_name: str, version_column: str | None = None
) -> str:
    """MERGE that inserts staged rows whose key is not in the target yet (deduplicating the
    staged rows on the key first), so repeated or redelivered rows never duplicate. With
    ``version_column``, the staged row with the highest version wins, and it also replaces a
    target row of the same key whose version is lower."""
    key = contract.primary_key(schema_name)
    columns = contract.column_names(schema_name)
    listed = ", ".join(f"`{c}`" for c in columns)
    on = " AND ".join(f"T.`{c}` = S.`{c}`" for c in key)
    values = ", ".join(f"S.`{c}`" for c in columns)
    partition = ", ".join(f"`{c}`" for c in key)
    order, update = "", ""
    if version_column:
        order = f" ORDER BY `{version_column}` DESC"
        assignments = ", ".join(f"`{c}` = S.`{c}`" for c in columns if c not in key)
        update = (
            f"WHEN MATCHED AND S.`{version_column}` > T.`{version_column}` THEN UPDATE SET "
            f"{assignments}\n"
        )
    return (
        f"MERGE `{target}` T\n"
        f"USING (SELECT {listed} FROM (\n"
        f"  SELECT {listed}, ROW_NUMBER() OVER (PARTITION BY {partition}{order}) AS _n\n"
        f"  FROM `{staging}`) WHERE _n = 1) S\n"
        f"ON {on}\n"
        f"{update}"
        f"WHEN NOT MATCHED THEN INSERT ({listed}) VALUES ({values})"
    )


def row_count(bq: bigquery.Client, table: str) -> int:
    return next(iter(bq.query(f"SELECT COUNT(*) FROM `{table}`").result()))[0]
