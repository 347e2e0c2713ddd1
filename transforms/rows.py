"""Rows as Beam YAML's transforms pass them (``beam.Row``), made from dicts without a copy."""

import apache_beam as beam


def as_row(fields: dict) -> beam.Row:
    """``beam.Row(**fields)``, the same object (type, fields, their order, equality), made
    without copying ``fields`` twice: a Row is its instance ``__dict__``
    (``apache_beam/pvalue.py``), here ``fields`` itself, which the caller hands over and no
    longer changes. For elements made by the thousand (``ParseVisits``: one per row)."""
    row = object.__new__(beam.Row)
    row.__dict__ = fields
    return row
