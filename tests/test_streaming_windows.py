"""Event time and windowing under control: TestStream drives the lateness policy's every branch
(on time, late within the allowed lateness, too late, out of order), then each streaming spec
end to end with its Pub/Sub read replaced by a TestStream and its real sinks."""

import datetime
import json
import uuid

import apache_beam as beam
import orjson
import pytest
import yaml
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_stream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import PaneInfoTiming
from apache_beam.yaml import yaml_provider, yaml_transform

from clickstream import pipelines
from clickstream.core import templates, visit
from clickstream.transforms import (
    bigquery_sink,
    dos_log,
    lateness,
    page_view_counts,
    windowed_files,
)

T0 = datetime.datetime(2024, 7, 1, 9, 0, tzinfo=datetime.UTC)
LATENESS = 600


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def stamp(seconds: float) -> Timestamp:
    return Timestamp.from_utc_datetime(at(seconds))


def streaming() -> PipelineOptions:
    return PipelineOptions(["--runner=BundleBasedDirectRunner", "--streaming"])


def stream(*events) -> test_stream.TestStream:
    """A TestStream from ("watermark", seconds), ("rows", [(dict, seconds), ...]) and
    ("processing", seconds) events; rows are emitted as dicts at their event time."""
    source = test_stream.TestStream()
    for kind, value in events:
        if kind == "watermark":
            source = source.advance_watermark_to(stamp(value))
        elif kind == "processing":
            source = source.advance_processing_time(value)
        else:
            source = source.add_elements([window.TimestampedValue(r, stamp(t)) for r, t in value])
    return source.advance_watermark_to_infinity()


def panes_of(windowed):
    """(window start in seconds from T0, pane timing, pane index, sorted names) per pane."""

    def describe(keyed, w=beam.DoFn.WindowParam, p=beam.DoFn.PaneInfoParam):
        start = (w.start.micros - stamp(0).micros) // 1_000_000
        return start, PaneInfoTiming.to_string(p.timing), p.index, tuple(sorted(keyed[1]))

    return (
        windowed
        | "Key" >> beam.Map(lambda r: (0, r.name))
        | "Group" >> beam.GroupByKey()
        | "Describe" >> beam.Map(describe)
    )


def as_rows(pcoll, label="Rows"):
    return pcoll | label >> beam.Map(lambda fields: beam.Row(**fields))


def named(seconds: float, name: str) -> dict:
    return {"name": name, "ts": at(seconds).isoformat()}


@pytest.mark.parametrize("too_late", ["output", "arrival"])
def test_lateness_policy_on_time_late_too_late_out_of_order(too_late):
    events = stream(
        ("watermark", 0),
        ("rows", [(named(40, "b"), 40), (named(10, "a"), 10)]),  # out of order
        ("watermark", 90),  # the 09:00 window fires on time with a and b
        ("rows", [(named(30, "late"), 30)]),  # behind the watermark, within the lateness
        ("watermark", 60 + LATENESS + 1),  # the gate closes 09:00 for good
        ("rows", [(named(50, "too late"), 50), (named(700, "next"), 700)]),
    )
    with beam.Pipeline(options=streaming()) as p:
        rows = as_rows(p | events)
        out = rows | lateness.WindowWithLateness("ts", 60, LATENESS, too_late=too_late)
        panes = panes_of(out["windowed"])
        known = panes | "Known" >> beam.Filter(lambda d: d[3] != ("too late",))
        expected = [(0, "ON_TIME", 0, ("a", "b")), (0, "LATE", 1, ("late",))]
        assert_that(known, equal_to([*expected, (660, "ON_TIME", 0, ("next",))]), label="panes")
        retimed = panes | "Retimed" >> beam.Filter(lambda d: d[3] == ("too late",))
        # With "arrival" it is written in the window of its arrival (the wall clock's, not 2024).
        expect_retimed = [True] if too_late == "arrival" else []
        assert_that(
            retimed | beam.Map(lambda d: d[0] > 10**7), equal_to(expect_retimed), label="arrival"
        )
        assert_that(out["too_late"] | beam.Map(lambda r: r.name), equal_to(["too late"]))


def test_live_traffic_goes_straight_to_its_window_and_old_data_through_the_gate():
    """A row whose window cannot have closed (its end plus the lateness is ahead of the wall
    clock) skips the gate's one key per window; a row of an old window meets the gate."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    live = [{"name": f"live {i}", "ts": (now - datetime.timedelta(seconds=i)).isoformat()}
            for i in range(3)]  # fmt: skip
    old = [named(10, "old")]  # 2024
    source = test_stream.TestStream().add_elements(
        [window.TimestampedValue(r, Timestamp.from_utc_datetime(now)) for r in live + old]
    )
    pipeline = beam.Pipeline(options=streaming())
    out = as_rows(pipeline | source.advance_watermark_to_infinity()) | lateness.WindowWithLateness(
        "ts", 60, LATENESS
    )
    names_of = out["windowed"] | beam.Map(lambda r: r.name)
    assert_that(names_of, equal_to([r["name"] for r in live + old]))
    result = pipeline.run()
    result.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace("clickstream"))["counters"]
    }
    assert (counters["lateness_recent"], counters["lateness_gated"]) == (3, 1)


def page_view(seconds: float, path: str, visit_id: str, index: int = 0) -> dict:
    return {
        "visit_id": visit_id,
        "event_index": index,
        "event_timestamp": at(seconds).isoformat(),
        "session_id": "SID-1",
        "user_id": "UID-1",
        "device_type": "mobile",
        "page_url": f"https://example.com{path}",
        "page_path": path,
        "referrer_url": None,
    }


def test_page_view_counts_update_late_minutes_and_record_too_late_ones():
    events = stream(
        ("watermark", 0),
        ("rows", [(page_view(t, p, f"v{t}"), t) for t, p in ((10, "/home"), (40, "/cart"))]),
        ("rows", [(page_view(20, "/home", "v20"), 20)]),  # out of order
        ("watermark", 90),
        ("rows", [(page_view(30, "/home", "v30"), 30)]),  # late: updates the minute
        ("watermark", 60 + LATENESS + 1),
        ("rows", [(page_view(50, "/cart", "v50", 3), 50)]),  # too late
    )
    minute = (at(0).isoformat(), at(60).isoformat())
    with beam.Pipeline(options=streaming()) as p:
        counts = as_rows(p | events) | page_view_counts.PageViewCounts(60, LATENESS)
        assert_that(
            counts["counts"]
            | beam.Map(lambda r: (r.window_start, r.window_end, r.page_path, r.page_views,
                                  r.timing, r.pane_index)),
            equal_to([
                (*minute, "*", 3, "ON_TIME", 0), (*minute, "/home", 2, "ON_TIME", 0),
                (*minute, "/cart", 1, "ON_TIME", 0),
                (*minute, "*", 4, "LATE", 1), (*minute, "/home", 3, "LATE", 1),
            ]),
            label="counts",
        )  # fmt: skip
        entries = counts["counts"] | dos_log.DosEntries(threshold=3)
        assert_that(
            entries | beam.Map(lambda e: (e.page_views, e.over_threshold, e.severity, e.timing)),
            equal_to([(3, False, "INFO", "ON_TIME"), (4, True, "WARNING", "LATE")]),
            label="dos",
        )
        late = counts["too_late"] | beam.Map(lambda r: r._asdict())
        expected = {
            "level": "late",
            "source": f"window:{minute[0]}/{minute[1]}",
            "visit_id": "v50",
            "event_index": 3,
            "page_path": "/cart",
            "lateness": "(allowed lateness 600 s)",
        }
        assert_that(
            late
            | beam.Map(
                lambda d: {
                    **{k: d[k] for k in ("level", "source", "visit_id", "event_index")},
                    "page_path": json.loads(d["payload"])["page_path"],
                    "lateness": d["reason"][d["reason"].index("(") :],
                }
            ),
            equal_to([expected]),
            label="too_late",
        )


# The streaming specs, their Pub/Sub read replaced by a TestStream of messages.

SUBSCRIPTION = "projects/clickstream-local/subscriptions/test"


class _Messages(beam.PTransform):
    def __init__(self, events: test_stream.TestStream):
        super().__init__()
        self.events = events

    def expand(self, pbegin):
        return as_rows(pbegin | self.events)


def message(payload: bytes, published: float, message_id: str) -> tuple[dict, float]:
    """A record as ReadPubSubRecords emits it, at its publish time."""
    fields = {"payload": payload, "source": f"pubsub:{message_id}"}
    return {**fields, "publish_time": at(published).isoformat()}, published


def visit_json(session: str, *page_views: tuple[float, str]) -> bytes:
    events = [
        {"event_type": "page_view", "timestamp": at(t).isoformat(),
         "details": {"page_url": f"https://example.com{path}"}}
        for t, path in page_views
    ]  # fmt: skip
    return orjson.dumps({"session_id": session, "user_id": "UID-1", "events": events})


def run_spec(name: str, params: dict, events: test_stream.TestStream) -> None:
    """Run spec ``name`` with the template's parameters on the local streaming runner."""
    given = {"subscription": SUBSCRIPTION, **params}
    variables = templates.variables(name, given, unchecked=("output",))
    path = pipelines.spec_path(name)
    text = yaml_transform.expand_jinja(path.read_text(), variables)
    spec = yaml.load(text, Loader=yaml_transform.SafeLineLoader)
    (read,) = [t for t in spec["pipeline"]["transforms"] if t["type"] == "ReadPubSubRecords"]
    read["type"], read["config"] = "Messages", {}
    source = yaml_provider.InlineProvider({"Messages": lambda: _Messages(events)}, ["Messages"])
    with beam.Pipeline(options=streaming()) as p:
        yaml_transform.expand_pipeline(
            p, spec, providers={"Messages": [source]}, pipeline_path=str(path)
        )


class _SinkOnTestClock(bigquery_sink.WriteToBigQueryTable):
    """The sink with its batches timed by the TestStream's processing time, which starts at 0."""

    clock = staticmethod(lambda: 0.0)


def test_streaming_sink_writes_every_batch_over_many_panes(stack):
    bq, dataset = _dataset("panes")
    batches = [[f"pane {pane} row {row}" for row in range(3 + pane)] for pane in range(4)]
    events = [("watermark", 0)]
    for pane, rows in enumerate(batches):
        records = [visit.dead_letter_row(text, f"test:{pane}", "test") for text in rows]
        events += [("rows", [(record, pane) for record in records]), ("processing", 61)]
    with beam.Pipeline(options=streaming()) as p:
        written = (
            as_rows(p | stream(*events[:-1]))  # the last batch is written when the input ends
            | _SinkOnTestClock(f"{dataset}.dead_letter")
            | beam.Map(lambda result: result.rows_written)
        )
        # One write per pane: what came after the first write is written too, each time.
        assert_that(written, equal_to([len(rows) for rows in batches]))
    assert _rows(bq, f"SELECT payload FROM `{bq.project}.{dataset}.dead_letter`") == sorted(
        (text,) for rows in batches for text in rows
    )


def test_raw_to_gcs_spec_writes_every_message_to_its_window_file(tmp_path):
    payloads = {
        "first": visit_json("SID-1", (5, "/home")),
        "next minute": visit_json("SID-2", (65, "/home")),
        "two lines": b'{"session_id": "SID-3",\n "events": []}',
        "late": visit_json("SID-4", (15, "/cart")),
        "too late": visit_json("SID-5", (35, "/cart")),
    }
    run_spec(
        "raw_to_gcs",
        {"output": str(tmp_path / "raw"), "window_seconds": "60", "shards": "1"},
        stream(
            ("watermark", 0),
            ("rows", [message(payloads["next minute"], 70, "2")]),
            (
                "rows",
                [message(payloads["first"], 10, "1"), message(payloads["two lines"], 30, "3")],
            ),
            ("watermark", 130),
            ("rows", [message(payloads["late"], 20, "4")]),
            ("watermark", 60 + LATENESS + 61),
            ("rows", [message(payloads["too late"], 40, "5")]),
        ),
    )
    files = {f.name: sorted(f.read_bytes().splitlines()) for f in (tmp_path / "raw").iterdir()}
    minute = "visits-20240701T090000Z-20240701T090100Z"
    framed = windowed_files.line(payloads["two lines"])
    assert json.loads(framed).encode("utf-8", "surrogateescape") == payloads["two lines"]
    one = "00000-of-00001.jsonl"
    assert files.pop(f"{minute}-pane-0-{one}") == sorted([payloads["first"], framed])
    assert files.pop(f"{minute}-pane-1-{one}") == [payloads["late"]]
    assert files.pop(f"visits-20240701T090100Z-20240701T090200Z-pane-0-{one}") == [
        payloads["next minute"]
    ]
    # The too-late message is written with the window it arrived in (the wall clock's).
    ((name, lines),) = files.items()
    assert lines == [payloads["too late"]] and not name.startswith("visits-2024")


def test_a_window_is_spread_over_its_shards_by_message(tmp_path):
    lines = [f'{{"session_id": "SID-{i}"}}'.encode() for i in range(40)]
    with beam.Pipeline(options=streaming()) as p:
        rows = as_rows(p | stream(("rows", [({"payload": data}, 10) for data in lines])))
        _ = (
            rows
            | beam.WindowInto(window.FixedWindows(60))
            | windowed_files.WriteWindowedFiles(str(tmp_path), shards=4)
        )
    files = {f.name: f.read_bytes().splitlines() for f in tmp_path.iterdir()}
    assert len(files) == 4 and sorted(x for f in files.values() for x in f) == sorted(lines)
    for data in lines:
        shard = windowed_files.shard_of(data, 4)
        assert (
            data
            in files[f"visits-20240701T090000Z-20240701T090100Z-pane-0-0000{shard}-of-00004.jsonl"]
        )


def _dataset(prefix: str) -> tuple:
    from clickstream.gcp import bigquery_tables, views

    bq = bigquery_tables.client()
    dataset = f"{prefix}_{uuid.uuid4().hex[:8]}"
    views.ensure_analyst_dataset(bq.project, dataset)
    return bq, dataset


def _rows(bq, sql: str) -> list[tuple]:
    return sorted(tuple(r) for r in bq.query(sql).result())


def test_streaming_to_bigquery_spec_loads_visits_and_dead_letters(stack):
    from clickstream.simulator import visits

    bq, dataset = _dataset("streamed")
    plan = visits.Plan(600, count=12, seed=7, malformed_rate=0.25)
    sent = list(visits.messages(plan, T0))
    records = [message(m.data, m.offset + 1, str(i)) for i, m in enumerate(sent)]
    run_spec(
        "streaming_to_bigquery",
        {"dataset": dataset, "triggering_frequency": "60"},
        stream(
            ("watermark", 0),
            ("rows", records[6:][::-1]),  # out of order
            ("processing", 61),  # a write of what came so far
            ("rows", records[:6]),
        ),
    )
    malformed = sum(m.kind == "malformed" for m in sent)
    assert 0 < malformed < len(sent)
    table = f"`{bq.project}.{dataset}"
    assert _rows(bq, f"SELECT COUNT(*) FROM {table}.visits`") == [(len(sent) - malformed,)]
    assert _rows(bq, f"SELECT level, COUNT(*) FROM {table}.dead_letter` GROUP BY level") == [
        ("visit", malformed)
    ]
    sources = {f"pubsub:{i}" for i, m in enumerate(sent) if m.kind == "malformed"}
    assert {r[0] for r in _rows(bq, f"SELECT source FROM {table}.dead_letter`")} == sources


def test_page_views_per_minute_spec_updates_late_minutes_in_place(stack):
    bq, dataset = _dataset("per_minute")
    run_spec(
        "page_views_per_minute",
        {"dataset": dataset, "triggering_frequency": "60"},
        stream(
            ("watermark", 0),
            ("rows", [message(visit_json("S1", (10, "/home"), (40, "/cart")), 41, "1")]),
            ("rows", [message(visit_json("S2", (20, "/home")), 21, "2")]),
            ("watermark", 90),  # 09:00 on time: 3 page views
            ("processing", 61),  # written
            ("rows", [message(visit_json("S3", (30, "/home")), 95, "3")]),  # late: 4
            ("processing", 61),  # updated in place
            ("watermark", 60 + LATENESS + 1),
            ("rows", [message(visit_json("S4", (50, "/cart")), 700, "4")]),  # too late
            ("rows", [message(b"[]", 700, "5")]),  # not a visit
        ),
    )
    table = f"`{bq.project}.{dataset}"
    counts = _rows(
        bq,
        f"SELECT page_path, page_views, timing, pane_index FROM {table}.page_view_counts_unique` "
        f"WHERE window_start = '{at(0).isoformat()}'",
    )
    assert counts == [("*", 4, "LATE", 1), ("/cart", 1, "ON_TIME", 0), ("/home", 3, "LATE", 1)]
    dead = _rows(bq, f"SELECT level, source FROM {table}.dead_letter`")
    assert dead == [
        ("late", f"window:{at(0).isoformat()}/{at(60).isoformat()}"),
        ("visit", "pubsub:5"),
    ]


def test_dos_detection_spec_logs_every_window_and_flags_the_burst(tmp_path):
    bot = visit_json("BOT", *[(10 + i / 10, "/home") for i in range(8)])
    log = tmp_path / "dos.log"
    run_spec(
        "dos_detection",
        {"threshold": "5", "log_file": str(log)},
        stream(
            ("watermark", 0),
            ("rows", [message(bot, 12, "1"), message(visit_json("S1", (70, "/home")), 71, "2")]),
            ("rows", [message(b"not json", 72, "3")]),
            ("watermark", 130),
        ),
    )
    entries = sorted((json.loads(line) for line in log.read_text().splitlines()), key=str)
    windows = [e for e in entries if "over_threshold" in e]
    assert windows == [
        {"window_start": at(s).isoformat(), "window_end": at(s + 60).isoformat(),
         "page_views": n, "threshold": 5, "over_threshold": over, "severity": severity,
         "timing": "ON_TIME", "pane_index": 0}
        for s, n, over, severity in ((0, 8, True, "WARNING"), (60, 1, False, "INFO"))
    ]  # fmt: skip
    (reject,) = [e for e in entries if "over_threshold" not in e]
    assert (reject["level"], reject["source"], reject["severity"]) == (
        "visit",
        "pubsub:3",
        "WARNING",
    )
