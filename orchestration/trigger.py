"""The event-driven trigger of Lab Task 4.1: a Cloud Run function (Functions Framework) on the
bucket's ``google.cloud.storage.object.v1.finalized`` CloudEvent that starts the DAG run for that
object generation through the Airflow REST API.

- The run id is the landed file's (``core/landing.py``): a redelivered event, or a second event
  for the same generation, meets the run that exists; Airflow answers 409 and the function does
  nothing more. A new generation of the same object (a re-upload) is a new run; the migration
  merges on deterministic keys, so it adds no row twice.
- Objects that are not visit files under the landing prefix are ignored.
- Airflow unreachable or answering anything else: the function raises, and Eventarc retries
  the event (the trigger is deployed with ``--retry``).

Configuration (environment): ``AIRFLOW_URL`` (the Airflow web server, e.g. Composer's
``airflowUri``), ``AIRFLOW_API`` (``v2`` for Airflow 3, default; ``v1`` for Airflow 2),
``AIRFLOW_AUTH`` (``google``, default: an access token of the function's service account, as
Composer's web server expects; ``none``: no Authorization header, the local Airflow),
``LANDING_PREFIX`` (default ``landing/``) and ``DAG_ID`` (default ``clickstream_file_landed``).
"""

import functools
import logging
import os
from typing import Any

import functions_framework
import requests

from clickstream.core import landing, names

TIMEOUT_SECONDS = 30
STARTED, EXISTS, IGNORED = "started", "exists", "ignored"
_LOG = logging.getLogger("clickstream.orchestration.trigger")
if not _LOG.handlers:  # the Functions Framework leaves logging unconfigured
    _LOG.addHandler(logging.StreamHandler())
    _LOG.setLevel(logging.INFO)


class AirflowError(RuntimeError):
    """Airflow refused or failed to start the run (the event is retried)."""


@functools.cache
def _session(auth: str) -> requests.Session:
    if auth == "none":
        return requests.Session()
    if auth != "google":
        raise ValueError(f"AIRFLOW_AUTH={auth!r}: google or none")
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return AuthorizedSession(credentials)


def dag_run_request(file: landing.LandedFile, api: str) -> dict:
    """The body of ``POST /api/{api}/dags/{dag_id}/dagRuns`` for ``file``."""
    body: dict[str, Any] = {"dag_run_id": file.run_id, "conf": file.conf()}
    if api == "v2":  # Airflow 3 requires the key; null: the run is not tied to a date
        body["logical_date"] = None
    elif api != "v1":
        raise ValueError(f"AIRFLOW_API={api!r}: v2 (Airflow 3) or v1 (Airflow 2)")
    return body


def start_run(file: landing.LandedFile) -> str:
    """Start the DAG run of ``file``: STARTED, or EXISTS when its run id is taken already."""
    env = os.environ.get
    url, api = env("AIRFLOW_URL", "").rstrip("/"), env("AIRFLOW_API", "v2")
    if not url:
        raise AirflowError("AIRFLOW_URL is not set")
    dag_id = env("DAG_ID", names.FILE_LANDED_DAG)
    response = _session(env("AIRFLOW_AUTH", "google")).post(
        f"{url}/api/{api}/dags/{dag_id}/dagRuns",
        json=dag_run_request(file, api),
        timeout=TIMEOUT_SECONDS,
    )
    if response.status_code == 409:
        return EXISTS
    if response.status_code not in (200, 201):
        raise AirflowError(
            f"Airflow answered {response.status_code} for run {file.run_id}: {response.text[:500]}"
        )
    return STARTED


@functions_framework.cloud_event  # type: ignore[arg-type]  # it drops the result, a str here
def on_file_landed(cloud_event) -> str:
    """Start the DAG run of the object the event announces (see the module docstring)."""
    data = cloud_event.data or {}
    name = data.get("name", "")
    if not landing.is_visit_file(name, os.environ.get("LANDING_PREFIX", names.LANDING_PREFIX)):
        _LOG.info("ignored gs://%s/%s: not a visit file to migrate", data.get("bucket"), name)
        return IGNORED
    try:
        file = landing.LandedFile.from_event(data)
    except landing.LandingError as error:  # retrying cannot mend it
        _LOG.error("ignored event %s: %s", cloud_event["id"], error)
        return IGNORED
    outcome = start_run(file)
    _LOG.info("%s: run %s for %s#%s", outcome, file.run_id, file.url, file.generation)
    return outcome
