"""The flex-template catalog in Beam: a spec of ``pipelines/`` built into a pipeline with its
template's parameters as jinja variables (checked and completed by ``core.templates``), run to
completion locally, or launched the way the flex-template image launches it. The same code runs
in the image (``templates/main.py``) and on the local stack (``clickstream template run``).
"""

import argparse
import contextlib
import json
import logging
import sys
import time

import apache_beam as beam
import yaml
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.yaml import main as yaml_main
from apache_beam.yaml import yaml_provider, yaml_transform

from clickstream import pipelines
from clickstream.core import names, templates

_LOG = logging.getLogger(__name__)
# Client libraries that Beam YAML's standard providers import and no spec here uses: Vertex AI's
# (the MLTransform provider imports every ML transform module, its Vertex AI embeddings among
# them) and Bigtable's (an Enrichment handler). Both come with apache-beam[gcp]; importing them
# takes seconds.
UNUSED_CLIENTS = ("google.cloud.aiplatform", "vertexai", "google.cloud.bigtable")


@contextlib.contextmanager
def _hidden(modules: tuple[str, ...]):
    """Within the block, importing one of ``modules`` (not imported yet) raises ImportError: a
    None in ``sys.modules`` stops an import (Python's import system); afterwards they import as
    usual."""
    hidden = [name for name in modules if name not in sys.modules]
    sys.modules.update(dict.fromkeys(hidden))  # type: ignore[arg-type]  # typeshed: modules only
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


def load_standard_providers() -> None:
    """Beam YAML's standard providers, loaded once per process (``standard_providers`` caches
    them) without the unused clients. Beam treats a provider's missing optional dependency as
    supported: ``apache_beam/yaml/yaml_ml.py`` and ``yaml_enrichment.py`` catch the ImportError
    and leave that transform out (MLTransform's Vertex AI embeddings, Enrichment)."""
    with _hidden(UNUSED_CLIENTS):
        yaml_provider.standard_providers()


def export(name: str, parameters: dict[str, str], package: str) -> str:
    """Spec ``name`` as one self-contained Beam YAML file for the Dataflow job builder: its
    parameters (checked, defaults filled in) rendered, its ``tests`` left out, and the
    provider listing inlined with the catalog's package (``package``: what pip installs, an
    https URL of the sdist, a requirement or a local path; ``core.templates.check_package``) in
    ``packages``, so the transforms come from that package alone."""
    templates.check_package(package)
    path = pipelines.spec_path(name)
    rendered = yaml_transform.expand_jinja(
        path.read_text(), templates.variables(name, parameters), [str(path.parent)]
    )
    spec = yaml.safe_load(rendered)
    spec.pop("tests", None)
    providers = yaml.safe_load(pipelines.providers_path().read_text())
    for provider in providers:
        provider["config"] = {**provider.get("config", {}), "packages": [package]}
    spec["providers"] = providers
    header = (
        f"# {templates.metadata(name)['name']}: exported by `clickstream template export` for the\n"
        f"# Dataflow job builder; the transforms come from {package}.\n"
    )
    return header + yaml.safe_dump(spec, sort_keys=False, width=100)


def pipeline_argv(name: str, jinja_variables: dict, beam_args: list[str]) -> list[str]:
    """Arguments of ``python -m apache_beam.yaml.main`` for the spec ``name``."""
    return [
        f"--yaml_pipeline_file={pipelines.spec_path(name)}",
        f"--jinja_variables={json.dumps(jinja_variables)}",
        *beam_args,
    ]


def build_pipeline(name: str, jinja_variables: dict, beam_args: list[str]) -> beam.Pipeline:
    """The Beam pipeline of spec ``name`` with its variables and Beam options."""
    load_standard_providers()
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
    for parameter in templates.metadata(name)["parameters"]:
        parser.add_argument(f"--{parameter['name']}")
    known, beam_args = parser.parse_known_args(argv)
    return {k: v for k, v in vars(known).items() if v is not None}, beam_args


def launch(name: str, argv: list[str], started: float | None = None) -> None:
    """The flex template's entry point: submit the job and return (Dataflow requires that the
    launcher does not wait for the job). Logs how long it took from ``started`` (a
    ``time.perf_counter()`` of the launcher's start) until the pipeline was built."""
    given, beam_args = parse_launcher_args(name, argv)
    pipeline = build_pipeline(name, templates.variables(name, given), beam_args)
    if started is not None:
        _LOG.info("built pipeline %s in %.2f s", name, time.perf_counter() - started)
    pipeline.run()
