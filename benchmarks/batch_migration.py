"""Batch migration, side by side over alternating rounds (wall and process CPU seconds of each).

- floor: orjson-parse only, plain Python, no Beam: no pipeline can beat it.
- model: the visit model (core/visit.py) in plain Python, no Beam.
- straightforward: a Beam pipeline doing the same parse+flatten with one step per stage
  (ReadFromText, Map per stage, Partition by table), on the same runner.
- catalog: the catalog's transforms (ReadVisitLines, ParseVisits), same runner, no sink; and its
  start-up (the same pipeline over one visit).
- migration: the whole `clickstream migrate` (spec, sink, merge) into the BigQuery emulator, each
  round in a fresh process and dataset, with the spec's build in another fresh process beside
  it; needs the local stack (`make up`), skipped with a note when it is not running.

Targets: floor / model and catalog / straightforward on CPU time per visit, round by round (the
work is CPU-bound); the migration on the wall time of the whole `clickstream migrate` process.
Each is judged on the median of the rounds. Prints every target with its spread and PASS or
FAIL, and exits 1 when one is not met.

Usage: python benchmarks/batch_migration.py [--input GLOB] [--rounds N] [--repeat K]
"""

import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import apache_beam as beam
import orjson
import targets
from apache_beam.options.pipeline_options import PipelineOptions
from targets import LAB_VISITS, Rounds, Target

from clickstream.core import contract, visit
from clickstream.gcp import bigquery_tables
from clickstream.transforms.parse_visits import ParseVisits
from clickstream.transforms.visit_lines import ReadVisitLines

MIGRATION_TARGET_SECONDS = 5.0
FLOOR_PASSES = 20  # the floor reads the input this many times a round: long enough to time
MODEL_TARGET, CATALOG_TARGET = 4.0, 3.0  # model at most 4x the floor; catalog 3x straightforward


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


def _migrate(path: str) -> dict:
    """`clickstream migrate` of ``path`` in a fresh process, into a fresh dataset (deleted
    after): its report."""
    dataset = f"bench_{uuid.uuid4().hex[:8]}"
    command = [str(Path(sys.executable).with_name("clickstream")), "migrate", "--input", path]
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        try:
            subprocess.run(
                [*command, "--dataset", dataset, "--report", report.name],
                check=True,
                capture_output=True,
            )
        finally:
            bigquery_tables.client().delete_dataset(
                dataset, delete_contents=True, not_found_ok=True
            )
        return orjson.loads(Path(report.name).read_bytes())


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
    """Seconds to build the migration's spec in a fresh process, as `clickstream migrate` does
    (Beam YAML loads its standard providers the first time), imports aside."""
    done = subprocess.run(
        [sys.executable, "-c", COLD_BUILD, path], capture_output=True, text=True, check=True
    )
    return float(done.stdout.split()[-1])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", default=LAB_VISITS, help="glob of JSON-lines visit files")
    targets.rounds_argument(parser)
    parser.add_argument("--repeat", type=int, default=1, help="read the input K times per run")


def _pipelines(args: argparse.Namespace, lines: list[bytes]) -> Rounds:
    """Floor, model, both pipelines and the catalog's start-up, alternating over the rounds."""
    rounds = Rounds()
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl") as one:
        one.write(lines[0])
        one.flush()
        visits, floor_lines = len(lines) * args.repeat, lines * FLOOR_PASSES
        for number in range(1, args.rounds + 1):
            rounds.time("floor", lambda: floor(floor_lines), len(floor_lines))
            rounds.time("model", lambda: model(lines * args.repeat), visits)
            rounds.time("straightforward", lambda: straightforward(args.input, args.repeat), visits)
            rounds.time("catalog", lambda: catalog(args.input, args.repeat), visits)
            rounds.time("start-up", lambda: catalog(one.name, 1))
            rounds.print_round(number)
    return rounds


def _migrations(args: argparse.Namespace) -> tuple[Rounds, list[dict], list[float]] | None:
    """The migration (wall and CPU of the whole process; its reports) and the spec's build in a
    fresh process (seconds), alternating; None without the local stack."""
    from clickstream.local import emulators

    os.environ.update(emulators.emulator_env())
    if not emulators.status()["bigquery"]["answers"]:
        return None
    rounds, reports, builds = Rounds(), [], []
    print("\nmigration (`clickstream migrate`, a fresh process and dataset each round):")
    for number in range(1, args.rounds + 1):
        rounds.time("migrate", lambda: reports.append(_migrate(args.input)))
        if not reports[-1]["reconciled"]:
            raise SystemExit("error: the migration did not reconcile")
        rounds.time("spec build", lambda: builds.append(cold_build(args.input)))
        rounds.print_round(number)
    return rounds, reports, builds


def measure(args: argparse.Namespace) -> list[Target]:
    """Runs the measurements, prints the figures; the targets."""
    lines = _lines(args.input)
    if not lines:
        raise SystemExit(f"error: no visits in {args.input}")
    print(
        f"{len(lines):,} visits in {len(glob.glob(args.input))} files; "
        f"pipelines read them {args.repeat}x; {args.rounds} alternating rounds"
    )
    rounds = _pipelines(args, lines)
    rounds.print_table("visit")
    print(f"{'':<20}(start-up: the catalog pipeline over one visit)")
    checked = [
        Target(
            "batch: catalog / straightforward pipeline, same runner",
            tuple(rounds.ratios("straightforward", "catalog")),
            CATALOG_TARGET,
            "x",
        ),
        Target(
            "batch: orjson floor / visit model, plain Python",
            tuple(rounds.ratios("model", "floor")),
            MODEL_TARGET,
            "x",
            at_least=False,
        ),
    ]
    migrated = _migrations(args)
    if migrated is None:
        print("migration: skipped, the local stack is not running (make up)")
        return checked
    migrations, reports, builds = migrated
    migrations.print_table()
    took = statistics.median(report["seconds"] for report in reports)
    report = sorted(reports, key=lambda r: r["seconds"])[len(reports) // 2]
    parse = max(
        statistics.median(rounds.wall("catalog")) / args.repeat
        - statistics.median(rounds.wall("start-up")),
        0.0,
    )
    build = statistics.median(builds)
    staging, merging = report["seconds_staging"], report["seconds_merging"]
    print(
        f"\nmigration into the BigQuery emulator (medians), {report['records_read']:,} visits, "
        "reconciled: yes\n"
        f"  the process           {statistics.median(migrations.wall('migrate')):5.1f} s\n"
        f"  interpreter, imports  {statistics.median(migrations.wall('migrate')) - took:5.1f} s\n"
        f"  what it reports       {took:5.1f} s  (`took`: from before the spec is built)\n"
        f"    building the spec   {build:5.1f} s  (Beam YAML's standard providers, the first time "
        "in a process)\n"
        f"    parse               {parse:5.1f} s  (the catalog's wall time less its start-up)\n"
        f"    staging             {staging:5.1f} s  (load jobs into staging tables)\n"
        f"    merge               {merging:5.1f} s  (one MERGE per table)\n"
        f"    the rest            {max(took - build - parse - staging - merging, 0):5.1f} s  "
        "(pipeline start, dataset, row counts, lineage)"
    )
    checked.append(
        Target(
            "batch: lab migration end to end (`clickstream migrate` process), seconds",
            tuple(migrations.wall("migrate")),
            MIGRATION_TARGET_SECONDS,
            "s",
            at_least=False,
            basis="wall",
        )
    )
    return checked


if __name__ == "__main__":
    targets.main(__doc__, add_arguments, measure)
