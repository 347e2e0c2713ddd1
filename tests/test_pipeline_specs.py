"""Every spec in pipelines/ is an example a test runs: its Beam YAML ``tests:`` block, on the
local runner, and Beam YAML's generic schema validation of the spec rendered with its template's
documented example parameters."""

import pytest
import yaml
from apache_beam.yaml import main as yaml_main
from apache_beam.yaml import yaml_transform

import pipelines
from clickstream import templates


def _example_variables(name: str) -> dict[str, str]:
    return templates.variables(name, templates.example_parameters(name))


@pytest.mark.parametrize("name", pipelines.names())
def test_spec_tests_pass(name):
    argv = templates.pipeline_argv(name, _example_variables(name), ["--runner=FnApiRunner"])
    yaml_main.run_tests(argv, exit=False)  # raises on a failing test


@pytest.mark.parametrize("name", pipelines.names())
def test_spec_is_valid_beam_yaml(name):
    template = pipelines.spec_path(name).read_text()
    rendered = yaml_transform.expand_jinja(template, _example_variables(name), [])
    spec = yaml.load(rendered, Loader=yaml_transform.SafeLineLoader)
    yaml_transform.validate_against_schema(spec, "generic")
    assert spec["tests"], f"{name} has no tests: block"
