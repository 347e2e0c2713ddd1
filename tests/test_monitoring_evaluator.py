"""The alert policy's local twin: the selections of core/dos.py on the entries the real
dos_detection spec writes, the evaluator period by period emailing a real SMTP server on this
machine (aiosmtpd), the log read as it grows, and the incidents on the realtime page."""

import dataclasses
import json
import threading
import time
import urllib.request

import apache_beam as beam
import pytest
from test_dashboard import browser, chromium, served  # noqa: F401 (the browser fixture)
from test_streaming_windows import as_rows, at, page_view, stream, streaming

from clickstream.core import dos, incidents
from clickstream.dashboard import server as dashboard
from clickstream.monitoring import alerting, evaluator, mail
from clickstream.transforms import dos_log, page_view_counts

THRESHOLD, PERIOD = 400, 10


def test_the_metrics_select_the_entries_the_detector_writes(tmp_path):
    """The detector's transforms on a TestStream: window 0 flagged on time, then updated late;
    window 1 normal; a rejected message. The filters are the selections' Cloud Logging twins."""
    log = tmp_path / "dos.log"
    events = stream(
        ("watermark", 0),
        ("rows", [(page_view(10 + i / 10, "/home", "bot"), 10 + i / 10) for i in range(8)]),
        ("rows", [(page_view(70, "/home", "v1"), 70)]),
        ("watermark", 65),
        ("rows", [(page_view(30, "/cart", "v2"), 30)]),  # late for window 0
        ("watermark", 130),
    )
    with beam.Pipeline(options=streaming()) as p:
        counts = as_rows(p | events) | page_view_counts.PageViewCounts(60, 600, per_page=False)
        windows = counts["counts"] | dos_log.DosEntries(threshold=5)
        _ = windows | "Windows" >> dos_log.WriteLogEntries(log_file=str(log))
        reject = p | beam.Create([beam.Row(level="visit", source="pubsub:3", reason="not JSON")])
        _ = reject | "Rejects" >> dos_log.WriteLogEntries(log_file=str(log), severity="WARNING")
    entries = [json.loads(line) for line in log.read_text().splitlines()]

    def selected(selection):
        return sorted(
            (e.get("window_start", "reject"), e.get("pane_index"), e.get("page_views"))
            for e in entries
            if selection.matches(e)
        )

    window_0, window_1 = at(0).isoformat(), at(60).isoformat()
    assert selected(dos.EVERY_ENTRY) == [
        (window_0, 0, 8),
        (window_0, 1, 9),
        (window_1, 0, 1),
        ("reject", None, None),
    ]
    assert selected(dos.FIRST_PANES) == [(window_0, 0, 8), (window_1, 0, 1)]
    assert selected(dos.FLAGGED_WINDOWS) == [(window_0, 0, 8)]
    scope = 'logName="projects/p/logs/clickstream-dos" AND resource.type="global"'
    assert dos.FLAGGED_WINDOWS.logging_filter("p", "clickstream-dos") == (
        f"{scope} AND jsonPayload.pane_index=0 AND jsonPayload.over_threshold=true"
    )
    assert dos.EVERY_ENTRY.logging_filter("p", "a/b") == scope.replace("clickstream-dos", "a%2Fb")
    declared = alerting.Alerting("my-project", "a@example.com")
    for metric in alerting.METRICS:
        resource = declared.log_metric(metric)
        expected = metric.selection.logging_filter("my-project", "clickstream-dos")
        assert resource.fields["filter"] == expected


def window(page_views: int, pane_index: int = 0, timing: str = "ON_TIME") -> dict:
    return dos.entry("2024-07-01T09:00:00+00:00", "x", page_views, THRESHOLD, timing, pane_index)


class Run:
    """An evaluator of the drill's policy on a clock of its own, emailing ``server``."""

    def __init__(self, server: tuple[str, int], tmp_path):
        definition = alerting.Alerting(
            "clickstream-local", "oncall@example.com", THRESHOLD, "log", PERIOD
        )
        self.condition = evaluator.dos_condition(definition)
        self.file = tmp_path / "incidents.jsonl"
        self.metric = alerting.metric_of_type(self.condition.metric_type)
        self.evaluator = evaluator.Evaluator(
            self.condition,
            evaluator.email(self.condition, server),
            lambda incident: incidents.append(self.file, incident),
            start=0.0,
        )

    def period(self, number: int, *entries: dict) -> list[str]:
        """Feed ``entries`` during period ``number``, then let it end; the incidents' states."""
        for entry in entries:
            point = evaluator.entry_point(self.metric, entry)
            if point:
                self.evaluator.observe(*point, number * PERIOD + 1)
        self.evaluator.advance((number + 1) * PERIOD)
        return [incident.state for incident in incidents.read(self.file)]


@pytest.fixture
def mailbox(tmp_path):
    with mail.MailServer(tmp_path / "Maildir") as server:
        yield server


def test_the_evaluator_reads_the_declared_policy():
    definition = alerting.Alerting("clickstream-local", "oncall@example.com", 1234.5, "log", 30)
    condition = evaluator.dos_condition(definition)
    assert (condition.period, condition.threshold, condition.auto_close) == (30, 1234.5, 1800)
    assert condition.metric_type == "logging.googleapis.com/user/clickstream_dos_page_views"
    assert (condition.duration, condition.missing, condition.periods_needed) == (0, None, 1)
    assert (condition.notify_on_open, condition.notify_on_close) == (True, False)
    assert condition.recipients == ("oncall@example.com",)
    assert condition.subject == definition.policy().fields["documentation"]["subject"]


def test_normal_traffic_opens_nothing_and_sends_nothing(mailbox, tmp_path):
    run = Run(mailbox.address, tmp_path)
    for number in range(6):
        assert run.period(number, window(120 + number), window(3, timing="LATE")) == []
    assert run.period(6, window(THRESHOLD)) == []  # at the threshold is not above it
    assert mail.received(mailbox.maildir) == []


def test_a_burst_opens_one_incident_emails_once_and_closes_when_traffic_is_normal(
    mailbox, tmp_path
):
    run = Run(mailbox.address, tmp_path)
    assert run.period(0, window(150)) == []
    assert run.period(1, window(2400)) == ["open"]
    # Late updates of the burst's window are not points; quiet periods change nothing.
    assert run.period(2, window(2600, pane_index=1, timing="LATE")) == ["open"]
    assert run.period(3) == ["open"]
    assert run.period(4, window(2401), window(90)) == ["open"]  # the mean is still above
    assert run.period(5, window(160)) == ["closed"]
    assert run.period(6, window(170)) == ["closed"]
    (email,) = mail.received(mailbox.maildir)
    assert email["Subject"] == run.condition.subject
    assert email["To"] == "oncall@example.com"
    body = email.get_payload(decode=True).decode()
    assert "2400 (per 10 s) is above the threshold 400" in body
    assert run.condition.content.split(".")[0] in body.replace("\n", " ")
    (incident,) = incidents.read(run.file)
    assert (incident.opened_at, incident.closed_at) == (
        "1970-01-01T00:00:20+00:00",
        "1970-01-01T00:01:00+00:00",
    )
    assert incident.notified == ("oncall@example.com",)


def test_windows_first_seen_late_do_not_dilute_an_on_time_burst(mailbox, tmp_path):
    run = Run(mailbox.address, tmp_path)
    late = [window(1, timing="LATE") for _ in range(20)]
    assert run.period(0, window(900), *late) == ["open"]  # the highest of the two series


def test_an_incident_without_data_closes_after_auto_close(mailbox, tmp_path):
    run = Run(mailbox.address, tmp_path)
    assert run.period(0, window(5000)) == ["open"]
    run.evaluator.advance(run.condition.auto_close - 1)
    assert [i.state for i in incidents.read(run.file)] == ["open"]
    run.evaluator.advance(run.condition.auto_close + 1)
    (incident,) = incidents.read(run.file)
    assert incident.state == "closed" and incident.summary.endswith("no data for 1800 s")


def test_a_mail_server_that_is_down_costs_the_email_not_the_incident(tmp_path):
    run = Run(("127.0.0.1", 9), tmp_path)  # nothing listens on the discard port
    assert run.period(0, window(5000)) == ["open"]
    (incident,) = incidents.read(run.file)
    assert incident.notified == () and run.evaluator.notifications == 0


def test_the_log_is_read_as_it_grows(mailbox, tmp_path):
    """Through ``watch`` on the real clock: a line in two writes, a line that is not JSON, and
    the burst; when stopped, the last period is evaluated."""
    log = tmp_path / "dos.log"
    definition = alerting.Alerting("clickstream-local", "oncall@example.com", THRESHOLD, "log", 1)
    condition = evaluator.dos_condition(definition)
    changes: list[incidents.Incident] = []
    watcher = evaluator.Evaluator(
        condition, evaluator.email(condition, mailbox.address), changes.append, time.time()
    )
    stop = threading.Event()
    thread = threading.Thread(target=evaluator.watch, args=(watcher, log, stop))
    thread.start()
    try:
        line = json.dumps(window(100)).encode() + b"\n"
        with open(log, "ab") as out:
            out.write(line[:20])
            out.flush()
            time.sleep(0.3)  # a read or more sees half a line
            out.write(line[20:] + b"not json\n")
        time.sleep(1.1)  # its period ends
        assert changes == []
        with open(log, "ab") as out:
            out.write(json.dumps(window(2400)).encode() + b"\n")
        deadline = time.monotonic() + 10
        while not changes and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join()
    assert [incident.state for incident in changes] == ["open"]
    assert len(mail.received(mailbox.maildir)) == 1


def incidents_file(tmp_path):
    """Incident 1 opened and closed, incident 2 open, incident 3 being written."""
    path = tmp_path / "incidents.jsonl"
    common = {"policy": "p", "value": 900.0, "threshold": 400.0, "summary": "900 > 400"}
    first = incidents.Incident("1", state="open", opened_at="2026-01-01T00:00:00+00:00", **common)
    incidents.append(path, first)
    closed = dataclasses.replace(first, state="closed", closed_at="2026-01-01T00:01:00+00:00")
    incidents.append(path, closed)
    later = incidents.Incident("2", state="open", opened_at="2026-01-01T00:05:00+00:00", **common)
    incidents.append(path, later)
    with open(path, "a") as out:
        out.write('{"id": "3", "state": "op')
    return path


def realtime_page(incidents_path):
    """The dashboard server with no BigQuery behind it (its charts fail), and the incidents."""
    return served(dashboard.Settings(dashboard.Source(None, "unused"), "now", 5, 5, incidents_path))


def test_the_realtime_page_lists_the_incidents_open_first(tmp_path):
    with (
        realtime_page(incidents_file(tmp_path)) as url,
        urllib.request.urlopen(url + "api/incidents", timeout=10) as response,
    ):
        body = json.loads(response.read())
    assert body["open"] == 1
    assert [(i["id"], i["state"]) for i in body["incidents"]] == [("2", "open"), ("1", "closed")]
    assert body["incidents"][1]["closed_at"] == "2026-01-01T00:01:00+00:00"
    assert dashboard.incidents_data(None) == {"source": None, "open": 0, "incidents": []}


@pytest.mark.usefixtures("browser")
def test_the_realtime_page_shows_the_incidents_in_chromium(tmp_path):
    with realtime_page(incidents_file(tmp_path)) as url:
        page = chromium(tmp_path, url + "realtime", "--dump-dom")
    assert 'data-open-incidents="1"' in page
    assert '<section id="incidents" class="card wide">' in page  # shown: no longer hidden
    opened = "OPEN since 2026-01-01T00:05:00+00:00: 900 &gt; 400"
    assert f'<li class="incident open">{opened}</li>' in page
    assert '<li class="incident closed">CLOSED 2026-01-01T00:00:00+00:00 to' in page
