"""The capacity model's measured figures (docs/capacity.md), in CPU seconds, not wall time, so a
busy machine slows them less:

- the lab's visit size: JSON bytes per visit; per table, rows per visit and BigQuery's logical
  bytes per row (all columns, and the key and partitioning columns alone);
- parse: the catalog's transforms (ReadVisitLines + ParseVisits, as benchmarks/batch_migration.py
  runs them, reading the input ``--repeat`` times) on Beam's FnApiRunner, one process, less the
  median CPU of the same pipeline over one visit (its start-up);
- load and append: the writer's own CPU (gcp/warehouse.py) writing every table's rows of the lab
  visits into the BigQuery emulator: load jobs into staging tables (batch) and insertAll requests
  of 500 visits' rows (streaming). The emulator runs in its own process, so its time is not
  counted. Needs the local stack (``make up``); makes and deletes its own dataset.

Rounds alternate (5); the median and the range of each figure are kept. With ``--write``, the
figures go to benchmarks/capacity.json with this command and the date, for ``clickstream template
docs`` to compute docs/capacity.md.

Usage: python benchmarks/capacity.py [--input GLOB] [--rounds N] [--repeat K] [--write]
"""

import argparse
import datetime
import glob
import json
import os
import platform
import statistics
import tempfile
import time
import uuid

import apache_beam as beam
import orjson
from batch_migration import _lines, catalog
from targets import LAB_VISITS

from clickstream.core import contract, visit
from clickstream.deploy import capacity
from clickstream.gcp import bigquery_tables, warehouse
from clickstream.local import emulators
from clickstream.transforms.bigquery_sink import ELEMENTS_PER_APPEND, ROWS_PER_LOAD

COMMAND = ".venv/bin/python benchmarks/capacity.py --write"


def visit_size(records: list[visit.ParsedRecord], lines: list[bytes]) -> dict:
    """JSON bytes per visit and, per table, rows per visit and bytes per row."""
    tables = {}
    for table in contract.TABLES:
        rows = [row for record in records for row in record.rows[table]]
        keys = capacity.key_columns(table)
        count = max(len(rows), 1)
        tables[table] = {
            "rows_per_visit": round(len(rows) / len(records), 4),
            "logical_bytes_per_row": round(
                sum(capacity.logical_bytes(table, r) for r in rows) / count, 1
            ),
            "key_bytes_per_row": round(
                sum(capacity.logical_bytes(table, r, keys) for r in rows) / count, 1
            ),
            "json_bytes_per_row": round(sum(len(orjson.dumps(r)) for r in rows) / count, 1),
            "largest_json_row": max((len(orjson.dumps(r)) for r in rows), default=0),
        }
    return {
        "visits": len(records),
        "json_bytes_per_visit": round(
            sum(len(line.rstrip(b"\r\n")) for line in lines) / len(lines), 1
        ),
        "tables": tables,
    }


def _cpu(run) -> float:
    started = time.process_time()
    run()
    return time.process_time() - started


def _rows(records: list[visit.ParsedRecord]) -> dict[str, list[dict]]:
    return {t: [row for r in records for row in r.rows[t]] for t in contract.TABLES}


def load(bq, dataset: str, records: list[visit.ParsedRecord]) -> None:
    """Batch: each table's rows into a staging table, ROWS_PER_LOAD per load job."""
    run_id = uuid.uuid4().hex[:12]
    for table, rows in _rows(records).items():
        if not rows:
            continue
        staging = warehouse.staging_ref(
            bigquery_tables.table_ref(f"{dataset}.{table}", bq.project), run_id
        )
        warehouse.create_staging(bq, staging, table)
        for start in range(0, len(rows), ROWS_PER_LOAD):
            warehouse.load(bq, staging, table, rows[start : start + ROWS_PER_LOAD])
        bq.delete_table(staging)


def append(writer: warehouse.Warehouse, records: list[visit.ParsedRecord]) -> None:
    """Streaming: the rows of ELEMENTS_PER_APPEND visits per write, as the sink batches them."""
    for start in range(0, len(records), ELEMENTS_PER_APPEND):
        writer.write(records[start : start + ELEMENTS_PER_APPEND])


def measure(args: argparse.Namespace) -> dict:
    lines = _lines(args.input)
    if not lines:
        raise SystemExit(f"error: no visits in {args.input}")
    os.environ.update(emulators.emulator_env())
    if not emulators.status()["bigquery"]["answers"]:
        raise SystemExit("error: the local stack is not running (make up)")
    records = [visit.parse_visit(line, f"lab:{n}") for n, line in enumerate(lines)]
    figures = visit_size(records, lines)
    print(
        f"{len(lines):,} visits in {len(glob.glob(args.input))} files; {args.rounds} rounds; "
        f"the pipeline reads them {args.repeat}x"
    )
    bq = bigquery_tables.client()
    dataset = f"capacity_{uuid.uuid4().hex[:8]}"
    bigquery_tables.ensure_tables(bq.project, dataset)
    writer = warehouse.Warehouse(dataset)
    seconds: dict[str, list[float]] = {"pipeline": [], "start-up": [], "load": [], "append": []}
    try:
        with tempfile.NamedTemporaryFile("wb", suffix=".jsonl") as one:
            one.write(lines[0])
            one.flush()
            for round_number in range(1, args.rounds + 1):
                seconds["pipeline"].append(_cpu(lambda: catalog(args.input, args.repeat)))
                seconds["start-up"].append(_cpu(lambda: catalog(one.name, 1)))
                seconds["load"].append(_cpu(lambda: load(bq, dataset, records)))
                seconds["append"].append(_cpu(lambda: append(writer, records)))
                print(
                    f"  round {round_number}: "
                    + ", ".join(f"{k} {v[-1]:.2f} s CPU" for k, v in seconds.items())
                )
    finally:
        bq.delete_dataset(dataset, delete_contents=True, not_found_ok=True)
    start_up = statistics.median(seconds["start-up"])
    per_visit = {
        "parse": sorted((p - start_up) / (len(lines) * args.repeat) for p in seconds["pipeline"]),
        **{k: sorted(v / len(lines) for v in seconds[k]) for k in ("load", "append")},
    }
    for name, values in per_visit.items():
        median = statistics.median(values)
        print(
            f"{name:<8}{median * 1e6:8.1f} µs CPU per visit ({values[0] * 1e6:.1f}-"
            f"{values[-1] * 1e6:.1f}; {1 / median:,.0f} visits/s per core)"
        )
    return {
        "command": COMMAND,
        "measured_on": f"{datetime.date.today():%Y-%m-%d}",
        "input": os.path.relpath(args.input, capacity.ROOT),
        "machine": f"{os.cpu_count()} vCPUs, Python {platform.python_version()}, "
        f"Apache Beam {beam.__version__}, the BigQuery emulator of the local stack",
        **figures,
        "cpu_seconds_per_visit": {k: round(statistics.median(v), 7) for k, v in per_visit.items()},
        "cpu_seconds_range": {k: [round(v[0], 7), round(v[-1], 7)] for k, v in per_visit.items()},
        "rows_per_load": ROWS_PER_LOAD,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", default=LAB_VISITS, help="glob of JSON-lines visit files")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument(
        "--repeat", type=int, default=3, help="the pipeline reads the input K times"
    )
    parser.add_argument("--write", action="store_true", help=f"write {capacity.MEASURED.name}")
    args = parser.parse_args()
    figures = measure(args)
    if args.write:
        capacity.MEASURED.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {capacity.MEASURED.relative_to(capacity.ROOT)}")


if __name__ == "__main__":
    main()
