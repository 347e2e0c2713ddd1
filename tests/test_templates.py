"""The flex-template catalog's contracts: metadata ⇔ spec variables, parameter regexes, the
Dockerfile, the generated docs, the gcloud commands, and the local twin of flex-template run."""

import json
import re
import subprocess
import sys
from pathlib import Path

import jinja2
import jinja2.meta
import jsonschema
import pytest
import re2
import yaml
from apache_beam.yaml import yaml_transform
from google.cloud import dataflow_v1beta3
from google.protobuf import json_format

from clickstream import pipelines
from clickstream.core import templates
from clickstream.pipelines import catalog, template_docs

ROOT = Path(__file__).resolve().parents[1]
BUILT_INS: set[str] = set()  # jinja variables a spec may use that are not template parameters
NAMES = pipelines.names()


def _spec_variables(name: str) -> set[str]:
    source = pipelines.spec_path(name).read_text()
    return jinja2.meta.find_undeclared_variables(jinja2.Environment().parse(source))


@pytest.mark.parametrize("name", NAMES)
def test_spec_variables_are_the_template_parameters(name):
    parameters = {p["name"] for p in templates.metadata(name)["parameters"]}
    assert _spec_variables(name) == parameters | BUILT_INS


METADATA_SCHEMA = json.loads((ROOT / "templates" / "metadata.schema.json").read_text())


@pytest.mark.parametrize("name", NAMES)
def test_metadata_is_what_dataflow_reads(name):
    """Valid against the flex-template metadata schema, parsed strictly into Dataflow's own
    TemplateMetadata message (as gcloud flex-template build reads it), and complete by the
    catalog's rules: every parameter typed and checked, and a default, where one is declared,
    one its own regexes accept (the console pre-fills the form with it, and Dataflow checks the
    values it is given against the regexes)."""
    meta = templates.metadata(name)
    jsonschema.validate(meta, METADATA_SCHEMA)
    json_format.ParseDict(meta, dataflow_v1beta3.TemplateMetadata.pb()())
    assert isinstance(meta["streaming"], bool)
    for p in meta["parameters"]:
        assert {"isOptional", "paramType", "regexes"} <= set(p), p
        assert p["regexes"], f"{p['name']} has no regex"
        if "defaultValue" in p:
            assert p["isOptional"], f"{p['name']} is required: a default would never be used"
            for regex in p["regexes"]:
                assert re.fullmatch(regex, p["defaultValue"]), f"{p['name']}'s default"


def test_the_metadata_schema_is_dataflows_message():
    """The schema names exactly the fields and parameter types of google.dataflow.v1beta3."""

    def json_names(message) -> set[str]:
        return {field.json_name for field in message.pb().DESCRIPTOR.fields}

    definitions = METADATA_SCHEMA["definitions"]
    parameter = definitions["parameter"]["properties"]
    assert set(METADATA_SCHEMA["properties"]) == json_names(dataflow_v1beta3.TemplateMetadata)
    assert set(parameter) == json_names(dataflow_v1beta3.ParameterMetadata)
    option = parameter["enumOptions"]["items"]["properties"]
    assert set(option) == json_names(dataflow_v1beta3.ParameterMetadataEnumOption)
    assert parameter["paramType"]["enum"] == [t.name for t in dataflow_v1beta3.ParameterType]


@pytest.mark.parametrize(
    "regex",
    [r"^(?!goog)[a-z]+$", r"^(?<=a)b$", r"^(a)\1$", r"^[a-z]{1,1024}$", r"^(?>a)b$"],
)
def test_the_schema_refuses_what_re2_cannot_read(regex):
    with pytest.raises(re2.error):
        re2.compile(regex)
    meta = {"name": "n", "description": "d", "parameters": [
        {"name": "p", "label": "P", "helpText": "h", "regexes": [regex]}]}  # fmt: skip
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(meta, METADATA_SCHEMA)


def _examples() -> list:
    return list(_each_example())


def _each_example():
    for name in NAMES:
        for kind in ("valid", "invalid"):
            for key, values in templates.examples(name)[kind].items():
                for value in values:
                    shown = repr(value) if len(value) < 40 else f"{value[:20]!r}...({len(value)})"
                    yield pytest.param(name, kind, key, value, id=f"{name}-{kind}-{key}-{shown}")


@pytest.mark.parametrize(("name", "kind", "key", "value"), _examples())
def test_regexes_accept_examples_and_reject_bad_values(name, kind, key, value):
    """The same in Python and in RE2 (what Dataflow's launcher and form use)."""
    (parameter,) = [p for p in templates.metadata(name)["parameters"] if p["name"] == key]
    in_python = all(re.fullmatch(regex, value) for regex in parameter["regexes"])
    in_re2 = all(re2.fullmatch(regex, value) for regex in parameter["regexes"])
    assert in_python == in_re2 == (kind == "valid")


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_has_valid_and_invalid_examples(name):
    parameters = {p["name"] for p in templates.metadata(name)["parameters"]}
    assert set(templates.examples(name)["valid"]) == parameters
    assert set(templates.examples(name)["invalid"]) == parameters


def test_parameters_are_checked_by_name():
    with pytest.raises(templates.ParameterError, match=r"'input'.*does not match"):
        templates.variables("batch_migration", {"input": "/data/visits.jsonl"})
    with pytest.raises(templates.ParameterError, match="'input' is required"):
        templates.variables("batch_migration", {})
    with pytest.raises(templates.ParameterError, match="unknown parameter 'inptu'"):
        templates.variables("batch_migration", {"input": "gs://bucket/x", "inptu": "x"})
    assert templates.variables("batch_migration", {"input": "gs://bucket/x"}) == {
        "input": "gs://bucket/x",
        "dataset": "clickstream",
        "dead_letter_table": "",
        "bigquery_project": "",
    }
    with pytest.raises(templates.ParameterError, match=r"'bigquery_project': '' does not match"):
        templates.variables("batch_migration", {"input": "gs://bucket/x", "bigquery_project": ""})


def test_an_export_names_a_package_pip_can_install():
    """Beam's YAML provider hands packages to pip as they are, and pip reads no gs://."""
    with pytest.raises(templates.ParameterError) as refused:
        catalog.export("batch_migration", {"input": "gs://bucket/x"}, "gs://b/templates/c.tar.gz")
    assert "https://storage.googleapis.com/b/templates/c.tar.gz" in str(refused.value)
    assert "\n" not in str(refused.value)
    url = templates.package_url("b")
    exported = yaml.safe_load(catalog.export("batch_migration", {"input": "gs://bucket/x"}, url))
    assert {p["config"]["packages"][0] for p in exported["providers"]} == {url}


def test_launcher_splits_parameters_from_beam_options():
    given, beam_args = catalog.parse_launcher_args(
        "batch_migration",
        ["--input=gs://bucket/v/*.jsonl", "--dataset=d", "--runner=DataflowRunner", "--region=r"],
    )
    assert given == {"input": "gs://bucket/v/*.jsonl", "dataset": "d"}
    assert beam_args == ["--runner=DataflowRunner", "--region=r"]


BUILD_IN_A_FRESH_PROCESS = """
import importlib.util, json, sys
from clickstream.core import templates
from clickstream.pipelines import catalog
name = "batch_migration"
variables = templates.variables(name, templates.example_parameters(name))
catalog.build_pipeline(name, variables, ["--runner=FnApiRunner"])
loaded = [client for client in catalog.UNUSED_CLIENTS if client in sys.modules]
importable = all(importlib.util.find_spec(client) for client in catalog.UNUSED_CLIENTS)
print(json.dumps([loaded, importable]))
"""


def test_building_a_spec_skips_the_unused_clients():
    """Beam YAML's standard providers load without Vertex AI's or Bigtable's client (seconds of
    imports no spec uses); the process can still import them later."""
    done = subprocess.run(
        [sys.executable, "-c", BUILD_IN_A_FRESH_PROCESS], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == [[], True]


def _dockerfile() -> list[list[str]]:
    lines = (ROOT / "templates" / "Dockerfile").read_text().splitlines()
    return [line.split() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerfile_copies_only_what_exists_and_runs_no_java():
    copied = []
    for words in _dockerfile():
        if words[0] == "COPY" and not words[1].startswith("--from"):
            for source in words[1:-1]:
                assert (ROOT / source).exists(), f"COPY source {source} does not exist"
                copied.append(source)
        assert not {"java", "mvn", "maven"} & {w.lower() for w in words}, words
    env = {w.split("=")[0]: w.split("=", 1)[1] for ws in _dockerfile() if ws[0] == "ENV"
           for w in ws[1:]}  # fmt: skip
    entry = env["FLEX_TEMPLATE_PYTHON_PY_FILE"].removeprefix("/template/")
    assert entry in copied and (ROOT / entry).is_file()
    assert env["CLICKSTREAM_PIPELINE"] == "${PIPELINE}"
    images = [ws[1] for ws in _dockerfile() if ws[0] == "FROM"]
    assert "gcr.io/dataflow-templates-base/python311-template-launcher-base" in images


def test_image_requirements_are_pinned_and_match_the_lock():
    image = [
        line
        for line in (ROOT / "templates" / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    lock = set((ROOT / "requirements.lock").read_text().splitlines())
    assert image and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[^=\s]+", line) for line in image)
    assert set(image) <= lock, set(image) - lock
    assert not any(line.lower().startswith(("bqemulator", "pytest", "ruff")) for line in image)


def test_generated_docs_are_fresh():
    assert template_docs.write(check=True) == [], "run `clickstream template docs`"


def test_build_dry_run_prints_the_exact_commands():
    result = subprocess.run(
        [sys.executable, "-m", "clickstream.cli", "template", "build", "--all", "--dry-run",
         "--project", "my-project", "--region", "europe-west1", "--bucket", "my-bucket"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    image = "europe-west1-docker.pkg.dev/my-project/clickstream/clickstream-batch_migration:latest"
    assert (
        "gcloud dataflow flex-template build gs://my-bucket/templates/batch_migration.json "
        f"--project my-project --image {image} --sdk-language PYTHON "
        "--metadata-file metadata/batch_migration.json --worker-machine-type n2-standard-4 "
        "--num-workers 1 --max-workers 50\n"
    ) in result.stdout
    assert f"_IMAGE={image},_PIPELINE=batch_migration ." in result.stdout
    assert "--parameters 'input=gs://your-bucket/visits/*.jsonl'" in result.stdout
    package = "build/package/dist/clickstream_catalog-0.1.0.tar.gz"
    assert f"gcloud storage cp {package} gs://my-bucket/templates/" in result.stdout
    assert result.stdout.count("gcloud storage cp") == 1  # one package for every template


@pytest.mark.parametrize("name", NAMES)
def test_export_is_one_self_contained_spec_for_the_job_builder(name):
    package = templates.package_url("my-bucket")
    exported = catalog.export(name, templates.example_parameters(name), package)
    assert "{{" not in exported and "{%" not in exported
    spec = yaml.safe_load(exported)
    assert "tests" not in spec
    (provider,) = spec["providers"]
    assert provider["config"] == {"packages": [package]}
    used = {transform["type"] for transform in spec["pipeline"]["transforms"]}
    assert used <= set(provider["transforms"])
    yaml_transform.validate_against_schema(spec, "generic")


def test_export_refuses_what_the_launcher_would():
    done = _cli("template", "export", "batch_migration", "--package", templates.package_url("b"),
                "--param", "input=gs://my-bucket/x.jsonl", "--param", "inptu=1")  # fmt: skip
    assert done.returncode != 0 and "unknown parameter 'inptu'" in done.stderr
    done = _cli("template", "export", "batch_migration", "--package", "gs://b/c.tar.gz",
                "--param", "input=gs://my-bucket/x.jsonl")  # fmt: skip
    assert done.returncode != 0 and done.stderr.count("\n") == 1
    assert "pip cannot install from gs://" in done.stderr
    assert "give https://storage.googleapis.com/b/c.tar.gz" in done.stderr


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "clickstream.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_run_refuses_a_bad_parameter_before_running(tmp_path):
    result = _cli("template", "run", "batch_migration", "--param", "input=/data/visits.jsonl")
    assert result.returncode != 0
    assert "parameter 'input'" in result.stderr and "^gs:" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_on_the_local_stack(stack, lab_data):
    from clickstream.gcp import bigquery_tables
    from clickstream.local import emulators

    files = sorted(lab_data.glob("visits-2024-07-0[12].jsonl"))
    visits = sum(len(path.read_text().splitlines()) for path in files)
    urls = emulators.upload([str(path) for path in files], "template-run/")
    assert urls == [f"gs://{stack.project}/template-run/{path.name}" for path in files]
    bigquery_tables.ensure_dataset(bigquery_tables.client(), "templated")
    result = _cli(
        "template", "run", "batch_migration",
        "--param", f"input=gs://{stack.project}/template-run/*.jsonl",
        "--param", "dataset=templated",
        "--param", "dead_letter_table=templated.rejects",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    counters = dict(re.findall(r"^\s+(\S+)\s+([\d,]+)$", result.stdout, re.MULTILINE))
    assert counters["records_read"] == counters["visits_accepted"] == f"{visits:,}"
    bq = bigquery_tables.client()
    assert bigquery_tables.row_count(bq, f"{stack.project}.templated.visits") == visits
    assert bigquery_tables.row_count(bq, f"{stack.project}.templated.rejects") == 0
    assert bigquery_tables.row_count(bq, f"{stack.project}.templated.page_views") > 0
