"""The one writer of the analyst tables. Every path writes through it (the batch migration, the
streaming specs, the push and pull subscribers), with the keys of the visit model and the table
definitions of ``metadata/tables``, and analysts never see a row twice.

Two strategies, one promise:

- **merge** (the batch migration; exact at rest): the rows of a run are loaded into a staging
  table (load jobs: free on BigQuery and outside the streaming quotas), then one ``MERGE`` per
  table inserts the rows whose key is not there yet (with a version column, it also replaces a
  row of a lower version), restricted to the partitions the staged rows belong to, and the
  staging table is dropped. Re-running the same input adds nothing.
- **append** (the streaming specs and the subscribers; no query on the hot path): rows are
  streamed with ``insertAll``, each with an insert id made of its table and key, so BigQuery
  drops a repeat that comes within about a minute (best effort; the BigQuery emulator does not).
  A later repeat (a redelivery after a crash, a republished visit, a day loaded by two paths) is
  a second copy of the row in the table: the ``<table>_unique`` views keep one row per key (the
  highest version), and ``compact`` removes the copies from partitions the streaming buffer no
  longer holds.

What each strategy costs on BigQuery, per million visits: docs/warehouse.md.
"""

import concurrent.futures
import dataclasses
import datetime
import io
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import requests
from google.api_core import exceptions as api_exceptions
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_RETRY

from clickstream.core import contract
from clickstream.core.visit import ParsedRecord
from clickstream.gcp import bigquery_tables

REQUEST_ROWS = 500  # rows per insert request: BigQuery's advice
REQUEST_BYTES = 9 * 1024 * 1024  # below insertAll's 10 MB limit per request
KEY_SEPARATOR = "/"
UNIQUE_SUFFIX = "_unique"  # the view of a table that keeps one row per key
STAGING_LIFETIME = datetime.timedelta(days=1)  # a failed run's staging table removes itself
TRANSIENT_ERRORS = (
    api_exceptions.RetryError,  # BigQuery's own retries ran out of time
    api_exceptions.TooManyRequests,
    api_exceptions.ServerError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    concurrent.futures.TimeoutError,  # a request did not finish in time
    TimeoutError,
)


class RowsRefused(RuntimeError):
    """BigQuery refused rows of an insert (a schema mismatch, say): retrying will not help."""


def is_transient(error: BaseException) -> bool:
    """Whether a failed write may succeed later: timeouts, lost connections, 429 and 5xx."""
    return isinstance(error, TRANSIENT_ERRORS)


def row_key(table: str, row: dict[str, Any]) -> str:
    """A row's primary key as text, e.g. ``'<visit_id>/3'`` for ``(visit_id, event_index)``."""
    return KEY_SEPARATOR.join(str(row[column]) for column in contract.primary_key(table))


def key_sql(table: str) -> str:
    """SQL for the same text as ``row_key``."""
    parts = [f"CAST(`{column}` AS STRING)" for column in contract.primary_key(table)]
    separator = f", '{KEY_SEPARATOR}', "
    return f"CONCAT({separator.join(parts)})"


def _partition_column(table: str) -> str | None:
    column: str | None = contract.table(table).get("timePartitioning", {}).get("field")
    return column


def _first_copies(table: str, source: str, keys: Iterable[str] | None = None) -> str:
    """SQL for one row per key (by default the table's primary key) of ``source`` (a table or
    a filtered query's ``FROM`` part), the highest version first, with the table's columns."""
    columns = ", ".join(f"`{c}`" for c in contract.column_names(table))
    over = ", ".join(f"`{c}`" for c in (keys or contract.primary_key(table)))
    version = contract.version_column(table)
    order = f" ORDER BY `{version}` DESC" if version else ""
    return (
        f"SELECT {columns} FROM (\n"
        f"  SELECT *, ROW_NUMBER() OVER (PARTITION BY {over}{order}) AS _copy\n"
        f"  FROM {source})\n"
        f"WHERE _copy = 1"
    )


def unique_view(table: str) -> contract.View:
    """The view of ``table`` that keeps one row per key (the highest version): what analysts
    and the analyst views read. The partitioning column is a key's content, so it is in the
    window's partition too, which lets a filter on it prune the table's partitions."""
    keys = [*contract.primary_key(table)]
    partition = _partition_column(table)
    if partition and partition not in keys:
        keys.append(partition)
    sql = _first_copies(table, f"`{{project}}.{{dataset}}.{table}`", keys)
    description = (
        f"{contract.table(table)['description']} One row per key: the table may hold a "
        "streamed row twice until it is compacted; this view never does."
    )
    return contract.View(f"{table}{UNIQUE_SUFFIX}", description, sql)


# --- append ----------------------------------------------------------------------------------


def _insert_id(table: str, key: str, row: dict[str, Any]) -> str:
    """``<table>:<key>``, and ``/v<version>`` for a table with a version column: a later version
    of a row (a late pane's count) must not be taken for a repeat by BigQuery's dedup."""
    version = contract.version_column(table)
    suffix = f"/v{row[version]}" if version else ""
    return f"{table}:{key}{suffix}"


def _requests(
    table: str, rows: Iterable[dict[str, Any]]
) -> Iterable[list[tuple[str, dict[str, Any]]]]:
    """(insert id, row) pairs, one per key (its highest version), in groups that fit one
    insert request."""
    version = contract.version_column(table)
    unique: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = row_key(table, row)
        if key not in unique or (version and row[version] > unique[key][version]):
            unique[key] = row
    group: list[tuple[str, dict[str, Any]]] = []
    size = 0
    for key, row in unique.items():
        row_size = len(orjson.dumps(row)) + len(key) + 64  # the row id and JSON framing
        if group and (len(group) == REQUEST_ROWS or size + row_size > REQUEST_BYTES):
            yield group
            group, size = [], 0
        group.append((_insert_id(table, key, row), row))
        size += row_size
    if group:
        yield group


@dataclasses.dataclass(frozen=True)
class WriteResult:
    rows: dict[str, int]  # rows sent per table (one per key)

    @property
    def rows_written(self) -> int:
        return sum(self.rows.values())


class Warehouse:
    """The analyst tables of one dataset, written by the append strategy (see the module).

    Args:
      dataset: The dataset holding the tables of ``metadata/tables`` (they must exist).
      project: Its project; defaults to the client's (``GOOGLE_CLOUD_PROJECT`` on the stack).
      deadline: Seconds one write may take, retries included; then it raises.
      request_timeout: Seconds one request to BigQuery may take.
      tables: Where each table's rows go, ``{definition: [project.]dataset.table}``; by default
        the table of the same name in ``dataset``.
    """

    def __init__(
        self,
        dataset: str,
        project: str | None = None,
        deadline: float = 30.0,
        request_timeout: float = 10.0,
        tables: Mapping[str, str] | None = None,
    ):
        self.client = bigquery_tables.client(project)
        self.dataset = f"{self.client.project}.{dataset}"
        self.deadline, self.request_timeout = deadline, request_timeout
        self.tables = {
            name: bigquery_tables.table_id(target, self.client.project)
            for name, target in (tables or {}).items()
        }
        self._pool = concurrent.futures.ThreadPoolExecutor(len(contract.TABLES), "warehouse")

    def table_id(self, table: str) -> str:
        return self.tables.get(table) or f"{self.dataset}.{table}"

    def write(self, records: Iterable[ParsedRecord]) -> WriteResult:
        """Append the rows of parsed records (every table of ``metadata.TABLES``)."""
        rows: dict[str, list[dict[str, Any]]] = {table: [] for table in contract.TABLES}
        for record in records:
            for table, table_rows in record.rows.items():
                rows[table] += table_rows
        return self.append(rows)

    def append(self, rows: Mapping[str, Iterable[dict[str, Any]]]) -> WriteResult:
        """Stream ``rows`` (per table definition) with insert ids made of their keys, the tables
        at the same time. Raises when BigQuery fails or the deadline passes; what was written
        by then stays, and writing the same rows again adds no row a reader sees."""
        deadline = time.monotonic() + self.deadline
        batches = {table: list(_requests(table, table_rows)) for table, table_rows in rows.items()}
        futures = [
            self._pool.submit(self._insert, table, group, deadline)
            for table, groups in batches.items()
            for group in groups
        ]
        concurrent.futures.wait(futures)  # all done, failed or not, before a retry can start
        for future in futures:
            future.result()  # raises the first failure
        return WriteResult({table: sum(map(len, groups)) for table, groups in batches.items()})

    def _insert(self, table: str, group: list[tuple[str, dict[str, Any]]], deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"BigQuery write did not finish within {self.deadline:g} s")
        errors = self.client.insert_rows_json(
            self.table_id(table),
            [row for _, row in group],
            row_ids=[row_id for row_id, _ in group],
            retry=DEFAULT_RETRY.with_timeout(left),
            timeout=min(self.request_timeout, left),
        )
        if errors:
            raise RowsRefused(f"BigQuery refused rows of {self.table_id(table)}: {errors[:3]}")


# --- merge -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Staged:
    """What a load into a staging table held: its rows, and the range of the table's
    partitioning column among them (``None``: no row had a value)."""

    rows: int = 0
    earliest: str | None = None
    latest: str | None = None
    undated: bool = False  # some rows have no partitioning value

    def __add__(self, other: "Staged") -> "Staged":
        dates = [d for d in (self.earliest, other.earliest, self.latest, other.latest) if d]
        return Staged(self.rows + other.rows, *_span(dates), self.undated or other.undated)


def _span(dates: list[str]) -> tuple[str | None, str | None]:
    """The earliest and the latest of ISO timestamps (None, None when there are none)."""
    if not dates:
        return None, None
    moment = datetime.datetime.fromisoformat
    return min(dates, key=moment), max(dates, key=moment)


def staging_ref(target: bigquery.TableReference, run_id: str) -> bigquery.TableReference:
    """The staging table of a run for ``target``."""
    return bigquery.TableReference(
        bigquery.DatasetReference(target.project, target.dataset_id),
        f"_staging_{target.table_id}_{run_id}",
    )


def create_staging(bq: bigquery.Client, ref: bigquery.TableReference, table: str) -> None:
    """A plain table with the schema of ``table`` that expires by itself after a day."""
    staging = bigquery_tables.table_resource(ref, table)
    staging.time_partitioning = None
    staging.clustering_fields = None
    staging.table_constraints = None  # staging holds duplicates until the merge
    staging.description = f"Staging rows for {table}; merged and dropped at the end of a run."
    staging.expires = datetime.datetime.now(datetime.UTC) + STAGING_LIFETIME
    bq.create_table(staging, exists_ok=True)


def load(
    bq: bigquery.Client, staging: bigquery.TableReference, table: str, rows: list[dict[str, Any]]
) -> Staged:
    """Append ``rows`` to the staging table with one load job; what they hold. The rows go up
    as newline-delimited JSON in a resumable upload (no size given): the BigQuery emulator
    refuses the client's small multipart uploads."""
    config = bigquery.LoadJobConfig(
        schema=bigquery_tables.table_resource(staging, table).schema,
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
    )
    data = io.BytesIO(b"\n".join(orjson.dumps(row) for row in rows))
    bq.load_table_from_file(data, staging, job_config=config).result()
    column = _partition_column(table)
    dates = [row[column] for row in rows if column and row.get(column)]
    return Staged(len(rows), *_span(dates), bool(column) and len(dates) < len(rows))


def merge_statement(target: str, staging: str, table: str, staged: Staged) -> str:
    """MERGE that inserts the staged rows whose key is not in the target yet (the staged rows
    deduplicated on the key first); with the table's version column, the staged row of the
    highest version wins, and it also replaces a target row of a lower version. The target is
    read only in the partitions of the staged rows."""
    key = contract.primary_key(table)
    columns = contract.column_names(table)
    listed = ", ".join(f"`{c}`" for c in columns)
    on = " AND ".join(f"T.`{c}` = S.`{c}`" for c in key)
    column = _partition_column(table)
    if column and (staged.earliest or staged.undated):
        ranges = []
        if staged.earliest:
            ranges.append(
                f"T.`{column}` BETWEEN TIMESTAMP('{staged.earliest}') "
                f"AND TIMESTAMP('{staged.latest}')"
            )
        if staged.undated:
            ranges.append(f"T.`{column}` IS NULL")
        on += f" AND ({' OR '.join(ranges)})"
    values = ", ".join(f"S.`{c}`" for c in columns)
    version = contract.version_column(table)
    update = ""
    if version:
        assignments = ", ".join(f"`{c}` = S.`{c}`" for c in columns if c not in key)
        update = f"WHEN MATCHED AND S.`{version}` > T.`{version}` THEN UPDATE SET {assignments}\n"
    return (
        f"MERGE `{target}` T\n"
        f"USING ({_first_copies(table, f'`{staging}`')}) S\n"
        f"ON {on}\n"
        f"{update}"
        f"WHEN NOT MATCHED THEN INSERT ({listed}) VALUES ({values})"
    )


def merge(
    bq: bigquery.Client,
    target: bigquery.TableReference,
    staging: bigquery.TableReference,
    table: str,
    staged: Staged,
) -> int:
    """Merge the staging table into the target (created from its definition when missing) and
    drop it; the rows new or updated."""
    bigquery_tables.create_table(bq, target, table)
    if not staged.rows:
        bq.delete_table(staging, not_found_ok=True)
        return 0
    sql = merge_statement(str(target), str(staging), table, staged)
    job = bq.query(sql)
    job.result()
    bq.delete_table(staging, not_found_ok=True)
    return job.num_dml_affected_rows or 0


# --- compaction ------------------------------------------------------------------------------


def duplicated_partitions(bq: bigquery.Client, table_id: str, table: str) -> list[str | None]:
    """The days (partitions of the table's partitioning column, ``None`` for rows without a
    value) that hold a key more than once."""
    column = _partition_column(table)
    day = f"DATE(`{column}`)" if column else "NULL"  # ingestion-time partitions: one group
    keys = ", ".join(f"`{c}`" for c in contract.primary_key(table))
    sql = (
        f"SELECT DISTINCT CAST(day AS STRING) FROM (SELECT {day} AS day, COUNT(*) AS copies "
        f"FROM `{table_id}` GROUP BY day, {keys}) WHERE copies > 1 ORDER BY 1"
    )
    return [row[0] for row in bq.query(sql).result()]


def _day(column: str, day: str | None, alias: str = "") -> str:
    """The filter of one day of ``column`` (``None``: the rows without a value)."""
    field = f"{alias}`{column}`"
    if day is None:
        return f"{field} IS NULL"
    start = f"TIMESTAMP('{day}')"
    return f"{field} >= {start} AND {field} < TIMESTAMP_ADD({start}, INTERVAL 1 DAY)"


def compaction_statement(table_id: str, table: str, day: str | None) -> str:
    """A MERGE that replaces the rows of one day (the whole table when it is partitioned by
    ingestion time) by one row per key, the highest version: every row of the day is deleted and
    the first copy of each key inserted back, in one statement."""
    column = _partition_column(table)
    source = _day(column, day) if column else "TRUE"
    target = _day(column, day, "T.") if column else "TRUE"
    columns = ", ".join(f"`{c}`" for c in contract.column_names(table))
    return (
        f"MERGE `{table_id}` T\n"
        f"USING ({_first_copies(table, f'`{table_id}` WHERE {source}')}) S\n"
        "ON FALSE\n"
        f"WHEN NOT MATCHED BY SOURCE AND {target} THEN DELETE\n"
        f"WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({columns})"
    )


def compact(
    bq: bigquery.Client, table_id: str, table: str, before: datetime.date
) -> dict[str | None, int | str]:
    """Remove the extra copies of keys from the days of ``table_id`` before ``before`` (rows
    streamed in the last half hour cannot change, so today's partition waits): {day: rows
    removed}. A day that fails (streaming buffer, concurrent DML) is left for the next run and
    reported as its error text."""
    done: dict[str | None, int | str] = {}
    for day in duplicated_partitions(bq, table_id, table):
        if day is not None and datetime.date.fromisoformat(day) >= before:
            continue
        before_rows = bigquery_tables.row_count(bq, table_id)
        try:
            bq.query(compaction_statement(table_id, table, day)).result()
        except api_exceptions.GoogleAPICallError as error:
            done[day] = f"not compacted: {error.message}"
            continue
        done[day] = before_rows - bigquery_tables.row_count(bq, table_id)
    return done
