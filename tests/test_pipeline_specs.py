"""Every spec in pipelines/ is an example a test runs: its Beam YAML ``tests:`` block, on the
local runner, and Beam YAML's generic schema validation of the rendered spec."""

import pytest
import yaml
from apache_beam.yaml import main as yaml_main
from apache_beam.yaml import yaml_transform

import pipelines
from clickstream import migrate

# Example values of each spec's jinja variables.
EXAMPLE_VARIABLES = {
    "batch_migration": {"input": "gs://bucket/visits/*.jsonl", "dataset": "clickstream"},
}


def test_every_spec_has_example_variables():
    assert set(pipelines.names()) == set(EXAMPLE_VARIABLES)


@pytest.mark.parametrize("name", pipelines.names())
def test_spec_tests_pass(name):
    argv = migrate.pipeline_argv(name, EXAMPLE_VARIABLES[name], [])
    yaml_main.run_tests(argv, exit=False)  # raises on a failing test


@pytest.mark.parametrize("name", pipelines.names())
def test_spec_is_valid_beam_yaml(name):
    template = pipelines.spec_path(name).read_text()
    rendered = yaml_transform.expand_jinja(template, EXAMPLE_VARIABLES[name], [])
    spec = yaml.load(rendered, Loader=yaml_transform.SafeLineLoader)
    yaml_transform.validate_against_schema(spec, "generic")
    assert spec["tests"], f"{name} has no tests: block"
