"""The Beam face of the visit model: records in, rows for every analyst table out."""

import apache_beam as beam
from apache_beam.metrics import Metrics

from clickstream.core import contract, names, visit

_COUNTERS = (
    "visits_accepted",
    "visits_rejected",
    "events_accepted",
    "events_rejected",
    "events_in_loaded_visits",
    *visit.EVENT_TABLES,
)


class _Parse(beam.DoFn):
    def setup(self):
        self.counters = {name: Metrics.counter(names.COUNTER_NAMESPACE, name) for name in _COUNTERS}

    def process(self, record):
        parsed = visit.parse_visit(record.payload, getattr(record, "source", None) or "unknown")
        for table, rows in parsed.rows.items():
            for row in rows:
                if table == "visits":
                    yield beam.Row(**row)
                else:
                    yield beam.pvalue.TaggedOutput(table, beam.Row(**row))
        counters = self.counters
        if not parsed.visit_loaded:
            counters["visits_rejected"].inc()
            return
        counters["visits_accepted"].inc()
        counters["events_rejected"].inc(len(parsed.rows["dead_letter"]))
        events = parsed.rows["visits"][0]
        counters["events_in_loaded_visits"].inc(events["event_count"])
        counters["page_view"].inc(events["page_view_count"])
        counters["add_item_to_cart"].inc(events["cart_add_count"])
        counters["purchase"].inc(events["purchase_count"])
        counters["events_accepted"].inc(
            events["page_view_count"] + events["cart_add_count"] + events["purchase_count"]
        )


class ParseVisits(beam.PTransform):
    """Parses, validates, keys and flattens visits into rows for the analyst tables.

    Input rows have ``payload`` (bytes or text of one visit, JSON) and, optionally, ``source``
    (where it came from, kept in dead letters). Both the documented visit shape and the lab's
    real one (events wrapped as ``{"event": {...}}``, timestamps without a zone, read as UTC) are
    accepted; the rules are in ``metadata/visit.schema.json`` and ``transforms/visit.py``.

    Outputs, one per table in ``metadata/tables``: ``visits``, ``page_views``, ``cart_adds``,
    ``purchases``, ``purchase_items`` and ``dead_letter``. A record that is not a valid visit
    gives one ``dead_letter`` row (level ``visit``); a bad event in a valid visit gives one
    (level ``event``) while the visit and its other events load. Nothing is dropped silently.
    """

    def expand(self, pcoll):
        others = [name for name in contract.TABLES if name != "visits"]
        outputs = pcoll | "Parse" >> beam.ParDo(_Parse()).with_outputs(*others, main="visits")
        return {name: outputs[name] for name in contract.TABLES}
