"""The analyst views (metadata/views) on the BigQuery emulator: exact results on a small known
fixture, agreement with a direct computation over the lab files, idempotent apply, the command."""

import argparse
import collections
import datetime
import functools
import json
import os
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import analyst_datasets
import pytest

from clickstream.cli import main as cli_main
from clickstream.cli import views as views_command
from clickstream.core import contract, jsonlines, visit
from clickstream.gcp import bigquery_tables, views

VIEW_NAMES = sorted(analyst_datasets.FIXTURE_RESULTS)


def view_rows(dataset: str, name: str) -> list[dict]:
    bq = bigquery_tables.client()
    return [dict(row.items()) for row in bq.query(f"SELECT * FROM `{dataset}.{name}`").result()]


def ordered(rows: list[dict]) -> list[dict]:
    """Rows sorted by their dimensions (text and time columns), for comparing views (unordered)."""

    def dimensions(row: dict) -> list[str]:
        return [str(v) for k, v in sorted(row.items()) if isinstance(v, str | datetime.datetime)]

    return sorted(rows, key=dimensions)


def test_every_view_has_a_file_a_description_and_placeholders():
    loaded = contract.views()
    assert [view.name for view in loaded] == VIEW_NAMES
    for view in loaded:
        assert len(view.description) > 80 and "--" not in view.description
        assert "{project}.{dataset}." in view.template and not view.template.startswith("--")
        assert "`my-project.my_data." in view.query("my-project", "my_data")


def test_a_view_file_without_description_is_refused():
    with pytest.raises(ValueError, match="description"):
        contract.parse_view("bare", "SELECT 1")


@pytest.mark.parametrize("name", VIEW_NAMES)
def test_view_on_the_known_fixture(stack, name):
    dataset = analyst_datasets.fixture_dataset()
    assert ordered(view_rows(dataset, name)) == ordered(analyst_datasets.FIXTURE_RESULTS[name])


def test_apply_views_is_idempotent_and_replaces_stale_views(stack):
    from google.cloud import bigquery

    dataset = "analyst_apply"
    bigquery_tables.ensure_tables(None, dataset)
    bq = bigquery_tables.client()
    stale = bigquery.Table(f"{bq.project}.{dataset}.visits_by_device")
    stale.view_query = "SELECT 1 AS one"
    stale.description = "stale"
    bq.create_table(stale)

    first = views.apply_views(None, dataset)
    second = views.apply_views(None, dataset)
    names = [view.name for view in views.analyst_views()]
    assert first == second == [f"{bq.project}.{dataset}.{name}" for name in names]
    assert names[-len(VIEW_NAMES) :] == VIEW_NAMES  # the one-row-per-key views come first
    for view in contract.views():
        table = bq.get_table(f"{bq.project}.{dataset}.{view.name}")
        assert (table.table_type, table.description) == ("VIEW", view.description)
    assert view_rows(dataset, "visits_by_device") == []  # the real SQL now, on empty tables


def test_views_apply_command(stack, capsys):
    parser = argparse.ArgumentParser()
    views_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["views", "apply", "--dataset", "analyst_cli"])
    args.run(args)
    out = capsys.readouterr().out.splitlines()
    names = [view.name for view in views.analyst_views()]
    assert out == [f"view {stack.project}.analyst_cli.{name} ready" for name in names]
    assert view_rows("analyst_cli", "visits_by_page") == []


def test_unique_views_show_each_key_once_and_compaction_removes_the_copies(stack, capsys):
    """A redelivery beyond BigQuery's insert-id window leaves a second copy of a row, and a late
    update of a minute a second version: the views show one row per key, the highest version,
    and compacting the days (`clickstream compact`) removes the rest."""
    from clickstream.gcp import warehouse

    dataset = "analyst_unique"
    views.ensure_analyst_dataset(None, dataset)
    bq = bigquery_tables.client()
    view = functools.partial(view_rows, dataset)
    first_visit = jsonlines.split(analyst_datasets.FIXTURE.read_bytes())[0]
    page_view = visit.parse_visit(first_visit, "fixture:1").rows["page_views"][0]
    bq.insert_rows_json(f"{bq.project}.{dataset}.page_views", [page_view, page_view])
    minute = {
        "window_start": "2024-07-01T09:00:00+00:00",
        "window_end": "2024-07-01T09:01:00+00:00",
        "page_path": "*",
        "timing": "ON_TIME",
    }
    counts = [{**minute, "page_views": 3, "pane_index": 0}, {**minute, "page_views": 4,
              "pane_index": 1, "timing": "LATE"}]  # fmt: skip
    bq.insert_rows_json(f"{bq.project}.{dataset}.page_view_counts", counts[::-1])
    assert len(view("page_views")) == 2 and len(view("page_views_unique")) == 1
    ((latest,),) = [[r["page_views"] for r in view("page_view_counts_unique")]]
    assert latest == 4

    tomorrow = datetime.date.today() + datetime.timedelta(days=1)
    compact = ["compact", "--dataset", dataset, "--before", tomorrow.isoformat()]
    cli_main.main(compact)
    printed = capsys.readouterr().out.splitlines()
    for table in ("page_views", "page_view_counts"):
        assert f"{bq.project}.{dataset}.{table} 2024-07-01: 1 copies removed" in printed
    assert f"{bq.project}.{dataset}.visits: nothing to compact before {tomorrow}" in printed
    cli_main.main(compact)  # idempotent
    assert all("nothing to compact" in line for line in capsys.readouterr().out.splitlines())
    assert len(view("page_views")) == 1
    assert [r["page_views"] for r in view("page_view_counts")] == [4]
    # Days not yet past (the streaming buffer may hold their rows) wait.
    bq.insert_rows_json(f"{bq.project}.{dataset}.page_views", [page_view])
    day = datetime.date.fromisoformat(page_view["event_timestamp"][:10])
    assert warehouse.compact(bq, f"{bq.project}.{dataset}.page_views", "page_views", day) == {}


def test_views_apply_without_stack_says_how_to_start_it(monkeypatch):
    monkeypatch.setattr(os, "environ", os.environ.copy())  # the command sets emulator variables
    monkeypatch.setenv("CLICKSTREAM_BIGQUERY_PORT", "1")
    parser = argparse.ArgumentParser()
    views_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["views", "apply"])
    with pytest.raises(SystemExit, match="clickstream local up"):
        args.run(args)


# The lab data: each view against the same figures computed directly from the files.


@functools.cache
def lab_results(lab_dir: Path) -> dict[str, list[dict]]:
    """Every view's rows computed in plain Python from the lab's JSON lines (money as exact
    decimals from the JSON text; timestamps without a zone as UTC)."""
    pages = collections.defaultdict(lambda: {"visits": set(), "page_views": 0})
    per_minute = collections.Counter()
    devices = collections.defaultdict(collections.Counter)
    items = collections.defaultdict(lambda: {"units_sold": 0, "revenue": 0, "orders": set()})
    names = {}
    categories = collections.defaultdict(lambda: {"units_sold": 0, "revenue": 0, "orders": set()})
    for path in sorted(lab_dir.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            visit_key = (path.name, number)  # every line of the lab files is a distinct visit
            visit = json.loads(line, parse_float=Decimal)
            device = devices[visit.get("device_type") or "(not set)"]
            device["visits"] += 1
            purchased = False
            for index, wrapped in enumerate(visit["events"]):
                event = wrapped.get("event", wrapped)
                details = event["details"]
                if event["event_type"] == "page_view":
                    page = urlsplit(details["page_url"]).path or "/"
                    pages[page]["visits"].add(visit_key)
                    pages[page]["page_views"] += 1
                    minute = datetime.datetime.fromisoformat(event["timestamp"]).replace(
                        second=0, microsecond=0, tzinfo=datetime.UTC
                    )
                    per_minute[(minute, page)] += 1
                    device["page_views"] += 1
                elif event["event_type"] == "purchase":
                    purchased = True
                    currency = details.get("currency") or "(not set)"
                    for item in details["items"]:
                        category = item.get("category") or "(not set)"
                        amount = item["price"] * item["quantity"]
                        for totals in (
                            items[(item["product_id"], currency)],
                            categories[(category, currency)],
                        ):
                            totals["units_sold"] += item["quantity"]
                            totals["revenue"] += amount
                            totals["orders"].add((visit_key, index))
                        names[item["product_id"]] = (item.get("product_name"), category)
            device["visits_with_purchase"] += purchased
    return {
        "visits_by_page": [
            {"page_path": page, "visits": len(t["visits"]), "page_views": t["page_views"]}
            for page, t in pages.items()
        ],
        "page_views_per_minute": [
            {"minute": minute, "page_path": page, "page_views": count}
            for (minute, page), count in per_minute.items()
        ],
        "visits_by_device": [
            {
                "device_type": device,
                "visits": t["visits"],
                "visits_with_purchase": t["visits_with_purchase"],
                "page_views": t["page_views"],
            }
            for device, t in devices.items()
        ],
        "sales_by_category": [
            {"category": category, "currency": currency, **_sums(t)}
            for (category, currency), t in categories.items()
        ],
        "popular_items": _ranked(
            [
                {
                    "product_id": product,
                    "product_name": names[product][0],
                    "category": names[product][1],
                    "currency": currency,
                    **_sums(t),
                }
                for (product, currency), t in items.items()
            ]
        ),
    }


def _sums(totals: dict) -> dict:
    return {
        "revenue": totals["revenue"],
        "units_sold": totals["units_sold"],
        "orders": len(totals["orders"]),
    }


def _ranked(rows: list[dict]) -> list[dict]:
    """Adds units_rank and revenue_rank (SQL RANK: ties share a rank) within each currency."""
    for column, rank in (("units_sold", "units_rank"), ("revenue", "revenue_rank")):
        for row in rows:
            peers = [other for other in rows if other["currency"] == row["currency"]]
            row[rank] = 1 + sum(other[column] > row[column] for other in peers)
    return rows


@pytest.mark.parametrize("name", VIEW_NAMES)
def test_view_on_the_lab_data_matches_a_direct_computation(stack, lab_data, name):
    dataset = analyst_datasets.lab_dataset(lab_data)
    expected = lab_results(lab_data)[name]
    assert ordered(view_rows(dataset, name)) == ordered(expected)
