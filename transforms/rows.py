"""Rows as Beam YAML's transforms pass them (``beam.Row``), made from dicts without a copy: a
Row is its instance ``__dict__`` (``apache_beam/pvalue.py``: ``beam.Row(**fields)`` copies
``fields`` into it), so the dict itself can be that ``__dict__``. The same object as
``beam.Row(**fields)`` (type, fields, their order, equality), for elements made by the thousand;
the caller hands the dicts over and no longer changes them."""

from typing import Any

import apache_beam as beam

_new = object.__new__


def as_row(fields: dict[str, Any]) -> beam.Row:
    """``beam.Row(**fields)``, without copying ``fields``."""
    row = _new(beam.Row)
    row.__dict__ = fields
    return row


def as_rows(tables: dict[str, list[dict[str, Any]]]) -> beam.Row:
    """``beam.Row(**{name: [beam.Row(**fields) for fields in rows] for name, rows in ...})``
    without copying a dict: a Row of lists of Rows (``ParseVisits``: a field per table).
    ``as_row``'s two lines are inlined: a call per row is about 1 µs a visit, on the hot path."""
    converted: dict[str, Any] = {}
    for name, rows in tables.items():
        listed: list[beam.Row] = []
        for fields in rows:
            row = _new(beam.Row)
            row.__dict__ = fields
            listed.append(row)
        converted[name] = listed
    return as_row(converted)
