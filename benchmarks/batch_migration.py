"""Batch migration throughput, side by side in one run (figures are visits per second).

- floor: orjson-parse only, plain Python, no Beam: no pipeline can beat it.
- model: the visit model (core/visit.py) in plain Python, no Beam.
- straightforward: a Beam pipeline doing the same parse+flatten with one step per stage
  (ReadFromText, Map per stage, Partition by table), on the same runner.
- catalog: the catalog's transforms (ReadVisitLines, ParseVisits), same runner, no sink; and its
  start-up (the same pipeline over one visit).
- migration: the whole `clickstream migrate` (spec, sink, merge) into the BigQuery emulator,
  broken down into start-up, parse, staging and merge; needs the local stack (`make up`),
  skipped with a note when it is not running.

Prints each target with PASS or FAIL, and exits 1 when one is not met.

Usage: python benchmarks/batch_migration.py [--input GLOB] [--rounds N] [--repeat K]
"""

import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import apache_beam as beam
import orjson
import targets
from apache_beam.options.pipeline_options import PipelineOptions
from targets import LAB_VISITS, Target

from clickstream.core import contract, visit
from clickstream.gcp import bigquery_tables
from clickstream.transforms.parse_visits import ParseVisits
from clickstream.transforms.visit_lines import ReadVisitLines

BASELINE_MIGRATION_SECONDS = 12.0  # the lab migration before issue 14, on this kind of machine


def _options() -> PipelineOptions:
    return PipelineOptions(["--runner=FnApiRunner"])


def _count_outputs(outputs: dict) -> None:
    for name, pcoll in outputs.items():
        _ = pcoll | f"Count {name}" >> beam.combiners.Count.Globally()


def catalog(path: str, repeat: int) -> None:
    """The catalog's parse: one element per visit holding all its tables' rows."""
    with beam.Pipeline(options=_options()) as p:
        lines = [p | f"Read {i}" >> ReadVisitLines(path) for i in range(repeat)] | beam.Flatten()
        _ = lines | ParseVisits() | beam.combiners.Count.Globally()


def straightforward(path: str, repeat: int) -> None:
    """The textbook pipeline: a Map per stage, events exploded to elements, Partition by table."""
    tables = list(contract.TABLES)
    with beam.Pipeline(options=_options()) as p:
        lines = [p | f"Read {i}" >> beam.io.ReadFromText(path) for i in range(repeat)]
        visits = lines | beam.Flatten() | "Decode" >> beam.Map(visit.read_visit)
        normalised = visits | "Normalise" >> beam.Map(
            lambda vc: (vc[0], [visit.normalise_event(e, vc[1]) for e in vc[0]["events"]])
        )
        keyed = normalised | "Key" >> beam.Map(lambda ve: (*ve, visit.visit_key(*ve)))
        visit_rows = keyed | "VisitRow" >> beam.Map(
            lambda vek: ("visits", visit.visit_row(vek[0], vek[2], vek[1]))
        )
        events = keyed | "Explode" >> beam.FlatMap(
            lambda vek: [(vek[0], vek[2], i, e) for i, e in enumerate(vek[1]) if e.event]
        )
        event_rows = events | "EventRows" >> beam.FlatMap(
            lambda t: visit.event_rows(t[0], t[1], t[2], t[3].event)
        )
        parts = (
            (visit_rows, event_rows)
            | "All" >> beam.Flatten()
            | beam.Partition(lambda row, _: tables.index(row[0]), len(tables))
        )
        _count_outputs(
            {
                name: parts[i] | f"Row {name}" >> beam.Map(lambda t: t[1])
                for i, name in enumerate(tables)
            }
        )


def _lines(path: str) -> list[bytes]:
    return [line for name in sorted(glob.glob(path)) for line in open(name, "rb")]


def floor(lines: list[bytes]) -> None:
    for line in lines:
        orjson.loads(line)


def model(lines: list[bytes]) -> None:
    for number, line in enumerate(lines):
        visit.parse_visit(line, str(number))


def migration(path: str) -> dict | None:
    """The report of `clickstream migrate` into a fresh dataset, or None without the stack."""
    from clickstream.local import emulators
    from clickstream.pipelines import migration

    os.environ.update(emulators.emulator_env())
    if not emulators.status()["bigquery"]["answers"]:
        return None
    dataset = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        return migration.migrate(path, dataset)
    finally:
        bigquery_tables.client().delete_dataset(dataset, delete_contents=True, not_found_ok=True)


COLD_BUILD = """
import sys, time
from clickstream.core import templates
from clickstream.pipelines import catalog
given = {"input": sys.argv[1], "dataset": "bench"}
variables = templates.variables("batch_migration", given, unchecked=("input",))
started = time.perf_counter()
catalog.build_pipeline("batch_migration", variables, ["--runner=FnApiRunner"])
print(time.perf_counter() - started)
"""


def cold_build(path: str) -> float:
    """Seconds to build the migration's spec in a fresh process, as `clickstream migrate` does:
    Beam YAML loads its standard providers the first time."""
    done = subprocess.run(
        [sys.executable, "-c", COLD_BUILD, path], capture_output=True, text=True, check=True
    )
    return float(done.stdout.split()[-1])


def _timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", default=LAB_VISITS, help="glob of JSON-lines visit files")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per pipeline")
    parser.add_argument("--repeat", type=int, default=1, help="read the input K times per run")


def measure(args: argparse.Namespace) -> list[Target]:
    """Runs the measurements, prints the figures; the targets."""
    lines = _lines(args.input)
    if not lines:
        raise SystemExit(f"error: no visits in {args.input}")
    visits = len(lines) * args.repeat
    print(
        f"{len(lines):,} visits in {len(glob.glob(args.input))} files; "
        f"pipelines read them {args.repeat}x; {args.rounds} alternating rounds"
    )
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl") as one:
        one.write(lines[0])
        one.flush()
        seconds: dict[str, list[float]] = {
            name: [] for name in ("floor", "model", "straightforward", "catalog", "start-up")
        }
        for round_number in range(1, args.rounds + 1):
            seconds["floor"].append(_timed(lambda: floor(lines * args.repeat)))
            seconds["model"].append(_timed(lambda: model(lines * args.repeat)))
            seconds["straightforward"].append(
                _timed(lambda: straightforward(args.input, args.repeat))
            )
            seconds["catalog"].append(_timed(lambda: catalog(args.input, args.repeat)))
            seconds["start-up"].append(_timed(lambda: catalog(one.name, 1)))
            print(
                f"  round {round_number}: "
                + ", ".join(f"{name} {values[-1]:.2f} s" for name, values in seconds.items())
            )
    median = {name: statistics.median(values) for name, values in seconds.items()}
    rate = {
        name: visits / median[name] for name in ("floor", "model", "straightforward", "catalog")
    }
    print(f"\n{'':<18}{'visits/s':>10}   (median of {args.rounds})")
    for name, value in rate.items():
        print(f"{name:<18}{value:>10,.0f}")
    print(f"{'start-up':<18}{median['start-up']:>9.2f}s   (the catalog pipeline over one visit)")

    checked = [
        Target(
            "batch: catalog / straightforward pipeline, same runner",
            rate["catalog"] / rate["straightforward"],
            3,
            "x",
        ),
        Target(
            "batch: orjson floor / visit model, plain Python",
            rate["floor"] / rate["model"],
            5,
            "x",
            at_least=False,
        ),
    ]
    report = migration(args.input)
    if report is None:
        print("migration: skipped, the local stack is not running (make up)")
    else:
        took = report["seconds"]
        parse = max(median["catalog"] / args.repeat - median["start-up"], 0.0)
        staging, merging = report["seconds_staging"], report["seconds_merging"]
        build = cold_build(args.input)
        print(
            f"\nmigration into the BigQuery emulator: {took:.1f} s for {report['records_read']:,} "
            f"visits ({report['visits_per_second']:,} visits/s), reconciled: "
            f"{'yes' if report['reconciled'] else 'NO'}\n"
            f"  building the spec     {build:5.1f} s  (in a fresh process: Beam YAML imports its "
            f"standard providers, Vertex AI's client among them)\n"
            f"  the rest              {max(took - build - parse - staging - merging, 0):5.1f} s  "
            f"(pipeline start, dataset, row counts, lineage)\n"
            f"  parse                 {parse:5.1f} s  (the catalog's time less its start-up)\n"
            f"  staging               {staging:5.1f} s  (load jobs into staging tables)\n"
            f"  merge                 {merging:5.1f} s  (one MERGE per table)"
        )
        if not report["reconciled"]:
            raise SystemExit("error: the migration did not reconcile")
        checked.append(
            Target(
                "batch: lab migration into the emulator, seconds",
                took,
                BASELINE_MIGRATION_SECONDS / 2,
                "s",
                at_least=False,
            )
        )
    return checked


if __name__ == "__main__":
    targets.main(__doc__, add_arguments, measure)
