"""The local stack's stand-in for ``DataflowStartFlexTemplateOperator`` (Dataflow has no
emulator, and the provider's Dataflow hook no endpoint to point elsewhere): it takes the same
launch request and runs its template with its parameters through ``clickstream template run``
(Beam's local runner against the emulators), then returns the job as Dataflow would describe a
finished one. Staged into the local DAGs folder only; Composer runs the real operator."""

import datetime
import json
import subprocess
import tempfile
from pathlib import Path

try:  # Airflow 3
    from airflow.sdk import BaseOperator, task
except ImportError:  # Airflow 2
    from airflow.decorators import task
    from airflow.models import BaseOperator

OUTPUT_TAIL = 3000  # characters of a failed run's output in the task's error


class LocalFlexTemplateOperator(BaseOperator):
    """Runs a flex-template launch request (``launchParameter``: ``containerSpecGcsPath``
    ``gs://B/templates/NAME.json``, ``jobName``, ``parameters``) with ``command template run``."""

    template_fields = ("body",)

    def __init__(self, *, body: dict, command: str, **kwargs):
        super().__init__(**kwargs)
        self.body, self.command = body, command

    def execute(self, context) -> dict:
        launch = self.body["launchParameter"]
        name = launch["containerSpecGcsPath"].rsplit("/", 1)[-1].removesuffix(".json")
        with tempfile.TemporaryDirectory() as scratch:
            counters_file = Path(scratch, "counters.json")
            command = [self.command, "template", "run", name, "--counters", str(counters_file)]
            for key, value in launch["parameters"].items():
                command += ["--param", f"{key}={value}"]
            self.log.info("running %s", " ".join(command))
            run = subprocess.run(command, capture_output=True, text=True)
            self.log.info("%s", run.stdout)
            if run.returncode:
                raise RuntimeError(
                    f"job {launch['jobName']} failed (exit {run.returncode}): "
                    f"{(run.stdout + run.stderr)[-OUTPUT_TAIL:]}"
                )
            counters = json.loads(counters_file.read_text())
        started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d_%H_%M_%S")
        job = {
            "id": f"local-{started}-{launch['jobName']}",
            "name": launch["jobName"],
            "location": "local",
            "currentState": "JOB_STATE_DONE",
        }
        context["ti"].xcom_push(key="job_id", value=job["id"])
        context["ti"].xcom_push(key="counters", value=counters)
        return job


@task
def local_counts(job: dict, **context) -> dict:
    """The counters the stand-in's run reported."""
    return context["ti"].xcom_pull(task_ids="run_migration", key="counters")
