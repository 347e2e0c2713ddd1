"""A pure-Python BigQuery sink for Beam YAML that writes without duplicates.

Beam YAML's stock WriteToBigQuery is Java-backed (an expansion-service jar fetched from Maven) and
Beam Python's own sink cannot reach the BigQuery emulator, so the catalog writes with the
google-cloud-bigquery client: the same code against the local stack and against BigQuery.
"""

import datetime
import decimal
import itertools
import logging
import time
import uuid

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue
from google.cloud import bigquery

from clickstream.core import contract, names
from clickstream.gcp import bigquery_tables

_LOG = logging.getLogger(__name__)
ROWS_PER_WRITE = 10_000  # streaming: rows per staging table and merge, at most


def _json_value(value):
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return value


def _json_row(row) -> dict:
    fields = row._asdict() if hasattr(row, "_asdict") else row
    return {name: _json_value(value) for name, value in fields.items()}


class _Target:
    """Where one sink writes: the table, its staging tables and a client."""

    def __init__(
        self, table: str, schema: str, project: str | None, run_id: str, version: str | None
    ):
        self.table, self.schema, self.project, self.run_id = table, schema, project, run_id
        self.version = version

    def connect(self) -> None:
        self.client = bigquery_tables.client(self.project)
        self.ref = bigquery_tables.table_ref(self.table, self.client.project)
        self.staging = self.staging_for("")

    def staging_for(self, suffix: str) -> bigquery.TableReference:
        """The run's staging table (``suffix`` empty), or one of its panes'."""
        return bigquery.TableReference(
            bigquery.DatasetReference(self.ref.project, self.ref.dataset_id),
            f"_staging_{self.ref.table_id}_{self.run_id}{suffix}",
        )

    @property
    def table_id(self) -> str:
        return _table_id(self.ref)

    def insert(self, staging: bigquery.TableReference, rows: list[dict]) -> None:
        # No insert ids: duplicates in staging are removed by the merge, on the table's key.
        errors = self.client.insert_rows_json(staging, rows, row_ids=[None] * len(rows))
        if errors:
            raise RuntimeError(f"BigQuery refused rows for {self.table_id}: {errors[:3]}")

    def merge(self, staging: bigquery.TableReference, staged: int) -> beam.Row:
        """Merge the staging table into the table, drop it, count and report."""
        sql = bigquery_tables.merge_statement(
            self.table_id, _table_id(staging), self.schema, self.version
        )
        job = self.client.query(sql)
        job.result()
        inserted = job.num_dml_affected_rows or 0
        self.client.delete_table(staging, not_found_ok=True)
        beam.metrics.Metrics.counter(
            names.COUNTER_NAMESPACE, f"{self.ref.table_id}.rows_inserted"
        ).inc(inserted)
        _LOG.info("%s: %d rows written, %d new or updated", self.table_id, staged, inserted)
        return beam.Row(table=self.table_id, rows_written=staged, rows_inserted=inserted)


def _table_id(ref: bigquery.TableReference) -> str:
    return f"{ref.project}.{ref.dataset_id}.{ref.table_id}"


class _StageRows(beam.DoFn):
    """Streams rows into the staging table in batches; emits the number staged per window."""

    def __init__(self, target: _Target, batch_size: int):
        self.target, self.batch_size = target, batch_size

    def setup(self):
        self.target.connect()
        self.staging_ready = False

    def start_bundle(self):
        self.buffers: dict = {}

    def process(self, row, window=beam.DoFn.WindowParam):
        buffer = self.buffers.setdefault(window, [])
        buffer.append(_json_row(row))
        if len(buffer) >= self.batch_size:
            self._insert(buffer)
            del self.buffers[window]
            yield len(buffer)

    def finish_bundle(self):
        for window, buffer in self.buffers.items():
            self._insert(buffer)
            yield WindowedValue(len(buffer), window.max_timestamp(), [window])

    def _insert(self, rows: list[dict]) -> None:
        target = self.target
        if not self.staging_ready:
            bigquery_tables.create_staging(target.client, target.staging, target.schema)
            self.staging_ready = True
        target.insert(target.staging, rows)


class _MergeStaged(beam.DoFn):
    """Merges the staging table into the target on its key, then drops the staging table."""

    def __init__(self, target: _Target):
        self.target = target

    def setup(self):
        self.target.connect()

    def process(self, staged: int):
        target = self.target
        bigquery_tables.create_table(target.client, target.ref, target.schema)
        if not staged:  # nothing came: the table exists, there is nothing to merge
            yield beam.Row(table=target.table_id, rows_written=0, rows_inserted=0)
            return
        yield target.merge(target.staging, staged)


class _WriteBatch(beam.DoFn):
    """Streaming: stages one batch of rows in a table of its own, merges it into the target
    and drops it. A retried batch stages again and merges the same rows: nothing doubles."""

    def __init__(self, target: _Target, batch_size: int):
        self.target, self.batch_size = target, batch_size

    def setup(self):
        self.target.connect()
        bigquery_tables.create_table(self.target.client, self.target.ref, self.target.schema)

    def process(self, keyed_rows):
        target = self.target
        staging = target.staging_for(f"_{uuid.uuid4().hex[:12]}")
        bigquery_tables.create_staging(target.client, staging, target.schema)
        staged = 0
        rows = iter(keyed_rows[1])
        while batch := list(itertools.islice(rows, self.batch_size)):
            target.insert(staging, batch)
            staged += len(batch)
        yield target.merge(staging, staged)


class WriteToBigQueryTable(beam.PTransform):
    """Writes rows to a BigQuery table defined in ``metadata/tables``, never duplicating a row.

    Rows are streamed into a staging table, then merged into the table on its primary key
    (``tableConstraints`` in the table's metadata): a row whose key is already there is skipped
    (or, with ``version_column``, replaced when the staged row's version is higher), so
    re-running the same input, or re-delivering it, adds nothing. The table is created from its
    metadata when missing. Works against the BigQuery emulator when ``BIGQUERY_EMULATOR_HOST``
    is set, and against BigQuery otherwise.

    Bounded input (batch) uses one staging table for the run, merged once per window that has
    rows (in the global window the table is created even when no row comes). Unbounded input
    (streaming), windowed or not, is gathered into batches with Beam's
    ``GroupIntoBatches.WithShardedKey`` (keys sharded over the workers, as Beam's own BigQuery
    sink does): a batch is written ``triggering_frequency`` seconds of processing time after its
    first row, when it reaches ``ROWS_PER_WRITE`` rows, and when the input ends (a drained job);
    each write stages its rows in a table of its own, merges and drops it.
    Staging tables expire by themselves after a day if a run dies.

    Outputs one row per merge: ``table``, ``rows_written``, ``rows_inserted`` (rows new or
    updated). The dataset must exist.

    Args:
      table: The table to write, ``[project.]dataset.table``.
      schema: The table definition in ``metadata/tables`` to use; defaults to the table's name.
      project: The project to run BigQuery jobs in (and of ``dataset.table``); defaults to the
        client's default project.
      batch_size: Rows per insert request (at most 10,000; 500 is BigQuery's advice).
      version_column: Upsert instead of insert-only: a row whose key exists is replaced when its
        value in this column is higher (e.g. ``pane_index``, so that a late, accumulated count
        replaces the earlier one, whatever order the writes come in).
      triggering_frequency: Streaming only: seconds a row waits at most before it is written.
    """

    # The processing-time source of streaming batches (GroupIntoBatches' clock). Tests that
    # drive processing time with a TestStream substitute one that starts where its clock does.
    clock = time.time

    def __init__(
        self,
        table: str,
        schema: str | None = None,
        project: str | None = None,
        batch_size: int = 500,
        version_column: str | None = None,
        triggering_frequency: int = 60,
    ):
        super().__init__()
        self.table = table
        self.schema = schema or table.rsplit(".", 1)[-1]
        self.project = project or None
        self.batch_size = batch_size
        self.version_column = version_column or None
        self.triggering_frequency = int(triggering_frequency)
        bigquery_tables.table_ref(table, project or "project")  # fail early on a bad name
        columns = contract.column_names(self.schema)
        if not 1 <= batch_size <= 10_000:
            raise ValueError(f"batch_size must be between 1 and 10000, not {batch_size}")
        if self.version_column and self.version_column not in columns:
            raise ValueError(f"version_column {version_column!r} is not a column of {self.schema}")
        if self.triggering_frequency < 1:
            raise ValueError("triggering_frequency must be at least 1 second")

    def expand(self, pcoll):
        target = _Target(
            self.table, self.schema, self.project, uuid.uuid4().hex[:12], self.version_column
        )
        if not pcoll.is_bounded:
            # Not a trigger: Python's trigger driver never re-arms AfterProcessingTime inside
            # AfterAny (it asks sub-triggers should_fire in the watermark domain only), so
            # Repeatedly(AfterAny(AfterProcessingTime, AfterWatermark)) fires once per key and
            # never again on Beam's local runners (apache/beam#19133). Timers do not have that
            # flaw and are how Dataflow batches streaming writes too.
            return (
                pcoll
                | "Global" >> beam.WindowInto(GlobalWindows())  # time and triggers are upstream
                | "Key"
                >> beam.Map(
                    lambda row, table=self.table: (table, _json_row(row))
                ).with_output_types(tuple[str, dict])
                | "Batch"
                >> beam.GroupIntoBatches.WithShardedKey(
                    ROWS_PER_WRITE, self.triggering_frequency, clock=self.clock
                )
                | "Write" >> beam.ParDo(_WriteBatch(target, self.batch_size))
            )
        total = beam.CombineGlobally(sum)
        if not isinstance(pcoll.windowing.windowfn, GlobalWindows):
            total = total.without_defaults()  # one merge per window that has rows
        return (
            pcoll
            | "Stage" >> beam.ParDo(_StageRows(target, self.batch_size))
            | "Total" >> total
            | "Merge" >> beam.ParDo(_MergeStaged(target))
        )
