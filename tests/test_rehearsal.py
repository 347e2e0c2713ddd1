"""The rehearsal (``clickstream rehearse``): the whole deployment on a fake Google Cloud project,
the lab's 60 files through the whole chain and the subscribers, ending with the lab's exact
counts; then verify, destroy, verify."""

from clickstream.project import rehearsal


def test_the_rehearsal_ends_with_the_labs_counts(stack, lab_data, airflow_environment, tmp_path):
    said: list[str] = []
    report = rehearsal.run(lab_data, tmp_path, lambda line: said.append(line) or print(line))
    failed = [text for text, ok in report.steps if not ok]
    assert not failed, "\n".join(said)
    assert report.counts == {
        "visits": 8804,
        "page_views": 35422,
        "cart_adds": 8999,
        "purchases": 2213,
    }
    assert report.passed
