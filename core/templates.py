"""The flex templates as Dataflow knows them, without Beam: each template's metadata
(``metadata/<name>.json``: its parameters, their checks and defaults), the parameter checks the
launcher makes, and the gcloud commands that build and run a template. Beam-free, so the
orchestration DAG (an Airflow environment without Beam) builds its launch requests with it."""

import dataclasses
import importlib.metadata
import os
import re
from collections.abc import Mapping
from typing import Any

from clickstream.core import contract, names

IMAGE_NAME = "clickstream-{name}"  # one image per template, built from templates/Dockerfile
JOB_NAME = re.compile(r"[a-z]([-a-z0-9]{0,1022}[a-z0-9])?")  # what Dataflow accepts as a job name


class ParameterError(ValueError):
    """A template parameter is unknown, missing or does not match its regexes."""


def metadata(name: str) -> dict[str, Any]:
    """The Dataflow template metadata of the spec ``name``."""
    if not contract.has_file(f"{name}.json"):
        raise FileNotFoundError(f"template {name!r} has no metadata metadata/{name}.json")
    return contract.read_json(f"{name}.json")


def examples(name: str) -> dict[str, Any]:
    """Documented valid and invalid example values of each parameter of template ``name``."""
    examples: dict[str, Any] = contract.read_json("template_examples.json")[name]
    return examples


def variables(name: str, given: dict[str, str], unchecked: tuple[str, ...] = ()) -> dict[str, str]:
    """The spec's jinja variables: the given parameters, checked against the metadata's regexes
    (but those named in ``unchecked``), with the optional ones left out taking their
    ``defaultValue`` (empty when none: Dataflow passes nothing for them, and the metadata's
    ``defaultValue`` only pre-fills the console's form). Raises ParameterError naming the
    parameter."""
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
        value = given[key]  # Dataflow checks a value given, empty or not, against the regexes
        for regex in [] if key in unchecked else parameter.get("regexes", []):
            if not re.fullmatch(regex, value):
                raise ParameterError(
                    f"parameter {key!r}: {value!r} does not match {regex} ({parameter['helpText']})"
                )
        result[key] = value
    return result


@dataclasses.dataclass(frozen=True)
class DataflowOptions:
    """The Dataflow environment a template sets by default (``metadata/dataflow_options.json``):
    worker machine type, autoscaling range, Streaming Engine (streaming templates), and why. The
    streaming mode is the metadata's (``defaultStreamingMode``), not repeated here."""

    machine_type: str
    num_workers: int  # initial workers
    max_workers: int
    why: dict[str, str]  # reason per option (and for the metadata's streaming mode)
    streaming_engine: bool | None = None  # None: a batch template

    def flags(self) -> list[str]:
        """The options as flags of ``gcloud dataflow flex-template build`` (its defaults)."""
        flags = ["--worker-machine-type", self.machine_type]
        flags += ["--num-workers", str(self.num_workers), "--max-workers", str(self.max_workers)]
        return [*flags, "--enable-streaming-engine"] if self.streaming_engine else flags


def template_names() -> list[str]:
    """The catalog's templates, by name (each has its Dataflow options)."""
    return sorted(contract.read_json("dataflow_options.json"))


def dataflow_options(name: str) -> DataflowOptions:
    """The default Dataflow options of template ``name``."""
    options = contract.read_json("dataflow_options.json")
    if name not in options:
        raise KeyError(f"template {name!r} has no entry in metadata/dataflow_options.json")
    return DataflowOptions(**options[name])


def image(name: str, project: str, region: str, repository: str, tag: str) -> str:
    """Template ``name``'s image in Artifact Registry: its launcher and its workers' container."""
    return f"{region}-docker.pkg.dev/{project}/{repository}/{IMAGE_NAME.format(name=name)}:{tag}"


def image_name(reference: str) -> str:
    """The image name of a reference, without registry, path, tag or digest."""
    return reference.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]


def build_commands(
    name: str, project: str, region: str, bucket: str, repository: str, tag: str
) -> list[list[str]]:
    """The commands that build the template's image (Cloud Build, no local Docker) and its
    template file, with the template's Dataflow options as its defaults."""
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
            *dataflow_options(name).flags(),
        ],
    ]


def package_file() -> str:
    """The file name of the catalog's sdist (``deploy.image.build_package``)."""
    return f"clickstream_catalog-{importlib.metadata.version('clickstream-catalog')}.tar.gz"


def package_url(bucket: str) -> str:
    """The https URL of the catalog's sdist as ``package_upload_command`` uploads it: what the
    job builder's ``packages`` names (pip reads https, not gs://)."""
    return f"https://storage.googleapis.com/{bucket}/templates/{package_file()}"


def check_package(reference: str) -> None:
    """Refuse a package pip cannot install: Beam YAML's Python provider hands each entry of
    ``packages`` to ``pip install`` as it is (``apache_beam/yaml/yaml_provider.py``,
    ``PypiExpansionService``), and pip reads no ``gs://``."""
    if reference.startswith("gs://"):
        bucket, _, path = reference.removeprefix("gs://").partition("/")
        raise ParameterError(
            f"--package {reference}: pip cannot install from gs:// (Beam hands packages to pip "
            f"as they are); give https://storage.googleapis.com/{bucket}/{path}, readable by the "
            "job's launcher, or a requirement from a Python package repository"
        )


def package_upload_command(package: str | os.PathLike[str], bucket: str) -> list[str]:
    """``gcloud storage cp`` of the catalog's sdist beside the template files."""
    return ["gcloud", "storage", "cp", str(package), f"gs://{bucket}/templates/"]


def template_file(name: str, bucket: str) -> str:
    return f"gs://{bucket}/templates/{name}.json"


def job_prefix(name: str) -> str:
    """How the names of template ``name``'s jobs begin when launched by ``run_command``
    (``batch-migration-20240701-090000``)."""
    return name.replace("_", "-") + "-"


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
    command = [
        *(
            "gcloud",
            "dataflow",
            "flex-template",
            "run",
            f"{job_prefix(name)}$(date +%Y%m%d-%H%M%S)",
        ),
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


def launch_request(
    name: str,
    job_name: str,
    template_file: str,
    parameters: dict[str, str],
    environment: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of Dataflow's ``flexTemplates.launch`` for template ``name`` (what
    ``DataflowStartFlexTemplateOperator`` sends): the parameters are checked against the
    metadata first (ParameterError) and sent as given, Dataflow filling in the defaults;
    ``environment`` is its FlexTemplateRuntimeEnvironment (``serviceAccountEmail``,
    ``tempLocation``, ...) and must name the template's image as ``sdkContainerImage``: without
    it Dataflow's workers run the stock Beam SDK container, which lacks the catalog
    (``FlexTemplateRuntimeEnvironment.sdkContainerImage`` in Dataflow's API reference)."""
    variables(name, parameters)
    if not JOB_NAME.fullmatch(job_name):
        raise ParameterError(f"job name {job_name!r} does not match {JOB_NAME.pattern}")
    environment = dict(environment or {})
    worker_image = environment.get("sdkContainerImage", "")
    if image_name(worker_image) != IMAGE_NAME.format(name=name):
        raise ParameterError(
            f"environment.sdkContainerImage must be template {name}'s image "
            f"(.../{IMAGE_NAME.format(name=name)}:TAG), not {worker_image or 'missing'!r}: "
            "without it Dataflow's workers run the stock Beam SDK container, which lacks the "
            "catalog's transforms"
        )
    return {
        "launchParameter": {
            "jobName": job_name,
            "containerSpecGcsPath": template_file,
            "parameters": dict(parameters),
            "environment": environment,
        }
    }


def counts_reconcile(counters: Mapping[str, int]) -> bool:
    """Whether the batch migration's counters add up: every record read is a visit loaded or
    rejected; every event of a loaded visit is loaded or rejected; every loaded event is of one
    type. A migration that does not reconcile lost or invented rows."""

    def count(key: str) -> int:
        return counters.get(key, 0)

    return (
        count("records_read") == count("visits_accepted") + count("visits_rejected")
        and count("events_in_loaded_visits") == count("events_accepted") + count("events_rejected")
        and count("events_accepted") == sum(count(kind) for kind in names.EVENT_TABLES)
    )


def job_counters(job_metrics: dict[str, Any]) -> dict[str, int]:
    """The catalog's Beam counters of a Dataflow job, summed over steps, from its JobMetrics
    (``jobs.getMetrics``): user metrics of namespace ``names.COUNTER_NAMESPACE``, committed
    values only (Dataflow reports each counter twice, the second time with ``tentative``)."""
    counters: dict[str, int] = {}
    for update in job_metrics.get("metrics", []):
        metric = update.get("name", {})
        context = metric.get("context", {})
        if (
            metric.get("origin") != "user"
            or context.get("namespace") != names.COUNTER_NAMESPACE
            or context.get("tentative") == "true"
        ):
            continue
        counters[metric["name"]] = counters.get(metric["name"], 0) + int(update.get("scalar", 0))
    return counters
