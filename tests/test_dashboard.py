"""The dashboard: its HTTP endpoints on the known fixture, the Looker Studio link, the command,
and the pages drawn by headless Chromium (the four charts on the lab data, with a screenshot)."""

import argparse
import collections
import contextlib
import datetime
import json
import subprocess
import threading
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import analyst_datasets
import pytest

from clickstream.cli import dashboard as dashboard_command
from clickstream.core import contract
from clickstream.dashboard import server as dashboard
from clickstream.gcp import bigquery_tables

CHROMIUM = Path("/usr/bin/chromium")
CHARTS = ("visits_by_page", "visits_by_device", "sales_by_category", "popular_items")
REFRESH_SECONDS = 5


@contextlib.contextmanager
def serving(dataset: str, minutes: int = 2):
    """The dashboard server on a free port in a thread, its clock at the data's latest minute."""
    source = dashboard.Source(bigquery_tables.client(), dataset)
    with served(dashboard.Settings(source, "latest", minutes, REFRESH_SECONDS)) as url:
        yield url


@contextlib.contextmanager
def served(settings: dashboard.Settings):
    """The dashboard server with ``settings`` on a free port in a thread; its URL."""
    server = dashboard.DashboardServer(("127.0.0.1", 0), settings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def url(stack):
    with serving(analyst_datasets.fixture_dataset()) as base:
        yield base


def get(address: str) -> tuple[int, str, bytes]:
    """Status, content type and body of a GET."""
    try:
        with urllib.request.urlopen(address, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def get_json(address: str) -> tuple[int, dict]:
    status, kind, body = get(address)
    assert kind == "application/json"
    return status, json.loads(body)


def test_pages_and_plotly_are_served_locally(url):
    for path, kind in (
        ("", "text/html"),
        ("realtime", "text/html"),
        ("static/dashboard.js", "text/javascript"),
        ("static/dashboard.css", "text/css"),
    ):
        status, content_type, body = get(url + path)
        assert (status, content_type.split(";")[0]) == (200, kind)
        assert b"http://" not in body and b"https://" not in body  # nothing from a CDN
    page = get(url)[2].decode()
    assert '<script src="/static/plotly.min.js">' in page
    assert all(f'<div id="{chart}" class="chart">' in page for chart in CHARTS)
    status, content_type, body = get(url + "static/plotly.min.js")
    assert (status, content_type.split(";")[0]) == (200, "text/javascript")
    assert body == dashboard.plotly_js() and len(body) > 1_000_000


def test_charts_api_on_the_known_fixture(url):
    status, body = get_json(url + "api/charts")
    assert status == 200
    assert set(body) == {"source", "data", "totals", "charts"}
    assert body["source"].endswith(".analyst_fixture")
    assert body["data"]["visits_by_page"] == analyst_datasets.FIXTURE_RESULTS["visits_by_page"]
    assert body["totals"] == {
        "visits": 4,
        "visits_with_purchase": 3,
        "page_views": 8,
        "units_sold": 9,
        "revenue": {"USD": 1149.94, "(not set)": 249.5},
    }
    charts = body["charts"]
    assert set(charts) == set(CHARTS)
    visits, page_views = charts["visits_by_page"]["data"]
    assert visits["x"] == page_views["x"] == ["/home", "/products", "/cart", "/"]
    assert (visits["y"], page_views["y"]) == ([3, 2, 1, 1], [3, 2, 2, 1])
    (devices,) = charts["visits_by_device"]["data"]
    assert (devices["labels"], devices["values"]) == (["mobile", "(not set)", "desktop"], [2, 1, 1])
    sales = {
        trace["name"]: dict(zip(trace["x"], trace["y"], strict=True))
        for trace in charts["sales_by_category"]["data"]
    }
    assert sales == {
        "(not set)": {"software": 199.5, "(not set)": 50.0},
        "USD": {"hardware": 999.99, "peripherals": 149.95},
    }
    by_units, by_revenue = charts["popular_items"]["data"]
    assert by_units["y"] == [
        "Gift Card ((not set))",
        "Wireless Mouse (USD)",
        "Laptop X200 (USD)",
        "Office Suite Pro ((not set))",
    ]
    assert by_units["x"] == [2, 5, 1, 1]
    assert by_revenue["y"][:2] == ["Laptop X200 (USD)", "Office Suite Pro ((not set))"]
    assert by_revenue["x"] == [999.99, 199.5, 50.0, 149.95]


def test_realtime_api_window_ends_at_the_latest_minute(url):
    status, body = get_json(url + "api/realtime")
    assert status == 200
    assert {k: body[k] for k in ("clock", "minutes", "window_end", "page_views")} == {
        "clock": "latest",
        "minutes": 2,
        "window_end": "2024-07-01T09:03:00+00:00",
        "page_views": 3,
    }
    assert body["refresh_seconds"] == REFRESH_SECONDS
    assert body["per_minute"] == [
        {"minute": "2024-07-01T09:02:00+00:00", "page_views": 1},
        {"minute": "2024-07-01T09:03:00+00:00", "page_views": 2},
    ]
    assert body["by_page"] == [
        {"page_path": "/", "page_views": 1},
        {"page_path": "/home", "page_views": 1},
        {"page_path": "/products", "page_views": 1},
    ]
    assert set(body["charts"]) == {"page_views_per_minute", "clicks_by_page"}
    wider = get_json(url + "api/realtime?minutes=5")[1]
    assert [row["page_views"] for row in wider["per_minute"]] == [0, 2, 3, 1, 2]


def test_realtime_window_ends_now_on_a_live_stream(stack):
    source = dashboard.Source(bigquery_tables.client(), analyst_datasets.fixture_dataset())
    now = datetime.datetime(2024, 7, 1, 9, 1, 30, tzinfo=datetime.UTC)
    body = dashboard.realtime_data(source, 2, "now", now=now)
    assert body["window_end"] == now.replace(second=0)
    assert [row["page_views"] for row in body["per_minute"]] == [2, 3]
    assert [(row["page_path"], row["page_views"]) for row in body["by_page"]] == [
        ("/cart", 2),
        ("/home", 2),
        ("/products", 1),
    ]
    today = dashboard.realtime_data(source, 3, "now")  # the fixture is from 2024
    assert [row["page_views"] for row in today["per_minute"]] == [0, 0, 0]
    assert today["by_page"] == []


@pytest.mark.parametrize("minutes", ["0", "abc", "-5", "1441"])
def test_realtime_api_refuses_a_bad_window(url, minutes):
    status, body = get_json(url + f"api/realtime?minutes={minutes}")
    assert status == 400 and "minutes must be" in body["error"]


def test_unknown_paths_and_query_failures_answer_json_errors(stack, url):
    assert get_json(url + "api/nothing") == (404, {"error": "not found: /api/nothing"})
    with serving("no_such_dataset") as broken:
        status, body = get_json(broken + "api/charts")
    assert status == 502 and "no_such_dataset" in body["error"]


def test_looker_link_has_one_bigquery_data_source_per_view():
    assert sorted(dashboard.LOOKER_DATA_SOURCES) == [view.name for view in contract.views()]
    link = dashboard.looker_link("my-project", "clicks")
    assert link.startswith("https://lookerstudio.google.com/reporting/create?")
    params = {key: values[0] for key, values in parse_qs(urlsplit(link).query).items()}
    assert params.pop("r.reportName") == "Clickstream analytics (my-project.clicks)"
    assert params.pop("c.mode") == "edit"
    for index, name in enumerate(dashboard.LOOKER_DATA_SOURCES):
        prefix = f"ds.ds{index}."
        mine = [key for key in params if key.startswith(prefix)]
        assert {key.removeprefix(prefix): params.pop(key) for key in mine} == {
            "connector": "bigQuery",
            "datasourceName": f"clicks.{name}",
            "type": "TABLE",
            "projectId": "my-project",
            "datasetId": "clicks",
            "tableId": name,
        }
    assert params == {}  # no template: a blank report
    templated = dashboard.looker_link("my-project", "clicks", report_id="abc-123")
    assert parse_qs(urlsplit(templated).query)["c.reportId"] == ["abc-123"]


def run_command(*argv: str) -> None:
    parser = argparse.ArgumentParser()
    dashboard_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dashboard", *argv])
    args.run(args)


def test_looker_link_command_prints_the_url_and_its_data_sources(capsys):
    run_command("--looker-link", "--project", "my-project", "--dataset", "clicks")
    out, err = capsys.readouterr()
    assert out == dashboard.looker_link("my-project", "clicks") + "\n"
    assert "a blank report" in err and "ds4  my-project.clicks.page_views_per_minute" in err
    with pytest.raises(SystemExit, match="--looker-link needs --project"):
        run_command("--looker-link")


def test_dashboard_command_asks_for_the_views_when_missing(stack):
    bigquery_tables.ensure_tables(None, "analyst_no_views")
    with pytest.raises(SystemExit, match=r"clickstream views apply --dataset analyst_no_views"):
        run_command("--dataset", "analyst_no_views")


# In a browser


class DrawnMarks(HTMLParser):
    """From a dumped DOM: the <body> attributes and, per chart, the marks plotly drew (bars are
    g.point, pie slices g.slice) inside its div."""

    def __init__(self, chart_ids: tuple[str, ...]):
        super().__init__()
        self.chart_ids = chart_ids
        self.chart = None
        self.body: dict[str, str | None] = {}
        self.marks: collections.Counter[str] = collections.Counter()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = set((attributes.get("class") or "").split())
        if tag == "body":
            self.body = attributes
        elif attributes.get("id") in self.chart_ids:
            self.chart = attributes["id"]  # the charts are siblings: marks follow their own div
        elif tag == "g" and self.chart and classes & {"point", "slice"}:
            self.marks[self.chart] += 1


@pytest.fixture
def browser() -> Path:
    """Debian's Chromium (installed by `make setup-browser`)."""
    if not CHROMIUM.exists():
        pytest.fail(f"headless Chromium is missing ({CHROMIUM}): run `make setup-browser`")
    return CHROMIUM


def chromium(tmp_path: Path, address: str, *flags: str) -> str:
    """Headless Chromium on ``address`` after its scripts ran (virtual time); its stdout."""
    command = [
        str(CHROMIUM),
        *("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"),
        *("--disable-background-networking", "--disable-component-update", "--no-first-run"),
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=12000",
        *flags,
        address,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


def drawn(tmp_path: Path, address: str, chart_ids: tuple[str, ...]) -> DrawnMarks:
    parser = DrawnMarks(chart_ids)
    parser.feed(chromium(tmp_path, address, "--dump-dom"))
    return parser


def test_dashboard_draws_the_four_charts_of_the_lab_data_in_chromium(
    stack, lab_data, browser, tmp_path
):
    with serving(analyst_datasets.lab_dataset(lab_data)) as base:
        page = drawn(tmp_path, base, CHARTS)
        screenshot = tmp_path / "dashboard.png"
        chromium(tmp_path, base, f"--screenshot={screenshot}", "--window-size=1440,1120")
    assert page.body.get("data-rendered") == "4"
    # 5 pages x (visits, page views); 3 devices; 3 categories; top 10 by units and by revenue
    assert page.marks == {
        "visits_by_page": 10,
        "visits_by_device": 3,
        "sales_by_category": 3,
        "popular_items": 20,
    }
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 50_000


def test_realtime_page_draws_and_refreshes_itself_in_chromium(url, browser, tmp_path):
    page = drawn(tmp_path, url + "realtime?minutes=5", ("page_views_per_minute", "clicks_by_page"))
    assert int(page.body.get("data-updates") or 0) >= 2  # 12 s of virtual time, refresh 5 s
    assert page.marks == {"page_views_per_minute": 5, "clicks_by_page": 4}
