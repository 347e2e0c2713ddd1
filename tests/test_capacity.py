"""The templates' Dataflow options against their metadata and specs, the capacity model's
arithmetic and inputs, and docs/capacity.md fresh. No stack: the fast tier."""

import dataclasses
import itertools
import math
import re

import pytest

from clickstream import pipelines
from clickstream.core import contract, templates
from clickstream.deploy import capacity, capacity_docs
from clickstream.transforms import bigquery_sink

NAMES = pipelines.names()
STREAMING = [n for n in NAMES if templates.metadata(n).get("streaming")]
AGGREGATING = {"PageViewCounts"}  # spec transforms whose output counts elements
MODE_FLAGS = {"AT_LEAST_ONCE": "supportsAtLeastOnce", "EXACTLY_ONCE": "supportsExactlyOnce"}


def test_every_template_has_options_and_nothing_else_does():
    assert sorted(contract.read_json("dataflow_options.json")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_options_are_well_formed_and_explained(name):
    options = templates.dataflow_options(name)
    assert re.fullmatch(r"[a-z][a-z0-9]*-(standard|highmem|highcpu)-\d+", options.machine_type)
    assert 1 <= options.num_workers <= options.max_workers
    expected = {"machine_type", "workers"}
    if name in STREAMING:
        expected |= {"streaming_engine", "streaming_mode"}
    assert set(options.why) == expected and all(options.why.values())


@pytest.mark.parametrize("name", NAMES)
def test_streaming_ones_run_on_streaming_engine(name):
    options = templates.dataflow_options(name)
    if name not in STREAMING:
        assert options.streaming_engine is None, "Streaming Engine is for streaming templates"
        return
    # Off only with a reason; at-least-once mode turns it on anyway.
    assert options.streaming_engine or "not" in options.why["streaming_engine"]
    if templates.metadata(name)["defaultStreamingMode"] == "AT_LEAST_ONCE":
        assert options.streaming_engine


@pytest.mark.parametrize("name", NAMES)
def test_the_default_streaming_mode_is_supported_and_fits_the_spec(name):
    meta = templates.metadata(name)
    if name not in STREAMING:
        assert not {"defaultStreamingMode", *MODE_FLAGS.values()} & set(meta)
        return
    assert meta[MODE_FLAGS[meta["defaultStreamingMode"]]] is True
    used = set(re.findall(r"^\s*- type: (\w+)", pipelines.spec_path(name).read_text(), re.M))
    if used & AGGREGATING:  # a duplicate would be counted: exactly-once
        assert meta["defaultStreamingMode"] == "EXACTLY_ONCE"


@pytest.mark.parametrize("name", NAMES)
def test_the_build_command_carries_the_options(name):
    options = templates.dataflow_options(name)
    (_, build) = templates.build_commands(name, "p", "r", "b", "repo", "tag")
    assert build[:4] == ["gcloud", "dataflow", "flex-template", "build"]
    given = dict(itertools.pairwise(build))
    assert given["--worker-machine-type"] == options.machine_type
    assert given["--num-workers"] == str(options.num_workers)
    assert given["--max-workers"] == str(options.max_workers)
    assert ("--enable-streaming-engine" in build) == bool(options.streaming_engine)


@pytest.mark.parametrize("name", NAMES)
def test_the_autoscaling_range_reaches_what_the_model_needs(name):
    measured = capacity.Measured.read()
    assert (name in capacity.CPU) != (name in capacity.NOT_MODELLED)
    need = capacity.workers(name, max(capacity.RATES), measured)
    if need is not None:
        assert need.workers <= templates.dataflow_options(name).max_workers


def test_the_measured_figures_fit_the_code():
    measured = capacity.Measured.read()
    assert list(measured.tables) == list(contract.TABLES)
    assert measured.rows_per_load == bigquery_sink.ROWS_PER_LOAD
    parts = {part for parts in capacity.CPU.values() for part in parts}
    assert parts == set(measured.cpu_seconds_per_visit) == set(measured.cpu_seconds_range)
    for part, (low, high) in measured.cpu_seconds_range.items():
        assert 0 < low <= measured.cpu_seconds_per_visit[part] <= high


def test_logical_bytes_follow_bigquerys_data_sizes():
    row = {"visit_id": "abc", "event_index": 3, "price": "9.99", "product_name": None}
    assert capacity.logical_bytes("cart_adds", row) == (2 + 3) + 8 + 16 + 0
    assert capacity.logical_bytes("cart_adds", {"product_name": "é"}) == 2 + 2
    assert capacity.key_columns("page_views") == ("visit_id", "event_index", "event_timestamp")
    assert capacity.key_columns("dead_letter") == ("dead_letter_id",)


def _one_table(logical: float, keys: float) -> capacity.Measured:
    size = capacity.TableSize(1.0, logical, keys, 0.0, 0)
    return dataclasses.replace(capacity.Measured.read(), tables={"visits": size})


def test_bigquery_costs_by_hand():
    """One table, one 512-byte row per visit, at a rate of 2**20 / 1440 visits per minute
    (2**20 rows a day); the prices of the pricing file."""
    price = capacity.pricing()["prices"]
    rate = 2**20 / 1440
    m = _one_table(512, 64)
    streaming = capacity.bigquery_month(rate, "streaming", m, price)
    # insertAll: each row billed 1 KiB, 1 GiB a day.
    assert streaming["ingestion"] == pytest.approx(
        30 * 1024 / 200 * price["streaming_insert_per_200_mib"]
    )
    # Storage Write API: 512 MiB a day.
    write = capacity.bigquery_month(rate, "storage write", m, price)
    assert write["ingestion"] == pytest.approx(30 * 0.5 * price["storage_write_api_per_gib"])
    # Compaction: 64 MiB of keys x 30 days of history, and the day (512 MiB) read twice.
    tib = 30 * (64 * 30 + 2 * 512) / 2**20
    assert streaming["merges and compaction"] == pytest.approx(tib * price["on_demand_per_tib"])
    # Batch: load jobs free, a MERGE reads the staged day and a day of keys.
    batch = capacity.bigquery_month(rate, "batch", m, price)
    assert batch["ingestion"] == 0
    tib = 30 * (512 + 64) / 2**20
    assert batch["merges and compaction"] == pytest.approx(tib * price["on_demand_per_tib"])
    storage = 30 * 0.5 * price["active_storage_per_gib_month"]  # 15 GiB of rows in a month
    assert batch["storage (the month's rows, per month)"] == pytest.approx(storage)


def test_small_queries_bill_the_minimum_per_table():
    price = capacity.pricing()["prices"]
    cost = capacity.bigquery_month(1, "batch", _one_table(1, 1), price)
    minimum = 30 * 2 * price["on_demand_min_mib_per_table"] / 2**20 * price["on_demand_per_tib"]
    assert cost["merges and compaction"] == pytest.approx(minimum)


def test_workers_by_hand():
    m = dataclasses.replace(
        capacity.Measured.read(), cpu_seconds_per_visit={"parse": 0.00056, "append": 0, "load": 0}
    )
    # 60,000 visits/min = 1,000/s x 0.56 ms = 0.56 vCPU busy = 0.8 vCPU at 70%: one worker.
    streaming = capacity.workers("streaming_to_bigquery", 60_000, m)
    assert streaming.vcpus == pytest.approx(0.8) and streaming.workers == 1
    # Batch: a day's 19.2 vCPU-hours within one hour: 19.2 vCPUs, 5 workers of 4 vCPUs.
    batch = capacity.workers("batch_migration", 60_000, m)
    per_worker = capacity.machine_vcpus(templates.dataflow_options("batch_migration").machine_type)
    assert batch.vcpus == pytest.approx(19.2) and batch.workers == math.ceil(19.2 / per_worker)
    assert capacity.workers("raw_to_gcs", 60_000, m) is None


def test_the_capacity_page_is_fresh():
    assert capacity_docs.write(check=True) == [], "run `clickstream template docs`"
