"""Lab Task 4.1 in Cloud Composer: one run per visit file landed in Cloud Storage.

The run's configuration names the file: ``{"bucket", "object", "generation"}`` (the trigger
function, ``orchestration/trigger.py``, starts the run from the bucket's finalize
event, with a run id derived from those three, so a redelivered event is no second run). The run

1. ``landed_file``: checks the configuration;
2. ``launch_request``: builds the flex-template launch request of ``batch_migration`` for exactly
   that file (job name derived from the file, parameters checked against
   ``metadata/batch_migration.json``);
3. ``run_migration``: ``DataflowStartFlexTemplateOperator`` launches it and waits for the job
   (deferrable where ``[operators] default_deferrable`` says so);
4. ``migration_counts``: the job's ``clickstream`` counters (records read, visits and events
   loaded and rejected) from its Dataflow metrics; ``record_lineage``: the run's lineage, from
   the file to the tables (the Data Lineage API; locally the stack's lineage file);
5. ``announce_processed``: one message on the files-processed topic, or, if a step failed,
   ``announce_failure`` says so there.

Settings: the Airflow variable ``clickstream_orchestration`` (JSON; or the environment variable
``AIRFLOW_VAR_CLICKSTREAM_ORCHESTRATION``): ``project``, ``region`` (also where lineage is
recorded), ``template_bucket`` (where ``gs://BUCKET/templates/batch_migration.json`` is) and
``environment`` (the launch's FlexTemplateRuntimeEnvironment, which must name the template's
image as ``sdkContainerImage``, and may name ``serviceAccountEmail``) are required;
``dataset``, ``topic`` and ``composer_environment`` (lineage's origin) are optional.
Retry delay: ``[core] default_task_retry_delay``.

The catalog's Beam-free core (``clickstream/core``, ``clickstream/metadata``) sits beside this
file in the DAGs folder (``clickstream orchestrate deploy`` copies it there); nothing is computed
when the file is parsed. With ``CLICKSTREAM_LOCAL_DATAFLOW`` set (the local stack: the endpoint
of its Dataflow API), the same operator and hook talk to that endpoint (``local_dataflow.py``).
"""

import datetime
import logging
import os

import pendulum
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator

try:  # Airflow 3
    from airflow.sdk import Variable, dag, task
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # Airflow 2
    from airflow.decorators import dag, task
    from airflow.exceptions import AirflowFailException
    from airflow.models import Variable

from clickstream.core import landing, names, templates

SETTINGS = "clickstream_orchestration"  # the Airflow variable (JSON)
REQUIRED = ("project", "region", "template_bucket", "environment")
LOCAL_DATAFLOW = "CLICKSTREAM_LOCAL_DATAFLOW"  # the local stack's Dataflow API endpoint
PROJECT = "{{ var.json.clickstream_orchestration.project }}"
REGION = "{{ var.json.clickstream_orchestration.region }}"
_LOG = logging.getLogger(__name__)


def settings() -> dict:
    """The ``clickstream_orchestration`` variable with its defaults; fails the task (no retry)
    when a required key is missing."""
    given = Variable.get(SETTINGS, None, deserialize_json=True) or {}
    missing = [key for key in REQUIRED if not given.get(key)]
    if missing:
        raise AirflowFailException(
            f"Airflow variable {SETTINGS} lacks {', '.join(missing)} (JSON with "
            f"{', '.join(REQUIRED)}; optional dataset, topic)"
        )
    return {
        "dataset": names.DATASET,
        "topic": names.FILES_PROCESSED_TOPIC,
        **given,
    }


def dead_letter_table(config: dict) -> str:
    return f"{config['project']}.{config['dataset']}.dead_letter"


def publish(config: dict, data: bytes, attributes: dict[str, str]) -> None:
    from airflow.providers.google.cloud.hooks.pubsub import PubSubHook

    message = {"data": data, "attributes": attributes}
    PubSubHook().publish(topic=config["topic"], messages=[message], project_id=config["project"])


@task
def landed_file(**context) -> dict:
    try:
        return landing.LandedFile.from_conf(context["dag_run"].conf).conf()
    except landing.LandingError as error:
        raise AirflowFailException(str(error)) from None


@task
def launch_request(conf: dict) -> dict:
    file, config = landing.LandedFile.from_conf(conf), settings()
    parameters = {"input": file.url, "dataset": config["dataset"]}
    parameters["bigquery_project"] = config["project"]
    template_file = templates.template_file(names.MIGRATION_TEMPLATE, config["template_bucket"])
    try:
        return templates.launch_request(
            names.MIGRATION_TEMPLATE,
            file.job_name,
            template_file,
            parameters,
            config["environment"],
        )
    except templates.ParameterError as error:
        raise AirflowFailException(str(error)) from None


def dataflow_hook():
    """The provider's Dataflow hook; on the local stack, on its Dataflow."""
    if os.environ.get(LOCAL_DATAFLOW):
        from local_dataflow import LocalDataflowHook

        return LocalDataflowHook(endpoint=os.environ[LOCAL_DATAFLOW])
    from airflow.providers.google.cloud.hooks.dataflow import DataflowHook

    return DataflowHook()


@task
def dataflow_counts(job: dict) -> dict:
    """The job's counters from its Dataflow metrics."""
    metrics = dataflow_hook().fetch_job_metrics_by_id(
        job_id=job["id"], project_id=job["projectId"], location=job["location"]
    )
    return templates.job_counters(metrics)


def _moment(text: str | None) -> datetime.datetime:
    """A time of the job (RFC 3339), or now when Dataflow gives none."""
    if not text:
        return datetime.datetime.now(datetime.UTC)
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


@task
def record_lineage(conf: dict, job: dict) -> None:
    """The run's lineage, from the landed file to the tables (``clickstream.gcp.lineage``),
    from Composer (its origin)."""
    from clickstream.gcp import lineage

    file, config = landing.LandedFile.from_conf(conf), settings()
    environment = config.get("composer_environment", "")
    origin = {
        "sourceType": "COMPOSER",
        "name": f"projects/{config['project']}/locations/{config['region']}/environments/"
        f"{environment}",
    }
    lineage.record_migration(
        config["project"],
        config["region"],
        job["id"],
        [file.url],
        lineage.migration_tables(config["project"], config["dataset"]),
        _moment(job.get("createTime")),
        _moment(job.get("currentStateTime")),
        attributes={"dataflow_job": job["id"], "dag_run": file.run_id},
        origin=origin,
    )


@task
def announce_processed(conf: dict, job: dict, counters: dict) -> None:
    file, config = landing.LandedFile.from_conf(conf), settings()
    data, attributes = landing.notification(
        file, landing.PROCESSED, job["id"], counters, dead_letter_table(config)
    )
    publish(config, data, attributes)
    body = landing.read_notification(data)
    # An error line when the counts do not add up: a log-based metric alerts on it.
    level = logging.INFO if body["reconciled"] else logging.ERROR
    _LOG.log(level, "announced %s", landing.describe(body))


@task(trigger_rule="one_failed")
def announce_failure(**context) -> None:
    """Says on the topic which step failed (what the XComs show: no request, no job, no
    counts)."""
    try:
        file = landing.LandedFile.from_conf(context["dag_run"].conf)
    except landing.LandingError as error:
        _LOG.warning("nothing to announce: %s", error)
        return
    ti = context["ti"]
    if ti.xcom_pull(task_ids="launch_request") is None:
        failed = "the launch request could not be built (task launch_request)"
    elif ti.xcom_pull(task_ids="run_migration") is None:
        failed = f"migration job {file.job_name} failed or did not start (task run_migration)"
    elif ti.xcom_pull(task_ids="migration_counts") is None:
        failed = "the job's counts could not be read (task migration_counts)"
    else:
        failed = "the run's lineage could not be recorded (task record_lineage)"
    config = settings()
    job_id = ti.xcom_pull(task_ids="run_migration", key="job_id") or ""
    publish(config, *landing.notification(file, landing.FAILED, job_id, error=failed))


@dag(
    dag_id=names.FILE_LANDED_DAG,
    description="Migrate one visit file landed in Cloud Storage with the batch_migration flex "
    "template, then announce it on the files-processed topic",
    schedule=None,  # started per file by the trigger function
    start_date=pendulum.datetime(2024, 7, 1, tz="UTC"),
    catchup=False,
    max_active_runs=8,
    dagrun_timeout=pendulum.duration(hours=3),
    tags=["clickstream", "lab-task-4", "dataflow", "pubsub"],
    default_args={"owner": "clickstream", "retries": 2},
    doc_md=__doc__,
)
def clickstream_file_landed():
    conf = landed_file()
    request = launch_request(conf)
    launch = {
        "task_id": "run_migration",
        "body": request,
        "project_id": PROJECT,
        "location": REGION,
        "append_job_name": False,  # the name is the file's: a second launch meets the first
    }
    if os.environ.get(LOCAL_DATAFLOW):  # the local stack: the same operator, on its Dataflow
        from local_dataflow import LocalFlexTemplateOperator

        job = LocalFlexTemplateOperator(endpoint=os.environ[LOCAL_DATAFLOW], **launch)
    else:
        job = DataflowStartFlexTemplateOperator(**launch)
    counters = dataflow_counts.override(task_id="migration_counts")(job.output)
    recorded = record_lineage(conf, job.output)
    done = announce_processed(conf, job.output, counters)
    recorded >> done
    [conf, request, job, counters, recorded] >> announce_failure()
    return done


clickstream_file_landed()
