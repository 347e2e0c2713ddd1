"""The Beam face of the visit model: records in, every analyst table's rows out."""

from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from clickstream.core import contract, names, visit
from clickstream.transforms.rows import as_rows

_COUNTERS = (
    "visits_accepted",
    "visits_rejected",
    "events_accepted",
    "events_rejected",
    "events_in_loaded_visits",
    *names.EVENT_TABLES,
)


class _Parse(beam.DoFn):
    """Counts are added up per bundle and reported when it finishes: one counter update per
    bundle instead of several per visit."""

    def setup(self) -> None:
        self.counters = {n: Metrics.counter(names.COUNTER_NAMESPACE, n) for n in _COUNTERS}

    def start_bundle(self) -> None:
        self.counts = dict.fromkeys(_COUNTERS, 0)

    def process(self, record: Any) -> list[Any]:
        parsed = visit.parse_visit(record.payload, getattr(record, "source", None) or "unknown")
        rows, counts = parsed.rows, self.counts
        if parsed.visit_loaded:
            row = rows["visits"][0]
            counts["visits_accepted"] += 1
            counts["events_rejected"] += len(rows["dead_letter"])
            counts["events_in_loaded_visits"] += row["event_count"]
            counts["page_view"] += row["page_view_count"]
            counts["add_item_to_cart"] += row["cart_add_count"]
            counts["purchase"] += row["purchase_count"]
            counts["events_accepted"] += row["event_count"] - row["rejected_event_count"]
        else:
            counts["visits_rejected"] += 1
        return [as_rows(rows)]

    def finish_bundle(self) -> None:
        for name, count in self.counts.items():
            if count:
                self.counters[name].inc(count)


class ParseVisits(beam.PTransform[beam.PCollection[Any], beam.PCollection[Any]]):
    """Parses, validates, keys and flattens visits into rows for the analyst tables.

    Input rows have ``payload`` (bytes or text of one visit, JSON) and, optionally, ``source``
    (where it came from, kept in dead letters). Both the documented visit shape and the lab's
    real one (events wrapped as ``{"event": {...}}``, timestamps without a zone, read as UTC) are
    accepted; the rules are in ``metadata/visit.schema.json`` and ``core/visit.py``.

    Outputs one element per input record: a row with one field per table of ``metadata/tables``
    (``visits``, ``page_views``, ``cart_adds``, ``purchases``, ``purchase_items``,
    ``dead_letter``), each the list of that table's rows from the record. A record that is not a
    valid visit gives one ``dead_letter`` row (level ``visit``); a bad event in a valid visit
    gives one (level ``event``) while the visit and its other events load. Nothing is dropped
    silently. Keeping a record's rows together keeps Beam's per-element cost per visit, not per
    row: ``WriteVisitTables`` writes them all, ``VisitRows`` takes out one table's rows.
    """

    def expand(self, pcoll: beam.PCollection[Any]) -> beam.PCollection[Any]:
        # A DoFn without __init__ of its own has Beam's, which is not annotated.
        return pcoll | "Parse" >> beam.ParDo(_Parse())  # type: ignore[no-untyped-call]


class VisitRows(beam.PTransform[beam.PCollection[Any], beam.PCollection[Any]]):
    """The rows of one analyst table from ``ParseVisits`` records, one element each.

    Args:
      table: The table, e.g. ``page_views`` or ``dead_letter``.
    """

    def __init__(self, table: str) -> None:
        super().__init__()
        if table not in contract.TABLES:
            raise ValueError(f"table {table!r} is not one of {', '.join(contract.TABLES)}")
        self.table = table

    def expand(self, records: beam.PCollection[Any]) -> beam.PCollection[Any]:
        return records | self.table >> beam.FlatMap(lambda record, t=self.table: getattr(record, t))
