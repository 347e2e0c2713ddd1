"""The subscribers' sink: parsed visits into the analyst tables, never duplicating a row.

Pub/Sub delivers at least once and publishers retry, so the same visit can arrive many times, as
the same message or as a new one. A write therefore:

1. keeps one row per primary key (``tableConstraints`` in ``metadata/tables``; the keys come from
   ``transforms.visit``, so they are the batch migration's keys too);
2. looks those keys up in one query (``UNION ALL`` over the tables concerned), restricted to the
   partitions the rows belong to: a row's partitioning column is part of its content, so a
   repeat lands in the same partition and the lookup reads only the batch's days;
3. streams only the rows whose key is not there yet, each with an insert id made from its key,
   so two deliveries writing at the same moment are also collapsed by BigQuery (best effort,
   about a minute; the BigQuery emulator ignores insert ids, the lookup does not need them);
4. writes the child tables first, at the same time, and ``visits`` last: a visit row means its
   events are in.

A write that fails part-way leaves some rows in; retrying it (a redelivery) skips them and adds
the rest. Every call to BigQuery is bounded by one deadline per write, so a write gives up (and the
message is redelivered) well before Pub/Sub's ack deadline instead of retrying for minutes.
"""

import concurrent.futures
import dataclasses
import datetime
import time
from collections.abc import Iterable

import orjson
import requests
from google.api_core import exceptions as api_exceptions
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_RETRY

from clickstream.core import contract
from clickstream.core.visit import ParsedRecord
from clickstream.gcp import bigquery_tables

CHILD_TABLES = ("dead_letter", "page_views", "cart_adds", "purchases", "purchase_items")
WRITE_ORDER = (*CHILD_TABLES, "visits")  # children together, then visits
REQUEST_ROWS = 500  # rows per insert request: BigQuery's advice
REQUEST_BYTES = 9 * 1024 * 1024  # below insertAll's 10 MB limit per request
KEY_SEPARATOR = "/"
TRANSIENT_ERRORS = (
    api_exceptions.RetryError,  # BigQuery's own retries ran out of time
    api_exceptions.TooManyRequests,
    api_exceptions.ServerError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    concurrent.futures.TimeoutError,  # a query did not finish in time
    TimeoutError,
)


class RowsRefused(RuntimeError):
    """BigQuery refused rows of an insert (a schema mismatch, say): retrying will not help."""


@dataclasses.dataclass(frozen=True)
class WriteResult:
    inserted: dict[str, int]  # new rows per table
    skipped: int  # rows whose key was already in their table

    @property
    def rows_inserted(self) -> int:
        return sum(self.inserted.values())


def is_transient(error: BaseException) -> bool:
    """Whether a failed write may succeed later: timeouts, lost connections, 429 and 5xx."""
    return isinstance(error, TRANSIENT_ERRORS)


def row_key(table: str, row: dict) -> str:
    """A row's primary key as text, e.g. ``'<visit_id>/3'`` for ``(visit_id, event_index)``."""
    return KEY_SEPARATOR.join(str(row[column]) for column in contract.primary_key(table))


def key_sql(table: str) -> str:
    """SQL for the same text as ``row_key``."""
    parts = [f"CAST(`{column}` AS STRING)" for column in contract.primary_key(table)]
    separator = f", '{KEY_SEPARATOR}', "
    return f"CONCAT({separator.join(parts)})"


def _partition_filter(table: str, rows: list[dict], params: list) -> str:
    """`` AND (...)`` keeping the lookup to the partitions of ``rows`` (partitioning columns are
    TIMESTAMPs, see metadata/tables); empty for ingestion-time partitioning."""
    column = contract.table(table)["timePartitioning"].get("field")
    if not column:
        return ""
    moments = [datetime.datetime.fromisoformat(row[column]) for row in rows if row[column]]
    conditions = []
    if moments:
        params.append(bigquery.ScalarQueryParameter(f"{table}_from", "TIMESTAMP", min(moments)))
        params.append(bigquery.ScalarQueryParameter(f"{table}_to", "TIMESTAMP", max(moments)))
        conditions.append(f"`{column}` BETWEEN @{table}_from AND @{table}_to")
    if len(moments) < len(rows):
        conditions.append(f"`{column}` IS NULL")
    return f" AND ({' OR '.join(conditions)})"


def _unique_rows(records: Iterable[ParsedRecord]) -> dict[str, dict[str, dict]]:
    """Rows per table, one per key."""
    unique: dict[str, dict[str, dict]] = {table: {} for table in WRITE_ORDER}
    for record in records:
        for table, rows in record.rows.items():
            for row in rows:
                unique[table].setdefault(row_key(table, row), row)
    return unique


def _requests(rows: dict[str, dict]) -> Iterable[list[tuple[str, dict]]]:
    """(key, row) pairs in groups that fit one insert request."""
    group: list[tuple[str, dict]] = []
    size = 0
    for key, row in rows.items():
        row_size = len(orjson.dumps(row)) + len(key) + 64  # the row id and JSON framing
        if group and (len(group) == REQUEST_ROWS or size + row_size > REQUEST_BYTES):
            yield group
            group, size = [], 0
        group.append((key, row))
        size += row_size
    if group:
        yield group


class Warehouse:
    """Writes parsed records to the analyst tables of ``dataset`` (see the module docstring).

    Args:
      dataset: The dataset holding the tables of ``metadata/tables`` (they must exist).
      project: Its project; defaults to the client's (``GOOGLE_CLOUD_PROJECT`` on the stack).
      deadline: Seconds one ``write`` may take, retries included; then it raises.
      request_timeout: Seconds one request to BigQuery may take.
    """

    def __init__(
        self,
        dataset: str,
        project: str | None = None,
        deadline: float = 30.0,
        request_timeout: float = 10.0,
    ):
        self.client = bigquery_tables.client(project)
        self.dataset = f"{self.client.project}.{dataset}"
        self.deadline, self.request_timeout = deadline, request_timeout
        self._pool = concurrent.futures.ThreadPoolExecutor(len(CHILD_TABLES), "warehouse")

    def table_id(self, table: str) -> str:
        return f"{self.dataset}.{table}"

    def write(self, records: Iterable[ParsedRecord]) -> WriteResult:
        """Write the rows of ``records`` whose keys are not in their tables yet. Raises when
        BigQuery fails or the deadline passes; what was written by then stays, and a retry
        of the same records completes the write."""
        deadline = time.monotonic() + self.deadline
        rows = _unique_rows(records)
        existing = self._existing_keys(rows, deadline)
        new = {
            table: {key: row for key, row in rows[table].items() if key not in existing[table]}
            for table in WRITE_ORDER
        }
        children = [
            self._pool.submit(self._insert, table, new[table], deadline) for table in CHILD_TABLES
        ]
        concurrent.futures.wait(children)  # all done, failed or not, before a retry can start
        for child in children:
            child.result()  # raises the first failure
        self._insert("visits", new["visits"], deadline)
        inserted = {table: len(new[table]) for table in WRITE_ORDER}
        total = sum(len(table_rows) for table_rows in rows.values())
        return WriteResult(inserted, total - sum(inserted.values()))

    def _call_options(self, deadline: float) -> tuple[float, float, object]:
        """(seconds left, request timeout, retry) for one call, within the write's deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"BigQuery write did not finish within {self.deadline:g} s")
        return left, min(self.request_timeout, left), DEFAULT_RETRY.with_timeout(left)

    def _existing_keys(self, rows: dict[str, dict[str, dict]], deadline: float) -> dict:
        """The keys of ``rows`` already in their tables, per table, found with one query."""
        existing: dict[str, set[str]] = {table: set() for table in rows}
        selects, params = [], []
        for table, table_rows in rows.items():
            if not table_rows:
                continue
            first = contract.primary_key(table)[0]  # a STRING in every table
            values = sorted({row[first] for row in table_rows.values()})
            params.append(bigquery.ArrayQueryParameter(f"{table}_keys", "STRING", values))
            where = _partition_filter(table, list(table_rows.values()), params)
            selects.append(
                f"SELECT '{table}' AS table_name, {key_sql(table)} AS row_key "
                f"FROM `{self.table_id(table)}` WHERE `{first}` IN UNNEST(@{table}_keys){where}"
            )
        if not selects:
            return existing
        left, timeout, retry = self._call_options(deadline)
        result = self.client.query_and_wait(
            "\nUNION ALL\n".join(selects),
            job_config=bigquery.QueryJobConfig(query_parameters=params),
            api_timeout=timeout,
            wait_timeout=left,
            retry=retry,
            job_retry=None,  # a failed lookup fails the write; the redelivery retries it
        )
        for table, key in result:
            existing[table].add(key)
        return existing

    def _insert(self, table: str, rows: dict[str, dict], deadline: float) -> None:
        for group in _requests(rows):
            _, timeout, retry = self._call_options(deadline)
            errors = self.client.insert_rows_json(
                self.table_id(table),
                [row for _, row in group],
                row_ids=[f"{table}:{key}" for key, _ in group],
                retry=retry,
                timeout=timeout,
            )
            if errors:
                raise RowsRefused(f"BigQuery refused rows of {self.table_id(table)}: {errors[:3]}")
