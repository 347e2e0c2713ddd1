"""The batch migration end to end on the local stack: counts, idempotency, bad input."""

import json
import subprocess
import sys

import pytest

from clickstream.gcp import bigquery_tables
from clickstream.pipelines import migration


def test_lab_data_loads_exactly_once(stack, lab_data, tmp_path):
    first = migration.migrate(str(lab_data / "*.jsonl"), "lab")
    assert first["records_read"] == first["visits_loaded"] == 8804
    assert first["visits_rejected"] == first["events_rejected"] == 0
    assert first["events_loaded"] == 46634
    assert first["events_by_type"] == {
        "page_view": 35422,
        "add_item_to_cart": 8999,
        "purchase": 2213,
    }
    assert first["tables"] == {
        "visits": 8804,
        "page_views": 35422,
        "cart_adds": 8999,
        "purchases": 2213,
        "purchase_items": 4455,
        "dead_letter": 0,
    }
    assert first["reconciled"]
    second = migration.migrate(str(lab_data / "*.jsonl"), "lab")
    assert second["tables"] == first["tables"]
    assert set(second["rows_inserted"].values()) == {0}


def test_nasty_corpus_reconciles(stack, tmp_path):
    import nasty_corpus

    data, expected = nasty_corpus.corpus()
    path = tmp_path / "nasty.jsonl"
    path.write_bytes(data)
    report = migration.migrate(str(path), "nasty")
    for key, value in expected.items():
        assert report[key] == value, key
    assert report["reconciled"]
    bq = bigquery_tables.client()
    rows = bq.query(
        f"SELECT level, COUNT(*) FROM `{bq.project}.nasty.dead_letter` GROUP BY level"
    ).result()
    dead = dict(tuple(row) for row in rows)
    # Every rejected record has its own dead letter (keyed by source line)...
    assert dead.get("visit", 0) == expected["visits_rejected"]
    # ...and so has every rejected event of a distinct loaded visit.
    assert dead.get("event", 0) == report["rows_inserted"]["dead_letter"] - dead.get("visit", 0)
    assert report["tables"]["visits"] <= expected["visits_loaded"]


VISIT = (
    '{"session_id": "S", "user_id": "U", "events": [{"event_type": "page_view", '
    '"timestamp": "2024-07-01T09:00:00Z", "details": {"page_url": "https://e.com/"}}]}'
)


def test_bom_crlf_and_blank_lines(stack, tmp_path):
    line = VISIT
    path = tmp_path / "windows.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + line.encode()
        + b"\r\n\r\n   \r\n"
        + line.replace('"S"', '"T"').encode()
        + b"\r\n"
    )
    report = migration.migrate(str(path), "windows")
    assert (report["records_read"], report["visits_loaded"], report["events_loaded"]) == (2, 2, 2)
    assert report["tables"]["page_views"] == 2


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "clickstream.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_cli_refuses_a_path_that_matches_nothing(stack, tmp_path):
    result = _cli("migrate", "--input", str(tmp_path / "none-*.jsonl"))
    assert result.returncode != 0
    assert "no file matches" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_writes_the_report(stack, tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text('{"session_id": "S", "user_id": "U", "events": []}\n[1]\n')
    report_file = tmp_path / "report.json"
    result = _cli("migrate", "--input", str(path), "--dataset", "cli", "--report", str(report_file))
    assert result.returncode == 0, result.stderr
    report = json.loads(report_file.read_text())
    assert (report["visits_loaded"], report["visits_rejected"]) == (1, 1)
    assert "Migration report" in result.stdout


def test_cli_reads_cloud_storage(stack, tmp_path):
    """gs:// input from the storage emulator; Beam finds credentials at the stand-in metadata
    server instead of retrying for them and going anonymous."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    gcs = storage.Client(project=stack.project, credentials=AnonymousCredentials())
    blob = gcs.bucket(stack.project).blob("landing/visits-1.jsonl")
    blob.upload_from_string(b"\xef\xbb\xbf" + VISIT.encode() + b"\r\n[]\r\n")
    result = _cli("migrate", "--input", f"gs://{stack.project}/landing/*.jsonl", "--dataset", "gcs")
    assert result.returncode == 0, result.stderr
    assert "Connecting anonymously" not in result.stderr
    assert "records read              2" in result.stdout
    assert "visits loaded             1  rejected 1" in result.stdout


def test_cli_without_stack_says_how_to_start_it(tmp_path, monkeypatch):
    import os

    env = dict(os.environ, CLICKSTREAM_BIGQUERY_PORT="1", CLICKSTREAM_STATE_DIR=str(tmp_path))
    result = _cli("migrate", "--input", str(tmp_path / "x.jsonl"), env=env)
    assert result.returncode != 0
    assert "clickstream local up" in result.stderr


@pytest.mark.parametrize("table", ["nodataset", "a.b.c.d", ".t"])
def test_sink_refuses_bad_table_names(table):
    from clickstream.transforms.bigquery_sink import WriteToBigQueryTable

    with pytest.raises(ValueError, match=r"dataset\.table"):
        WriteToBigQueryTable(table)
