"""The capacity model of docs/capacity.md: from the measured CPU cost of a visit to Dataflow
workers, and from the lab's rows per visit to BigQuery's bill, at steady rates of visits per
minute. Arithmetic only: the measured figures are data (``benchmarks/capacity.json``, written by
``benchmarks/capacity.py``), BigQuery's prices and quotas too (``deploy/bigquery_pricing.json``),
and the options are the templates' (``metadata/dataflow_options.json``)."""

import dataclasses
import json
import math
from pathlib import Path

from clickstream.core import contract, templates

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT / "benchmarks" / "capacity.json"
PRICING = ROOT / "deploy" / "bigquery_pricing.json"

RATES = (1_000, 100_000, 1_000_000)  # visits per minute
UTILISATION = 0.7  # share of each worker vCPU the model keeps busy: headroom for bursts
BATCH_HOURS = 1.0  # a batch job migrates a day's visits within this
DAYS = 30  # a month
HISTORY_DAYS = 30  # days a table holds when compaction looks for copies in it
MIB, GIB, TIB = 2**20, 2**30, 2**40
# What a worker spends CPU on per visit, by template: measured components of capacity.json.
CPU = {
    "batch_migration": ("parse", "load"),
    "streaming_to_bigquery": ("parse", "append"),
    "page_views_per_minute": ("parse",),
    "dos_detection": ("parse",),
}
NOT_MODELLED = {
    "raw_to_gcs": "no parse and no BigQuery: its CPU per message (a window, a shard key, a line "
    "written) is not measured; its floor of workers carries the lab's rates",
}
_FIXED_BYTES = {  # BigQuery's logical size of a non-NULL value; STRING and BYTES: 2 + length
    "INT64": 8, "INTEGER": 8, "FLOAT64": 8, "FLOAT": 8, "NUMERIC": 16, "BIGNUMERIC": 32,
    "BOOL": 1, "BOOLEAN": 1, "TIMESTAMP": 8, "DATE": 8, "DATETIME": 8, "TIME": 8,
}  # fmt: skip


def logical_bytes(table: str, row: dict, columns: tuple[str, ...] | None = None) -> int:
    """BigQuery's logical size of ``row`` of ``table`` (what storage and on-demand queries
    bill), over ``columns`` (all by default): NULL is 0 bytes, STRING is 2 + its UTF-8 length."""
    size = 0
    for field in contract.table(table)["schema"]["fields"]:
        value = row.get(field["name"])
        if value is None or (columns is not None and field["name"] not in columns):
            continue
        if field["type"] in ("STRING", "BYTES"):
            size += 2 + len(value.encode("utf-8") if isinstance(value, str) else value)
        else:
            size += _FIXED_BYTES[field["type"]]
    return size


def key_columns(table: str) -> tuple[str, ...]:
    """What a merge reads of the target and compaction reads to find copies: the primary key
    and the partitioning column."""
    partition = contract.table(table).get("timePartitioning", {}).get("field")
    return tuple(dict.fromkeys([*contract.primary_key(table), *([partition] if partition else [])]))


@dataclasses.dataclass(frozen=True)
class TableSize:
    """The lab's rows of one table, per visit."""

    rows_per_visit: float
    logical_bytes_per_row: float
    key_bytes_per_row: float
    json_bytes_per_row: float
    largest_json_row: int


@dataclasses.dataclass(frozen=True)
class Measured:
    """The figures of ``benchmarks/capacity.json``."""

    command: str
    measured_on: str
    input: str  # the visits measured
    machine: str
    visits: int
    json_bytes_per_visit: float
    cpu_seconds_per_visit: dict[str, float]  # parse, load (batch write), append (streaming)
    cpu_seconds_range: dict[str, list[float]]  # the lowest and highest round of each
    rows_per_load: int  # the batch sink's rows of a table per load job, at most
    tables: dict[str, TableSize]

    @classmethod
    def read(cls, path: Path = MEASURED) -> "Measured":
        data = json.loads(path.read_text(encoding="utf-8"))
        data["tables"] = {name: TableSize(**size) for name, size in data["tables"].items()}
        return cls(**data)

    def bytes_per_visit(self, field: str) -> float:
        """Sum over the tables of rows per visit times ``field`` (``logical_bytes_per_row``...)."""
        return sum(t.rows_per_visit * getattr(t, field) for t in self.tables.values())


def pricing(path: Path = PRICING) -> dict:
    """BigQuery's list prices and quotas used by the model, with their source and date read."""
    return json.loads(path.read_text(encoding="utf-8"))


def cpu_seconds(name: str, measured: Measured) -> float | None:
    """CPU seconds a worker spends per visit in template ``name``; None if not modelled."""
    parts = CPU.get(name)
    return sum(measured.cpu_seconds_per_visit[part] for part in parts) if parts else None


def machine_vcpus(machine_type: str) -> int:
    """vCPUs of a predefined machine type, e.g. 4 for ``n2-standard-4``."""
    return int(machine_type.rsplit("-", 1)[1])


@dataclasses.dataclass(frozen=True)
class Workers:
    vcpus: float  # vCPUs at the utilisation target
    workers: int  # of the template's machine type, at least one


def workers(name: str, rate: float, measured: Measured) -> Workers | None:
    """Workers template ``name`` needs at ``rate`` visits per minute: streaming keeps pace with
    the rate; batch migrates a day's visits within ``BATCH_HOURS``. None if not modelled."""
    cpu = cpu_seconds(name, measured)
    if cpu is None:
        return None
    busy = rate / 60 * cpu / UTILISATION  # vCPUs to keep pace
    streaming = templates.metadata(name).get("streaming")
    vcpus = busy if streaming else busy * 24 / BATCH_HOURS  # batch: a day within the window
    per_worker = machine_vcpus(templates.dataflow_options(name).machine_type)
    return Workers(vcpus, max(1, math.ceil(vcpus / per_worker)))


def _query(scanned: float, tables: int, price: dict) -> float:
    """On-demand price of a query that scans ``scanned`` bytes of ``tables`` tables."""
    billed = max(scanned, tables * price["on_demand_min_mib_per_table"] * MIB)
    return billed / TIB * price["on_demand_per_tib"]


def bigquery_month(rate: float, path: str, measured: Measured, price: dict) -> dict[str, float]:
    """Dollars per month of steady traffic at ``rate`` visits per minute, by item, for ``path``:
    ``batch`` (load jobs, one MERGE per table per day), ``streaming`` (insertAll; each day
    compacted: a query for copies over the table's history, a MERGE rewriting the day) or
    ``storage write`` (the same with the Storage Write API's price instead of insertAll's)."""
    day = rate * 60 * 24  # visits per day
    cost = {"ingestion": 0.0, "merges and compaction": 0.0}
    for t in measured.tables.values():
        rows = day * t.rows_per_visit
        logical, keys = rows * t.logical_bytes_per_row, rows * t.key_bytes_per_row
        if path == "batch":  # staged rows read in full, the target's keys in the day
            if rows:  # a table without staged rows is not merged
                cost["merges and compaction"] += DAYS * _query(logical + keys, 2, price)
            continue
        if path == "streaming":
            billed = rows * max(t.logical_bytes_per_row, price["streaming_insert_min_row_bytes"])
            cost["ingestion"] += DAYS * billed / (200 * MIB) * price["streaming_insert_per_200_mib"]
        else:
            cost["ingestion"] += DAYS * logical / GIB * price["storage_write_api_per_gib"]
        find = _query(keys * HISTORY_DAYS, 1, price)  # every partition's keys
        rewrite = _query(2 * logical, 1, price)  # the day read as source and as target
        cost["merges and compaction"] += DAYS * (find + rewrite)
    stored = DAYS * day * measured.bytes_per_visit("logical_bytes_per_row")
    cost["storage (the month's rows, per month)"] = (
        stored / GIB * price["active_storage_per_gib_month"]
    )
    return cost


def load_jobs(rate: float, measured: Measured) -> tuple[int, int]:
    """Load jobs of a day's batch migration at ``rate`` visits per minute: into the busiest
    staging table, and in all. Lower bounds: a worker loads a table's rows ``rows_per_load``
    at a time, and at least once per bundle."""
    day = rate * 60 * 24
    jobs = [
        math.ceil(day * t.rows_per_visit / measured.rows_per_load) for t in measured.tables.values()
    ]
    return max(jobs), sum(jobs)


def load_job_ceiling(measured: Measured, per_table_quota: int) -> int:
    """The highest rate (visits per minute) whose day fits the per-table load job quota."""
    busiest = max(t.rows_per_visit for t in measured.tables.values())
    return int(per_table_quota * measured.rows_per_load / (busiest * 60 * 24))
