"""The flex-template image's contents, built from what ships: a fresh virtual environment with
exactly the files templates/Dockerfile copies, installed with its RUN commands (pip check
included), then its launcher run as Dataflow runs it, with the image's environment only."""

import functools
import http.server
import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from clickstream import pipelines
from clickstream.core import jsonlines, templates
from clickstream.deploy import image
from clickstream.gcp import bigquery_tables
from clickstream.pipelines import catalog

RUNTIME = {"core", "metadata", "gcp", "transforms", "pipelines"}  # what the image's package holds


@pytest.fixture(scope="session")
def image_environment(tmp_path_factory) -> image.Environment:
    """The image's environment, built once per session (about a minute)."""
    return image.build_environment(tmp_path_factory.mktemp("image"))


def in_image(environment: image.Environment, code: str, cwd=None) -> str:
    """Run ``code`` with the image's Python, in its work directory (or ``cwd``), with no
    environment of ours; its standard output."""
    done = subprocess.run(
        [str(environment.python), "-c", code],
        cwd=cwd or environment.context,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_build_context_is_read_from_the_dockerfile():
    dockerfile = image.read()
    sources = {source for source, _ in dockerfile.copies}
    assert sources >= {"templates/requirements.txt", "templates/main.py", "setup.py"}
    assert sources >= RUNTIME and not sources & {"cli", "subscribers", "deploy", "tests"}
    assert "gcr.io/dataflow-templates-base/python311-template-launcher-base" in dockerfile.bases
    assert dockerfile.launcher_file == "templates/main.py"
    assert dockerfile.env["CLICKSTREAM_PIPELINE"] == "${PIPELINE}"
    assert not any({"java", "mvn", "maven"} & set(run.lower().split()) for run in dockerfile.runs)


def test_the_image_installs_the_runtime_and_nothing_else(image_environment):
    assert "pip check" in " ".join(image_environment.seconds)  # it ran, and passed
    listing = in_image(
        image_environment,
        "import importlib.metadata as m, json; "
        "files = m.files('clickstream-catalog'); "
        "print(json.dumps(sorted({str(f).split('/')[1] for f in files "
        "if str(f).startswith('clickstream/')})))",
        cwd="/",  # the work directory holds the build's own egg-info
    )
    assert set(json.loads(listing)) == RUNTIME
    installed = in_image(
        image_environment,
        "import importlib.metadata as m; print(' '.join(d.metadata['Name'].lower() "
        "for d in m.distributions()))",
    ).split()
    for tool in ("pytest", "ruff", "bqemulator", "gcp-storage-emulator", "functions-framework"):
        assert tool not in installed


def test_every_transform_every_spec_names_imports_in_the_image(image_environment):
    providers = yaml.safe_load(pipelines.providers_path().read_text())
    paths = sorted({path for provider in providers for path in provider["transforms"].values()})
    probe = (
        "import importlib, json, sys; "
        "paths = json.loads(sys.argv[1]); "
        "[getattr(importlib.import_module(p.rsplit('.', 1)[0]), p.rsplit('.', 1)[1]) "
        "for p in paths]; print(len(paths))"
    )
    done = subprocess.run(
        [str(image_environment.python), "-c", probe, json.dumps(paths)],
        cwd=image_environment.context,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == str(len(paths)), done.stderr[-3000:]
    # Every spec builds there with its example parameters, as the launcher builds it.
    for name in pipelines.names():
        variables = templates.variables(name, templates.example_parameters(name))
        options = ["--runner=FnApiRunner"]
        if templates.metadata(name).get("streaming"):
            options.append("--streaming")
        arguments = json.dumps([name, variables, options])
        built = in_image(
            image_environment,
            "import json; from clickstream.pipelines import catalog; "
            f"catalog.build_pipeline(*json.loads({arguments!r})); print('built')",
        )
        assert built.strip() == "built", name


def test_launcher_twin_loads_the_lab_data_exactly(image_environment, stack, lab_data):
    from clickstream.local import emulators

    prefix = f"twin-{uuid.uuid4().hex[:6]}/"
    emulators.upload([str(lab_data / "*.jsonl")], prefix)
    dataset = f"twin_{uuid.uuid4().hex[:6]}"
    bq = bigquery_tables.client()
    bigquery_tables.ensure_dataset(bq, dataset)
    parameters = {"input": f"gs://{stack.project}/{prefix}*.jsonl", "dataset": dataset}
    templates.variables("batch_migration", parameters)  # as Dataflow checks what it passes
    launched = image.launch(
        image_environment,
        "batch_migration",
        parameters,
        ["--runner=FnApiRunner"],
        emulators.emulator_env(),
    )
    assert launched.returncode == 0, launched.output[-4000:]
    assert launched.startup_seconds is not None and launched.startup_seconds < launched.seconds
    counts = {
        table: bigquery_tables.row_count(bq, f"{bq.project}.{dataset}.{table}")
        for table in ("visits", "page_views", "cart_adds", "purchases", "dead_letter")
    }
    assert counts == {
        "visits": 8804,
        "page_views": 35422,
        "cart_adds": 8999,
        "purchases": 2213,
        "dead_letter": 0,
    }


def test_launch_local_refuses_an_unknown_parameter_before_building(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "clickstream.cli", "template", "launch-local", "batch_migration",
         "--param", "input=gs://b/x.jsonl", "--param", "inptu=x",
         "--workspace", str(tmp_path / "image")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode != 0 and "unknown parameter 'inptu'" in done.stderr
    assert not (tmp_path / "image").exists()


def test_an_exported_spec_runs_with_the_transforms_from_its_package_alone(
    stack, lab_data, tmp_path_factory
):
    """What the Dataflow job builder does with `clickstream template export`: Beam's own
    launcher, in an environment with Beam and the pinned requirements but not the catalog; the
    provider's `packages` brings the transforms: pip fetches the package from its URL (served
    over HTTP on loopback, standing in for https://storage.googleapis.com/...)."""
    from clickstream.local import emulators

    workspace = tmp_path_factory.mktemp("job-builder")
    dockerfile = image.read()
    assert "templates/requirements.txt" in dockerfile.runs[0]  # the layer without the catalog
    beam_only = image.build_environment(workspace, dockerfile, runs=1)
    assert "clickstream" not in in_image(
        beam_only, "import pkgutil; print(*pkgutil.iter_modules())"
    )
    package = image.build_package(workspace)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0),
        functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(package.parent)),
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/{package.name}"
    prefix = f"job-builder-{uuid.uuid4().hex[:6]}/"
    emulators.upload([str(lab_data / "visits-2024-07-0[1-3].jsonl")], prefix)
    dataset = f"job_builder_{uuid.uuid4().hex[:6]}"
    bq = bigquery_tables.client()
    bigquery_tables.ensure_dataset(bq, dataset)
    exported = workspace / "batch_migration.yaml"
    exported.write_text(
        catalog.export(
            "batch_migration",
            {"input": f"gs://{stack.project}/{prefix}*.jsonl", "dataset": dataset},
            url,
        )
    )
    done = subprocess.run(
        [str(beam_only.python), "-m", "apache_beam.yaml.main",
         f"--yaml_pipeline_file={exported}", "--runner=FnApiRunner"],
        cwd=workspace,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), **emulators.emulator_env()},
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    server.shutdown()
    assert done.returncode == 0, done.stderr[-4000:]
    visits = sum(
        len(jsonlines.split(path.read_bytes()))
        for path in sorted(lab_data.glob("visits-2024-07-0[1-3].jsonl"))
    )
    assert bigquery_tables.row_count(bq, f"{bq.project}.{dataset}.visits") == visits
