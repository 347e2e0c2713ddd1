"""A pure-Python BigQuery sink for Beam YAML that writes without duplicates.

Beam YAML's stock WriteToBigQuery is Java-backed (an expansion-service jar fetched from Maven) and
Beam Python's own sink cannot reach the BigQuery emulator, so the catalog writes with the
google-cloud-bigquery client: the same code against the local stack and against BigQuery.
"""

import datetime
import decimal
import logging
import uuid

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue
from google.cloud import bigquery

import metadata
from transforms import bigquery_tables

_LOG = logging.getLogger(__name__)


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
    """Where one sink writes: the table, its run-scoped staging table and a client."""

    def __init__(self, table: str, schema: str, project: str | None, run_id: str):
        self.table, self.schema, self.project, self.run_id = table, schema, project, run_id

    def connect(self) -> None:
        self.client = bigquery_tables.client(self.project)
        self.ref = bigquery_tables.table_ref(self.table, self.client.project)
        self.staging = bigquery.TableReference(
            bigquery.DatasetReference(self.ref.project, self.ref.dataset_id),
            f"_staging_{self.ref.table_id}_{self.run_id}",
        )

    @property
    def table_id(self) -> str:
        return f"{self.ref.project}.{self.ref.dataset_id}.{self.ref.table_id}"

    @property
    def staging_id(self) -> str:
        return f"{self.staging.project}.{self.staging.dataset_id}.{self.staging.table_id}"


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
        # No insert ids: duplicates in staging are removed by the merge, on the table's key.
        errors = target.client.insert_rows_json(target.staging, rows, row_ids=[None] * len(rows))
        if errors:
            raise RuntimeError(f"BigQuery refused rows for {target.table_id}: {errors[:3]}")


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
        sql = bigquery_tables.merge_statement(target.table_id, target.staging_id, target.schema)
        job = target.client.query(sql)
        job.result()
        inserted = job.num_dml_affected_rows or 0
        target.client.delete_table(target.staging, not_found_ok=True)
        beam.metrics.Metrics.counter("clickstream", f"{target.ref.table_id}.rows_inserted").inc(
            inserted
        )
        _LOG.info("%s: %d rows written, %d new", target.table_id, staged, inserted)
        yield beam.Row(table=target.table_id, rows_written=staged, rows_inserted=inserted)


class WriteToBigQueryTable(beam.PTransform):
    """Writes rows to a BigQuery table defined in ``metadata/tables``, never duplicating a row.

    Rows are streamed into a staging table for this run, then merged into the table on its
    primary key (``tableConstraints`` in the table's metadata): a row whose key is already there
    is skipped, so re-running the same input, or re-delivering it, adds nothing. The table is
    created from its metadata when missing. Works against the BigQuery emulator when
    ``BIGQUERY_EMULATOR_HOST`` is set, and against BigQuery otherwise.

    Outputs one row per merge: ``table``, ``rows_written``, ``rows_inserted`` (new rows). In
    the global window (batch) the table is created even when no row comes. The dataset must
    exist.

    Args:
      table: The table to write, ``[project.]dataset.table``.
      schema: The table definition in ``metadata/tables`` to use; defaults to the table's name.
      project: The project to run BigQuery jobs in (and of ``dataset.table``); defaults to the
        client's default project.
      batch_size: Rows per insert request (at most 10,000; 500 is BigQuery's advice).
    """

    def __init__(
        self,
        table: str,
        schema: str | None = None,
        project: str | None = None,
        batch_size: int = 500,
    ):
        super().__init__()
        self.table = table
        self.schema = schema or table.rsplit(".", 1)[-1]
        self.project = project or None
        self.batch_size = batch_size
        bigquery_tables.table_ref(table, project or "project")  # fail early on a bad name
        metadata.table(self.schema)
        if not 1 <= batch_size <= 10_000:
            raise ValueError(f"batch_size must be between 1 and 10000, not {batch_size}")

    def expand(self, pcoll):
        target = _Target(self.table, self.schema, self.project, uuid.uuid4().hex[:12])
        total = beam.CombineGlobally(sum)
        if not isinstance(pcoll.windowing.windowfn, GlobalWindows):
            total = total.without_defaults()  # one merge per window that has rows
        return (
            pcoll
            | "Stage" >> beam.ParDo(_StageRows(target, self.batch_size))
            | "Total" >> total
            | "Merge" >> beam.ParDo(_MergeStaged(target))
        )
