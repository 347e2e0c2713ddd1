"""``as_row`` makes the very Row that ``beam.Row(**fields)`` makes (the specs' tests compare
them by type and by fields in order)."""

import apache_beam as beam

from clickstream.transforms.rows import as_row, as_rows


def test_as_row_is_beam_row_of_the_same_fields_in_order():
    fields = {"visit_id": "v1", "event_index": 3, "page_path": "/", "referrer_url": None}
    row, expected = as_row(dict(fields)), beam.Row(**fields)
    assert type(row) is beam.Row and row == expected and expected == row
    assert list(vars(row).items()) == list(vars(expected).items())
    assert row._asdict() == fields and row.page_path == "/"
    assert as_row(dict(reversed(fields.items()))) != expected  # order is part of a Row


def test_as_rows_is_a_row_of_lists_of_rows():
    tables = {"visits": [{"visit_id": "v1"}], "page_views": [{"visit_id": "v1", "event_index": 0}]}
    expected = beam.Row(**{t: [beam.Row(**r) for r in rows] for t, rows in tables.items()})
    made = as_rows({t: [dict(r) for r in rows] for t, rows in tables.items()})
    assert made == expected and type(made.visits[0]) is beam.Row
    assert as_rows({"dead_letter": []}) == beam.Row(dead_letter=[])
