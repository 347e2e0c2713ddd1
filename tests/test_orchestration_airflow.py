"""The DAG's tests (tests/in_airflow) in the Airflow environment, on the DAGs folder staged as
Composer gets it: the catalog's environment has no Airflow, so this test runs them there."""

import os
import subprocess

from conftest import ROOT

from clickstream.orchestration import deployment


def test_the_dag_tests_pass_in_the_airflow_environment(airflow_environment, tmp_path):
    dags = deployment.stage_dags(tmp_path / "dags", local=True)
    env = {
        **os.environ,
        "CLICKSTREAM_DAGS_FOLDER": str(dags),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
    }
    result = subprocess.run(
        [
            str(airflow_environment),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/in_airflow",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout
