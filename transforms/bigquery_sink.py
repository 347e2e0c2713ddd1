"""Pure-Python BigQuery sinks for Beam YAML, on the catalog's one writer (``gcp/warehouse.py``).

Beam YAML's stock WriteToBigQuery is Java-backed (an expansion-service jar fetched from Maven) and
Beam Python's own sink cannot reach the BigQuery emulator, so the catalog writes with the
google-cloud-bigquery client: the same code against the local stack and against BigQuery.

Bounded input (batch) takes the writer's merge strategy: each worker loads its rows into a
staging table per table with load jobs, then one MERGE per table brings them in, once. Unbounded
input (streaming) takes its append strategy, in batches gathered by Beam's
``GroupIntoBatches.WithShardedKey`` (keys sharded over the workers, as Beam's own BigQuery sink
does): a batch is written ``triggering_frequency`` seconds of processing time after its first
element, when it reaches ``ELEMENTS_PER_APPEND``, and when the input ends (a drained job).

Not a trigger: Python's trigger driver never re-arms AfterProcessingTime inside AfterAny (it asks
sub-triggers ``should_fire`` in the watermark domain only), so
``Repeatedly(AfterAny(AfterProcessingTime, AfterWatermark))`` fires once per key and never again
on Beam's local runners (apache/beam#19133). Timers do not have that flaw.
"""

import datetime
import decimal
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from clickstream.core import contract, names
from clickstream.gcp import bigquery_tables, warehouse

_LOG = logging.getLogger(__name__)
ROWS_PER_LOAD = 50_000  # batch: rows of one table a worker holds before a load job, at most
ELEMENTS_PER_APPEND = 500  # streaming: elements (rows, or visits' records) per write, at most


def _json_value(value: object) -> object:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return value


def _json_row(row: Any) -> dict[str, Any]:
    fields = row._asdict() if hasattr(row, "_asdict") else row
    return {name: _json_value(value) for name, value in fields.items()}


class _Destinations:
    """Where each table definition's rows go, and the clients that write them."""

    def __init__(self, tables: dict[str, str], project: str | None) -> None:
        self.tables, self.project = tables, project

    def setup(self) -> None:
        self.client = bigquery_tables.client(self.project)
        self.refs = {
            name: bigquery_tables.table_ref(table, self.client.project)
            for name, table in self.tables.items()
        }

    def table_id(self, name: str) -> str:
        return str(self.refs[name])


def _elapsed(counter: str, started: float) -> None:
    """Adds the milliseconds since ``started`` to a counter (summed over workers)."""
    elapsed = round((time.perf_counter() - started) * 1000)
    beam.metrics.Metrics.counter(names.COUNTER_NAMESPACE, counter).inc(elapsed)


class _Stage(beam.DoFn):
    """Batch: loads each table's rows into the run's staging table, ``ROWS_PER_LOAD`` at a
    time; emits (table, what was staged) per bundle."""

    def __init__(self, destinations: _Destinations, run_id: str):
        self.destinations, self.run_id = destinations, run_id

    def setup(self) -> None:
        self.destinations.setup()
        self.created: set[str] = set()

    def start_bundle(self) -> None:
        self.buffers: dict[str, list[dict[str, Any]]] = {}
        self.staged: dict[str, warehouse.Staged] = {}

    def process(self, rows_by_table: dict[str, list[dict[str, Any]]]) -> None:
        for table, rows in rows_by_table.items():
            buffer = self.buffers.setdefault(table, [])
            buffer += rows
            if len(buffer) >= ROWS_PER_LOAD:
                self._load(table)

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for table in list(self.buffers):
            self._load(table)
        for table, staged in self.staged.items():
            yield WindowedValue((table, staged), GlobalWindow().max_timestamp(), (GlobalWindow(),))

    def _load(self, table: str) -> None:
        rows = self.buffers.pop(table)
        if not rows:
            return
        d = self.destinations
        staging = warehouse.staging_ref(d.refs[table], self.run_id)
        if table not in self.created:
            warehouse.create_staging(d.client, staging, table)
            self.created.add(table)
        started = time.perf_counter()
        staged = warehouse.load(d.client, staging, table, rows)
        _elapsed("staging_ms", started)
        self.staged[table] = self.staged.get(table, warehouse.Staged()) + staged


class _Merge(beam.DoFn):
    """Batch: merges a table's staging table into the table, then drops it."""

    def __init__(self, destinations: _Destinations, run_id: str):
        self.destinations, self.run_id = destinations, run_id

    def setup(self) -> None:
        self.destinations.setup()

    def process(self, table_staged: tuple[str, warehouse.Staged]) -> Iterator[Any]:
        table, staged = table_staged
        d = self.destinations
        target = d.refs[table]
        staging = warehouse.staging_ref(target, self.run_id)
        started = time.perf_counter()
        inserted = warehouse.merge(d.client, target, staging, table, staged)
        _elapsed("merge_ms", started)
        beam.metrics.Metrics.counter(names.COUNTER_NAMESPACE, f"{table}.rows_inserted").inc(
            inserted
        )
        _LOG.info(
            "%s: %d rows written, %d new or updated", d.table_id(table), staged.rows, inserted
        )
        yield beam.Row(table=d.table_id(table), rows_written=staged.rows, rows_inserted=inserted)


class _Append(beam.DoFn):
    """Streaming: appends a batch of elements' rows with insert ids made of their keys."""

    def __init__(self, destinations: _Destinations):
        self.destinations = destinations

    def setup(self) -> None:
        d = self.destinations
        d.setup()
        for name, ref in d.refs.items():
            bigquery_tables.create_table(d.client, ref, name)
        self.warehouse = warehouse.Warehouse(
            next(iter(d.refs.values())).dataset_id, d.client.project, tables=d.tables
        )

    def process(self, keyed_batch: tuple[Any, Iterable[dict[str, Any]]]) -> Iterator[Any]:
        rows: dict[str, list[dict[str, Any]]] = {}
        for rows_by_table in keyed_batch[1]:
            for table, table_rows in rows_by_table.items():
                rows.setdefault(table, []).extend(table_rows)
        started = time.perf_counter()
        result = self.warehouse.append(rows)
        for table, count in result.rows.items():
            beam.metrics.Metrics.counter(names.COUNTER_NAMESPACE, f"{table}.rows_written").inc(
                count
            )
            _LOG.info(
                "%s: %d rows appended (%.2f s)",
                self.destinations.table_id(table),
                count,
                time.perf_counter() - started,
            )
            yield beam.Row(
                table=self.destinations.table_id(table), rows_written=count, rows_inserted=count
            )


class _Write(beam.PTransform[beam.PCollection[Any], beam.PCollection[Any]]):
    """Writes elements that are ``{table definition: [JSON rows]}`` to their destinations: the
    merge strategy for bounded input, the append strategy for unbounded input."""

    clock: Callable[[], float] = time.time  # see WriteToBigQueryTable.clock

    def __init__(
        self, tables: dict[str, str], project: str | None, triggering_frequency: int
    ) -> None:
        super().__init__()
        self.destinations = _Destinations(tables, project)
        self.triggering_frequency = triggering_frequency

    def expand(self, rows_by_table: beam.PCollection[Any]) -> beam.PCollection[Any]:
        if rows_by_table.is_bounded:
            run_id = uuid.uuid4().hex[:12]
            every_table = rows_by_table.pipeline | "EveryTable" >> beam.Create(
                [(table, warehouse.Staged()) for table in self.destinations.tables]
            )  # each table is created and merged, with or without rows
            staged = rows_by_table | "Stage" >> beam.ParDo(_Stage(self.destinations, run_id))
            return (
                (staged, every_table)
                | "Staged" >> beam.Flatten()
                | "PerTable" >> beam.CombinePerKey(lambda parts: sum(parts, warehouse.Staged()))
                | "Merge" >> beam.ParDo(_Merge(self.destinations, run_id))
            )
        return (
            rows_by_table
            | "Global" >> beam.WindowInto(GlobalWindows())  # time and triggers are upstream
            | "Key"
            >> beam.Map(lambda element: ("rows", element)).with_output_types(
                tuple[str, dict[str, Any]]
            )
            | "Batch"
            >> beam.GroupIntoBatches.WithShardedKey(
                ELEMENTS_PER_APPEND, self.triggering_frequency, clock=self.clock
            )
            | "Append" >> beam.ParDo(_Append(self.destinations))
        )


def _check_frequency(triggering_frequency: int) -> int:
    if int(triggering_frequency) < 1:
        raise ValueError("triggering_frequency must be at least 1 second")
    return int(triggering_frequency)


class WriteToBigQueryTable(beam.PTransform[beam.PCollection[Any], beam.PCollection[Any]]):
    """Writes rows to a BigQuery table defined in ``metadata/tables``; analysts never see a row
    twice.

    Batch: the rows are loaded into a staging table, then merged into the table on its primary
    key (``tableConstraints`` in the table's definition; with its ``versionColumn``, a row of a
    higher version replaces the one there), so re-running the same input adds nothing. The table
    is created from its definition when missing, even when no row comes. Streaming: the rows are
    appended in batches, every ``triggering_frequency`` seconds at most and when the job is
    drained, each with an insert id made of its key; a repeat later than BigQuery's dedup window
    is hidden by the table's ``<table>_unique`` view and removed by ``clickstream
    compact`` (``gcp/warehouse.py``). Works against the BigQuery emulator when
    ``BIGQUERY_EMULATOR_HOST`` is set, and against BigQuery otherwise.

    Outputs one row per write: ``table``, ``rows_written``, ``rows_inserted`` (new or updated
    rows of a batch merge; in streaming, the rows appended). The dataset must exist.

    Args:
      table: The table to write, ``[project.]dataset.table``.
      schema: The table definition in ``metadata/tables`` to use; defaults to the table's name.
      project: The project to run BigQuery jobs in (and of ``dataset.table``); defaults to the
        client's default project.
      triggering_frequency: Streaming only: seconds a row waits at most before it is written.
    """

    # The processing-time source of streaming batches (GroupIntoBatches' clock). Tests that
    # drive processing time with a TestStream substitute one that starts where its clock does.
    clock: Callable[[], float] = time.time

    def __init__(
        self,
        table: str,
        schema: str | None = None,
        project: str | None = None,
        triggering_frequency: int = 60,
    ):
        super().__init__()
        bigquery_tables.table_ref(table, project or "project")  # fail early on a bad name
        self.schema = schema or table.rsplit(".", 1)[-1]
        contract.table(self.schema)  # and on an unknown definition
        self.table, self.project = table, project or None
        self.triggering_frequency = _check_frequency(triggering_frequency)

    def expand(self, rows: beam.PCollection[Any]) -> beam.PCollection[Any]:
        write = _Write({self.schema: self.table}, self.project, self.triggering_frequency)
        write.clock = self.clock
        return (
            rows
            | "AsRows" >> beam.Map(lambda row, name=self.schema: {name: [_json_row(row)]})
            | "Write" >> write
        )


class WriteVisitTables(beam.PTransform[beam.PCollection[Any], beam.PCollection[Any]]):
    """Writes ``ParseVisits`` records to every analyst table of a dataset (``metadata/tables``:
    visits, page_views, cart_adds, purchases, purchase_items and dead_letter), as
    ``WriteToBigQueryTable`` writes one table: merged once per table in batch, appended in
    batches in streaming.

    Outputs one row per write: ``table``, ``rows_written``, ``rows_inserted``.

    Args:
      dataset: The dataset of the tables (it must exist; missing tables are created).
      project: The project of the dataset and of the BigQuery jobs; defaults to the client's.
      dead_letter_table: Where rejected records go instead of the dataset's dead_letter,
        ``[project.]dataset.table``.
      triggering_frequency: Streaming only: seconds a visit waits at most before it is written.
    """

    clock: Callable[[], float] = time.time  # see WriteToBigQueryTable.clock

    def __init__(
        self,
        dataset: str,
        project: str | None = None,
        dead_letter_table: str | None = None,
        triggering_frequency: int = 60,
    ):
        super().__init__()
        self.tables = {table: f"{dataset}.{table}" for table in contract.TABLES}
        if dead_letter_table:
            self.tables["dead_letter"] = dead_letter_table
        for table in self.tables.values():
            bigquery_tables.table_ref(table, project or "project")  # fail early on a bad name
        self.project = project or None
        self.triggering_frequency = _check_frequency(triggering_frequency)

    def expand(self, records: beam.PCollection[Any]) -> beam.PCollection[Any]:
        write = _Write(self.tables, self.project, self.triggering_frequency)
        write.clock = self.clock
        return (
            records
            | "AsRows"
            >> beam.Map(
                lambda record: {
                    table: [vars(row) for row in rows]
                    for table, rows in record._asdict().items()
                    if rows
                }
            )
            | "Write" >> write
        )
