"""Every spec in pipelines/ is an example a test runs: its Beam YAML ``tests:`` block, on the
local runner, and Beam YAML's generic schema validation of the spec rendered with its template's
documented example parameters."""

import pytest
import yaml
from apache_beam.yaml import main as yaml_main
from apache_beam.yaml import yaml_transform

from clickstream import pipelines
from clickstream.core import templates
from clickstream.pipelines import catalog


def _example_variables(name: str) -> dict[str, str]:
    return templates.variables(name, templates.example_parameters(name))


@pytest.mark.parametrize("name", pipelines.names())
def test_spec_tests_pass(name, monkeypatch):
    # Beam's test runner (2.77, yaml_testing.run_test) resolves a provider `include` from the
    # working directory, not from the spec's folder as a run does.
    monkeypatch.chdir(pipelines.spec_path(name).parent)
    argv = catalog.pipeline_argv(name, _example_variables(name), ["--runner=FnApiRunner"])
    yaml_main.run_tests(argv, exit=False)  # raises on a failing test


@pytest.mark.parametrize("name", pipelines.names())
def test_spec_is_valid_beam_yaml(name):
    template = pipelines.spec_path(name).read_text()
    rendered = yaml_transform.expand_jinja(template, _example_variables(name), [])
    spec = yaml.load(rendered, Loader=yaml_transform.SafeLineLoader)
    yaml_transform.validate_against_schema(spec, "generic")
    assert spec["tests"], f"{name} has no tests: block"
