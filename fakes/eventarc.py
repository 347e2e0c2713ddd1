"""Eventarc's Cloud Storage triggers, on loopback: the storage emulator sends no notifications,
so ``FakeEventarc`` lists each watched bucket and delivers, for each object generation it has
not delivered yet, the CloudEvent Cloud Storage sends (``google.cloud.storage.object.v1
.finalized``, binary mode, as Eventarc delivers it to a Cloud Run function).

As with a real trigger, objects that exist when a trigger is made are not announced, and
delivery is at least once: a delivery the function did not accept (no 2xx) is retried at the
next poll. With a project (``clickstream.fakes.project``), it delivers only as Google documents
a trigger may: the roles below, checked at each delivery; a refused delivery is recorded in
``refused`` and retried, as Eventarc retries, once the role is granted.
"""

import dataclasses
import json
import logging
import threading

import requests
from google.cloud import storage

from clickstream.fakes import project as projects
from clickstream.fakes.rules import Broken, Rule

FINALIZED = "google.cloud.storage.object.v1.finalized"
POLL_SECONDS = 0.5
TIMEOUT_SECONDS = 60  # the function may wait on what it calls
_ROLES_PAGE = "https://cloud.google.com/eventarc/standard/docs/functions/roles-permissions"
RULES = {
    "receiver": Rule(
        "eventarc.event-receiver",
        "Eventarc",
        "a trigger's service account needs eventarc.events.receiveEvent (Eventarc Event "
        "Receiver) to receive direct events other than Pub/Sub's, Cloud Storage's among them",
        _ROLES_PAGE,
    ),
    "invoker": Rule(
        "eventarc.invoker",
        "Eventarc",
        "Eventarc invokes an authenticated Cloud Run function as the trigger's service account, "
        "which needs run.routes.invoke (Cloud Run Invoker) on it",
        _ROLES_PAGE,
    ),
    "storage-agent": Rule(
        "eventarc.storage-agent",
        "Eventarc",
        "Cloud Storage publishes a bucket's events through Pub/Sub as its service agent, which "
        "needs pubsub.topics.publish (Pub/Sub Publisher) in the project",
        _ROLES_PAGE,
    ),
}
_LOG = logging.getLogger(__name__)


def object_data(blob: storage.Blob) -> dict[str, str]:
    """The StorageObjectData of ``blob``: what a Cloud Storage event carries."""
    bucket, created = blob.bucket.name, blob.time_created.isoformat().replace("+00:00", "Z")
    return {
        "kind": "storage#object",
        "id": f"{bucket}/{blob.name}/{blob.generation}",
        "bucket": bucket,
        "name": blob.name,
        "generation": str(blob.generation),
        "metageneration": str(blob.metageneration),
        "contentType": blob.content_type,
        "size": str(blob.size),
        "md5Hash": blob.md5_hash,
        "crc32c": blob.crc32c,
        "storageClass": blob.storage_class,
        "timeCreated": created,
        "updated": created,
    }


def cloud_event(data: dict[str, str]) -> tuple[dict[str, str], bytes]:
    """Headers and body of the finalize CloudEvent of an object (its StorageObjectData)."""
    bucket, name, generation = data["bucket"], data["name"], data["generation"]
    headers = {
        "ce-specversion": "1.0",
        "ce-id": f"{bucket}/{name}/{generation}",  # a redelivery carries the same id
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "ce-type": FINALIZED,
        "ce-subject": f"objects/{name}",
        "Content-Type": "application/json",
    }
    if data.get("timeCreated"):
        headers["ce-time"] = data["timeCreated"]
    return headers, json.dumps(data).encode()


def deliver(url: str, data: dict[str, str]) -> int:
    """POST the finalize event of the object ``data`` describes to ``url``; the status code."""
    headers, body = cloud_event(data)
    return requests.post(url, data=body, headers=headers, timeout=TIMEOUT_SECONDS).status_code


@dataclasses.dataclass(frozen=True)
class Trigger:
    """Finalize events of ``bucket`` to ``url`` (the Cloud Run service ``service``) as
    ``service_account`` (checked only with a project)."""

    bucket: str
    url: str
    service: str = ""
    service_account: str = ""


class FakeEventarc:
    """Delivers the new object generations of each trigger's bucket to its function."""

    def __init__(self, client: storage.Client, project: projects.FakeProject | None = None):
        self.client, self.project = client, project
        self.triggers: list[Trigger] = []
        self.delivered: set[tuple[str, str, int]] = set()  # (url, object, generation)
        self.refused: list[tuple[str, str]] = []  # (object, why), at most once each
        self._lock = threading.Lock()

    def add(self, trigger: Trigger) -> None:
        """A new trigger: what its bucket holds now is not announced."""
        with self._lock:
            self.delivered |= {(trigger.url, *key) for key in self._objects(trigger.bucket)}
            self.triggers.append(trigger)

    def remove(self, url: str) -> None:
        with self._lock:
            self.triggers = [t for t in self.triggers if t.url != url]

    def _objects(self, bucket: str) -> list[tuple[str, int]]:
        return [(blob.name, blob.generation) for blob in self.client.list_blobs(bucket)]

    def _check(self, trigger: Trigger) -> None:
        """Refuse (Broken) a delivery Google would not make."""
        if self.project is None:
            return
        number = self.project.number
        agent = f"serviceAccount:service-{number}@gs-project-accounts.iam.gserviceaccount.com"
        member = f"serviceAccount:{trigger.service_account}"
        name = self.project.name
        checks = (
            (agent, "pubsub.topics.publish", name, "storage-agent"),
            (member, "eventarc.events.receiveEvent", name, "receiver"),
            (member, "run.routes.invoke", trigger.service, "invoker"),
        )
        for who, permission, resource, rule in checks:
            if not self.project.allows(who, permission, resource):
                raise Broken(RULES[rule], f"{who} lacks {permission} on {resource};")

    def poll(self) -> list[tuple[str, int, int]]:
        """Deliver every new generation; (object, generation, status) of each delivery."""
        done = []
        with self._lock:
            triggers = list(self.triggers)
        for trigger in triggers:
            for blob in self.client.list_blobs(trigger.bucket):
                key = (trigger.url, blob.name, blob.generation)
                if key in self.delivered:
                    continue
                try:
                    self._check(trigger)
                    status = deliver(trigger.url, object_data(blob))
                except Broken as broken:
                    if (blob.name, broken.rule.key) not in {(o, w) for o, w in self.refused}:
                        self.refused.append((blob.name, broken.rule.key))
                        _LOG.warning("eventarc: %s not delivered: %s", blob.name, broken.message)
                    continue
                except requests.RequestException as error:
                    _LOG.warning(
                        "eventarc: %s#%s not delivered: %s", blob.name, blob.generation, error
                    )
                    continue
                if 200 <= status < 300:
                    self.delivered.add(key)
                done.append((blob.name, blob.generation, status))
                _LOG.info("eventarc: %s#%s delivered: %s", blob.name, blob.generation, status)
        return done

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set."""
        while not stop.wait(POLL_SECONDS):
            try:
                self.poll()
            except Exception:  # the emulator restarting, say: keep watching
                _LOG.exception("eventarc: listing a bucket failed")
