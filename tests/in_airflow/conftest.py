"""The tests of this folder run in the Airflow environment (``make airflow``), with the DAGs
folder staged as Composer gets it: tests/test_orchestration_airflow.py runs them there. The
catalog's environment has no Airflow, so its pytest collects nothing here."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("airflow") is None:
    collect_ignore_glob = ["*.py"]


@pytest.fixture(scope="session")
def dags_folder() -> Path:
    """The staged DAGs folder (``CLICKSTREAM_DAGS_FOLDER``), on sys.path as Airflow puts it."""
    folder = os.environ.get("CLICKSTREAM_DAGS_FOLDER")
    if not folder:
        pytest.fail("CLICKSTREAM_DAGS_FOLDER is not set: run tests/test_orchestration_airflow.py")
    sys.path.insert(0, folder)
    return Path(folder)
