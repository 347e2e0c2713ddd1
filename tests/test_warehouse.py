"""The writer's append strategy, without BigQuery: which rows go out and under which insert ids
(the emulator ignores insert ids, so the stack tests cannot see them)."""

from clickstream.gcp import warehouse

MINUTE = {
    "window_start": "2024-07-01T09:00:00+00:00",
    "window_end": "2024-07-01T09:01:00+00:00",
    "page_path": "*",
}


def _sent(table: str, rows: list[dict]) -> list[tuple[str, dict]]:
    return [pair for group in warehouse._requests(table, rows) for pair in group]


def test_a_row_sent_twice_in_one_write_goes_out_once_under_its_key():
    row = {"visit_id": "v1", "event_index": 3, "event_timestamp": "2024-07-01T09:00:00+00:00"}
    assert _sent("page_views", [row, dict(row)]) == [("page_views:v1/3", row)]


def test_a_later_version_has_its_own_insert_id_and_wins_within_a_write():
    """BigQuery drops a row whose insert id it saw in the last minute: a late pane's count
    under the on-time pane's id would be lost."""
    on_time = {**MINUTE, "page_views": 3, "pane_index": 0, "timing": "ON_TIME"}
    late = {**MINUTE, "page_views": 4, "pane_index": 1, "timing": "LATE"}
    (first,) = _sent("page_view_counts", [on_time])
    (second,) = _sent("page_view_counts", [late])
    assert first[0] != second[0] and first[0].endswith("/v0") and second[0].endswith("/v1")
    assert _sent("page_view_counts", [late, on_time]) == [second]
    assert _sent("page_view_counts", [on_time, late]) == [second]


def test_requests_stay_within_the_row_limit():
    rows = [{"visit_id": f"v{n}", "event_index": 0} for n in range(warehouse.REQUEST_ROWS + 1)]
    sizes = [len(group) for group in warehouse._requests("page_views", rows)]
    assert sizes == [warehouse.REQUEST_ROWS, 1]
