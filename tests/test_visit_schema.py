"""The visit contract (metadata/visit.schema.json) against hand-written fixtures and the lab data,
and the runtime model (transforms.visit) against the contract.

The model judges a whole visit with jsonschema-rs and explains a rejected one with fastjsonschema;
both are checked here against the reference implementation (jsonschema), on every fixture and on
every one-part change of the valid ones.

Invalid fixtures are named ``<level>--<fault>.json``: the level is what the model rejects, the
whole ``visit`` (a bad envelope) or one ``event`` (its visit still loads).
"""

import json
from pathlib import Path

import jsonschema
import pytest

from clickstream.core import contract
from clickstream.core.visit import holds_schema, parse_visit

FIXTURES = Path(__file__).parent / "fixtures" / "visits"
VALID = sorted(FIXTURES.glob("valid/*.json"))
INVALID = sorted(FIXTURES.glob("invalid/*.json"))
VALIDATOR = jsonschema.Draft7Validator(contract.visit_schema())


def schema_errors(visit: object) -> list[str]:
    return [
        f"{list(error.absolute_path)}: {error.message}" for error in VALIDATOR.iter_errors(visit)
    ]


WRONG_VALUES = (None, True, 0, -1, 2.0, 1.5, 1e30, "", "x", "2024-07-01", [], {})


def one_part_changed(value: object):
    """``value`` with one part replaced by a wrong value or left out, at every depth."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield {k: v for k, v in value.items() if k != key}
            for changed in one_part_changed(child):
                yield {**value, key: changed}
    elif isinstance(value, list):
        for index, item in enumerate(value):
            for changed in one_part_changed(item):
                yield [*value[:index], changed, *value[index + 1 :]]
    yield from WRONG_VALUES


def expected_level(path: Path) -> str:
    return path.stem.split("--")[0]


def test_fixtures_exist():
    assert len(VALID) >= 8
    assert len(INVALID) >= 12
    assert {expected_level(path) for path in INVALID} == {"visit", "event"}


def test_schema_is_valid_draft_07():
    jsonschema.Draft7Validator.check_schema(contract.visit_schema())


@pytest.mark.parametrize("path", VALID, ids=lambda path: path.stem)
def test_valid_fixture_passes_schema(path):
    assert schema_errors(json.loads(path.read_bytes())) == []


@pytest.mark.parametrize("path", INVALID, ids=lambda path: path.stem)
def test_invalid_fixture_fails_schema(path):
    assert schema_errors(json.loads(path.read_bytes())), f"{path.name} passes the schema"


@pytest.mark.parametrize("path", VALID + INVALID, ids=lambda path: path.stem)
def test_compiled_verdict_is_the_schemas(path):
    fixture = json.loads(path.read_bytes())
    changed = [fixture, *one_part_changed(fixture)] if path in VALID else [fixture]
    for value in changed:
        assert holds_schema(value) == (not schema_errors(value)), value


def test_pattern_end_is_ecma_262s():
    """JSON Schema patterns are ECMA-262 regexes: ``$`` does not match before a final newline.
    jsonschema (Python's ``re.search``) lets such a timestamp through; the compiled verdict and
    fastjsonschema, which gives the reason, do not."""
    visit = {"session_id": "S", "user_id": "U", "events": [fixture_event("2024-07-01T09:00:00\n")]}
    assert not holds_schema(visit) and not schema_errors(visit)
    [dead] = parse_visit(json.dumps(visit), "test:1").rows["dead_letter"]
    assert dead["reason"].startswith("event.timestamp must match pattern")


def fixture_event(timestamp: str) -> dict:
    return {"event_type": "page_view", "timestamp": timestamp, "details": {"page_url": "/"}}


@pytest.mark.parametrize("path", VALID, ids=lambda path: path.stem)
def test_model_loads_valid_fixture_whole(path):
    parsed = parse_visit(path.read_bytes(), f"fixture:{path.name}")
    assert parsed.rows["dead_letter"] == []
    assert parsed.visit_loaded


@pytest.mark.parametrize("path", INVALID, ids=lambda path: path.stem)
def test_model_rejects_invalid_fixture_at_its_level(path):
    parsed = parse_visit(path.read_bytes(), f"fixture:{path.name}")
    reasons = [row["reason"] for row in parsed.rows["dead_letter"]]
    if expected_level(path) == "visit":
        assert not parsed.visit_loaded
        assert [row["level"] for row in parsed.rows["dead_letter"]] == ["visit"], reasons
    else:
        assert parsed.visit_loaded
        assert [row["level"] for row in parsed.rows["dead_letter"]] == ["event"], reasons
        assert parsed.rows["visits"][0]["rejected_event_count"] == 1


def test_lab_sample_passes_schema(lab_data):
    """The first 10 visits of every lab file (600 of 8,804; jsonschema is slow)."""
    for path in sorted(lab_data.glob("*.jsonl")):
        for number, line in enumerate(path.read_bytes().splitlines()[:10], start=1):
            assert schema_errors(json.loads(line)) == [], f"{path.name}:{number}"
