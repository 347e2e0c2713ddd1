"""The flex-template catalog: template metadata, parameter checks, launching a spec, and the
gcloud commands that build and run each template.

A template is a spec of ``pipelines/`` with its metadata in ``metadata/<name>.json`` (Dataflow's
template metadata format). The metadata's parameters are the spec's jinja variables; their
optional defaults are the metadata's ``defaultValue``, applied here, so they live in one place.
The same code launches a spec in the flex-template image (``templates/main.py``) and on the
local stack (``clickstream template run``).
"""

import argparse
import json
import logging
import re
import time

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.yaml import main as yaml_main

from clickstream import pipelines
from clickstream.core import contract, names

_LOG = logging.getLogger(__name__)
IMAGE_NAME = "clickstream-{name}"  # one image per template, built from templates/Dockerfile


class ParameterError(ValueError):
    """A template parameter is unknown, missing or does not match its regexes."""


def metadata(name: str) -> dict:
    """The Dataflow template metadata of the spec ``name``."""
    pipelines.spec_path(name)  # a clear error for an unknown spec
    if not contract.has_file(f"{name}.json"):
        raise FileNotFoundError(f"spec {name!r} has no template metadata metadata/{name}.json")
    return contract.read_json(f"{name}.json")


def examples(name: str) -> dict:
    """Documented valid and invalid example values of each parameter of template ``name``."""
    return contract.read_json("template_examples.json")[name]


def variables(name: str, given: dict[str, str], unchecked: tuple[str, ...] = ()) -> dict[str, str]:
    """The spec's jinja variables: the given parameters, checked against the metadata's regexes
    (but those named in ``unchecked``), with the defaults of the optional ones. Raises
    ParameterError naming the parameter."""
    parameters = {p["name"]: p for p in metadata(name)["parameters"]}
    unknown = sorted(set(given) - set(parameters))
    if unknown:
        raise ParameterError(
            f"unknown parameter {unknown[0]!r} for template {name}; "
            f"parameters are {', '.join(parameters)}"
        )
    result = {}
    for key, parameter in parameters.items():
        if key not in given:
            if not parameter.get("isOptional", False):
                raise ParameterError(f"parameter {key!r} is required: {parameter['helpText']}")
            result[key] = parameter.get("defaultValue", "")
            continue
        value = given[key]
        for regex in [] if key in unchecked else parameter.get("regexes", []):
            # Dataflow accepts an optional parameter left empty; so do we.
            if not (value == "" and parameter.get("isOptional")) and not re.fullmatch(regex, value):
                raise ParameterError(
                    f"parameter {key!r}: {value!r} does not match {regex} ({parameter['helpText']})"
                )
        result[key] = value
    return result


def pipeline_argv(name: str, jinja_variables: dict, beam_args: list[str]) -> list[str]:
    """Arguments of ``python -m apache_beam.yaml.main`` for the spec ``name``."""
    return [
        f"--yaml_pipeline_file={pipelines.spec_path(name)}",
        f"--jinja_variables={json.dumps(jinja_variables)}",
        *beam_args,
    ]


def build_pipeline(name: str, jinja_variables: dict, beam_args: list[str]) -> beam.Pipeline:
    """The Beam pipeline of spec ``name`` with its variables and Beam options."""
    options, construct, display_data = yaml_main.build_pipeline_components_from_argv(
        pipeline_argv(name, jinja_variables, beam_args)
    )
    pipeline = beam.Pipeline(options=options, display_data=display_data)
    construct(pipeline)
    return pipeline


def run_and_wait(name: str, jinja_variables: dict, beam_args: list[str]) -> dict[str, int]:
    """Runs spec ``name`` to completion (Beam's local runner unless ``beam_args`` name one);
    returns its ``clickstream`` counters summed over steps."""
    if not any(arg.startswith("--runner") for arg in beam_args):
        beam_args = ["--runner=FnApiRunner", *beam_args]
    result = build_pipeline(name, jinja_variables, beam_args).run()
    result.wait_until_finish()
    counters: dict[str, int] = {}
    query = result.metrics().query(MetricsFilter().with_namespace(names.COUNTER_NAMESPACE))
    for counter in query["counters"]:
        key = counter.key.metric.name
        counters[key] = counters.get(key, 0) + (counter.committed or counter.attempted or 0)
    return counters


def parse_launcher_args(name: str, argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Splits the flex-template launcher's arguments (``--param=value`` for each template
    parameter, then Beam's options) into parameters and Beam arguments."""
    parser = argparse.ArgumentParser(allow_abbrev=False)
    for parameter in metadata(name)["parameters"]:
        parser.add_argument(f"--{parameter['name']}")
    known, beam_args = parser.parse_known_args(argv)
    return {k: v for k, v in vars(known).items() if v is not None}, beam_args


def launch(name: str, argv: list[str], started: float | None = None) -> None:
    """The flex template's entry point: submit the job and return (Dataflow requires that the
    launcher does not wait for the job). Logs how long it took from ``started`` (a
    ``time.perf_counter()`` of the launcher's start) until the pipeline was built."""
    given, beam_args = parse_launcher_args(name, argv)
    pipeline = build_pipeline(name, variables(name, given), beam_args)
    if started is not None:
        _LOG.info("built pipeline %s in %.2f s", name, time.perf_counter() - started)
    pipeline.run()


def image(name: str, project: str, region: str, repository: str, tag: str) -> str:
    return f"{region}-docker.pkg.dev/{project}/{repository}/{IMAGE_NAME.format(name=name)}:{tag}"


def build_commands(
    name: str, project: str, region: str, bucket: str, repository: str, tag: str
) -> list[list[str]]:
    """The commands that build the template's image (Cloud Build, no local Docker) and its
    template file."""
    target = image(name, project, region, repository, tag)
    return [
        [
            *("gcloud", "builds", "submit", "--project", project, "--region", region),
            *("--config", "templates/cloudbuild.yaml"),
            "--substitutions",
            f"_IMAGE={target},_PIPELINE={name}",
            ".",
        ],
        [
            *("gcloud", "dataflow", "flex-template", "build", template_file(name, bucket)),
            *("--project", project, "--image", target, "--sdk-language", "PYTHON"),
            *("--metadata-file", f"metadata/{name}.json"),
        ],
    ]


def template_file(name: str, bucket: str) -> str:
    return f"gs://{bucket}/templates/{name}.json"


def run_command(
    name: str,
    project: str,
    region: str,
    bucket: str,
    repository: str,
    tag: str,
    parameters: dict[str, str],
) -> list[str]:
    """``gcloud dataflow flex-template run`` for the template with these parameters; the image
    also serves as the workers' SDK container."""
    job = name.replace("_", "-")
    command = [
        *("gcloud", "dataflow", "flex-template", "run", f"{job}-$(date +%Y%m%d-%H%M%S)"),
        *("--project", project, "--region", region),
        *("--template-file-gcs-location", template_file(name, bucket)),
    ]
    for key, value in parameters.items():
        command += ["--parameters", f"{key}={value}"]
    target = image(name, project, region, repository, tag)
    return [*command, "--parameters", f"sdk_container_image={target}"]


def example_parameters(name: str) -> dict[str, str]:
    """The first documented example of every required parameter."""
    valid = examples(name)["valid"]
    return {
        p["name"]: valid[p["name"]][0]
        for p in metadata(name)["parameters"]
        if not p.get("isOptional", False)
    }
