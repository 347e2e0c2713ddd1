"""Shared fixtures: the real local stack on free ports, the lab data when it is present; and the
test tiers, marked from the fixtures a test uses (``make test-fast`` runs the tests with none)."""

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAB_DATA = ROOT.parent / "shared" / "data" / "lab-visits"
TIERS = {  # fixture -> marker of the tests that use it (declared in pyproject.toml)
    "stack": "stack",
    "stack_state": "stack",  # tests that start and stop emulators of their own
    "lab_data": "lab",
    "browser": "browser",
    "image_environment": "image",
    "gcloud": "gcloud",
    "airflow_environment": "airflow",
}
PORT_VARIABLES = tuple(
    f"CLICKSTREAM_{name}_PORT"
    for name in ("PUBSUB", "BIGQUERY", "BIGQUERY_GRPC", "STORAGE", "METADATA")
)


@pytest.fixture(scope="session")
def lab_data() -> Path:
    """The real lab files (../shared/data/lab-visits); the test is skipped when absent."""
    if not any(LAB_DATA.glob("*.jsonl")):
        pytest.skip(f"lab data absent: no {LAB_DATA}/*.jsonl (it lives in ../shared)")
    return LAB_DATA


@pytest.fixture
def gcloud(tmp_path) -> Path:
    """gcloud with an empty configuration (no account): it parses and builds offline."""
    if not shutil.which("gcloud"):
        pytest.fail("gcloud is missing (the Google Cloud CLI of the machine image)")
    return tmp_path / "gcloud-config"


@pytest.fixture(scope="session")
def airflow_environment() -> Path:
    """The Python of the Airflow environment (``make airflow``)."""
    python = ROOT / ".venv-airflow" / "bin" / "python"
    if not python.exists():
        pytest.fail(f"the Airflow environment is missing ({python}): run `make airflow`")
    return python


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The three emulators, started for this session on free ports and stopped after it."""
    from clickstream.core import ports
    from clickstream.local import emulators

    chosen = ports.free_ports(len(PORT_VARIABLES))
    env = {name: str(port) for name, port in zip(PORT_VARIABLES, chosen, strict=True)}
    env["CLICKSTREAM_STATE_DIR"] = str(tmp_path_factory.mktemp("stack"))
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        emulators.up("clickstream")
        yield emulators.settings()
    finally:
        emulators.down()
        os.environ.clear()
        os.environ.update(saved)


def pytest_collection_modifyitems(items):
    """Mark each test with the tiers of the fixtures it uses, however indirectly."""
    for item in items:
        for fixture, marker in TIERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)
