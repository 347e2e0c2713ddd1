"""The batch migration's lineage (``gcp/lineage.py``): the real ``google-cloud-datacatalog-lineage``
client against a fake Data Lineage API on loopback (``clickstream.fakes.lineage``), the local
stack's lineage file, and the graph ``clickstream governance lineage`` prints of a local
migration run."""

import datetime
import json
from pathlib import Path

import pytest

from clickstream.cli import main
from clickstream.core import contract, names
from clickstream.fakes.lineage import FakeLineage
from clickstream.gcp import lineage
from clickstream.governance import lineage_graph

STARTED = datetime.datetime(2024, 9, 1, 6, 0, tzinfo=datetime.UTC)
ENDED = STARTED + datetime.timedelta(minutes=2)
FILES = [f"gs://landing-bucket/landing/visits-2024-08-{day}.jsonl" for day in (28, 29)]
TABLES = lineage.migration_tables("my-project", "clickstream")
PROCESS = "projects/my-project/locations/us/processes/clickstream-batch-migration"


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.delenv(names.LINEAGE_FILE_ENV, raising=False)  # to the API, not a file
    service = FakeLineage()
    yield service
    service.stop()


def record(fake, files=FILES, run_id="migration-1", succeeded=True):
    return lineage.record_migration(
        "my-project",
        "us",
        run_id,
        files,
        TABLES,
        STARTED,
        ENDED,
        succeeded,
        {"visits_loaded": 7},
        client=fake.client(),
    )


def test_events_link_each_raw_file_to_each_curated_table_by_fully_qualified_name(fake):
    record(fake)
    assert list(fake.processes) == [PROCESS]
    run = fake.runs[f"{PROCESS}/runs/migration-1"]
    assert (run.state.name, run.start_time, run.end_time) == ("COMPLETED", STARTED, ENDED)
    assert run.attributes["visits_loaded"] == 7 and run.attributes["input_files"] == 2
    links = {
        (link.source.fully_qualified_name, link.target.fully_qualified_name)
        for event in fake.events.values()
        for link in event.links
    }
    sources = {
        "gcs:landing-bucket.`landing/visits-2024-08-28.jsonl`",
        "gcs:landing-bucket.`landing/visits-2024-08-29.jsonl`",
    }
    targets = {f"bigquery:my-project.clickstream.{table}" for table in contract.TABLES}
    assert links == {(s, t) for s in sources for t in targets}
    assert len(fake.events) == len(contract.TABLES)  # one event per table


def test_a_retry_creates_nothing_twice_even_after_its_request_ids_expired(fake):
    record(fake)
    counts = (len(fake.processes), len(fake.runs), len(fake.events))
    record(fake)  # the same request ids: the API answers what it made the first time
    fake._requests.clear()  # request ids forgotten: the names exist, ALREADY_EXISTS is skipped
    record(fake)
    assert (len(fake.processes), len(fake.runs), len(fake.events)) == counts
    record(fake, run_id="migration-2")
    assert (len(fake.processes), len(fake.runs)) == (1, 2)


def test_more_sources_than_an_event_holds_are_split_across_events(fake):
    files = [f"gs://b/landing/visits-{i:03d}.jsonl" for i in range(250)]
    record(fake, files)
    visits = [e for name, e in sorted(fake.events.items()) if ".visits-" in name]
    assert [len(e.links) for e in visits] == [100, 100, 50]


def test_a_failed_run_is_recorded_without_events(fake):
    record(fake, succeeded=False)
    assert fake.runs[f"{PROCESS}/runs/migration-1"].state.name == "FAILED"
    assert fake.events == {}


def test_local_files_are_counted_not_linked(fake, caplog):
    record(fake, [*FILES, "/home/someone/visits.jsonl"])
    run = fake.runs[f"{PROCESS}/runs/migration-1"]
    assert run.attributes["unnamed_sources"] == 1
    assert "not in Cloud Storage" in caplog.text
    sources = {k.source.fully_qualified_name for e in fake.events.values() for k in e.links}
    assert len(sources) == 2


def test_the_migration_writes_every_table_and_its_dead_letter_table_wherever_it_is():
    assert [f"my-project.clickstream.{table}" for table in contract.TABLES] == TABLES
    moved = lineage.migration_tables("my-project", "clickstream", "other-project:errors.rejected")
    assert moved[-1] == "other-project.errors.rejected"
    assert moved[:-1] == TABLES[:-1]


def test_fully_qualified_names_quote_segments_with_reserved_characters():
    assert lineage.storage_fqn("gs://b/landing/v.jsonl") == "gcs:b.`landing/v.jsonl`"
    assert lineage.storage_fqn("gs://b/landing/v") == "gcs:b.landing/v"
    assert lineage.storage_fqn("gs://b") == "gcs:b"
    assert lineage.storage_fqn("/tmp/v.jsonl") is None
    assert lineage.bigquery_fqn("example.com:p.d.t") == "bigquery:`example.com:p`.d.t"
    assert lineage.resource_id("scheduled__2024-09-01T06:00:00+00:00") == (
        "scheduled__2024-09-01T06:00:00-00:00"
    )


def test_the_graph_from_the_api_and_from_the_local_file_agree(fake, tmp_path, monkeypatch):
    record(fake)
    from_api = lineage_graph.pick(lineage_graph.runs_from_api(fake.client(), PROCESS))
    monkeypatch.setenv(names.LINEAGE_FILE_ENV, str(tmp_path / "lineage.jsonl"))
    record(fake)  # to the file now
    record(fake)  # a retry appends the calls again: read once
    from_file = lineage_graph.pick(
        lineage_graph.runs_from_calls(lineage.read_file(tmp_path / "lineage.jsonl"))
    )
    assert from_api.links == from_file.links and len(from_api.links) == 12
    assert from_api.run["state"] == from_file.run["state"] == "COMPLETED"
    assert lineage_graph.mermaid(from_api) == lineage_graph.mermaid(from_file)
    with pytest.raises(KeyError, match="migration-1"):
        lineage_graph.pick([from_file], "migration-9")


def _visit_lines() -> bytes:
    folder = Path(__file__).parent / "fixtures" / "visits" / "valid"
    visits = [
        json.loads((folder / name).read_text()) for name in ("lab-shape.json", "null-currency.json")
    ]
    return b"".join(json.dumps(v).encode() + b"\n" for v in visits)


def test_a_local_migration_run_prints_its_lineage_graph(stack, capsys):
    """Files landed in the stack's bucket, migrated: the run's graph from the lineage file."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from clickstream.pipelines import migration

    bucket = storage.Client(project=stack.project, credentials=AnonymousCredentials()).bucket(
        stack.project
    )
    for day in ("28", "29"):
        bucket.blob(f"{names.LANDING_PREFIX}lineage/visits-{day}.jsonl").upload_from_string(
            _visit_lines()
        )
    report = migration.migrate(f"gs://{stack.project}/{names.LANDING_PREFIX}lineage/*", "lineage")
    assert report["lineage"]["events"] == len(contract.TABLES)
    main.main(["governance", "lineage"])
    graph = capsys.readouterr().out
    run_id = report["lineage"]["run"].rsplit("/", 1)[-1]
    assert graph.startswith(f"run {run_id}: COMPLETED")
    assert "records_read 4" in graph and "sources (2)" in graph
    assert f"  gcs:{stack.project}.`landing/lineage/visits-28.jsonl`" in graph
    for table in contract.TABLES:
        assert f"  bigquery:{stack.project}.lineage.{table}  <- 2 of 2 sources" in graph
    main.main(["governance", "lineage", "--format", "mermaid", "--run", run_id])
    assert capsys.readouterr().out.startswith("flowchart LR")
    with pytest.raises(SystemExit, match="error: no run 'nope'"):
        main.main(["governance", "lineage", "--run", "nope"])
