"""The local stand-in for the bucket's Eventarc trigger: the storage emulator sends no
notifications, so the bridge lists the bucket and delivers, for each object generation it has not
delivered yet, the CloudEvent Cloud Storage would send (``google.cloud.storage.object.v1
.finalized``, binary mode, as Eventarc delivers it to a Cloud Run function) to the function.

As with a real trigger, objects that exist when the bridge starts are not announced, and
delivery is at least once: a delivery the function did not accept (no 2xx) is retried at the
next poll.
"""

import json
import logging
import threading

import requests
from google.cloud import storage

from clickstream.core import landing

POLL_SECONDS = 0.5
TIMEOUT_SECONDS = 60  # the function waits for Airflow's answer
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
        "ce-type": landing.FINALIZED,
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


class Bridge:
    """Watches ``bucket`` and delivers its new object generations to ``url``."""

    def __init__(self, client: storage.Client, bucket: str, url: str):
        self.client, self.bucket, self.url = client, bucket, url
        self.delivered = {self._key(blob) for blob in self._blobs()}  # there before: not new

    @staticmethod
    def _key(blob: storage.Blob) -> tuple[str, int]:
        return blob.name, blob.generation

    def _blobs(self) -> list[storage.Blob]:
        return list(self.client.list_blobs(self.bucket))

    def poll(self) -> list[tuple[str, int, int]]:
        """Deliver every new generation; (object, generation, status) of each delivery."""
        done = []
        for blob in self._blobs():
            if self._key(blob) in self.delivered:
                continue
            try:
                status = deliver(self.url, object_data(blob))
            except requests.RequestException as error:
                _LOG.warning("bridge: %s#%s not delivered: %s", blob.name, blob.generation, error)
                continue
            if 200 <= status < 300:
                self.delivered.add(self._key(blob))
            done.append((blob.name, blob.generation, status))
            _LOG.info("bridge: %s#%s delivered: %s", blob.name, blob.generation, status)
        return done

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set."""
        while not stop.wait(POLL_SECONDS):
            try:
                self.poll()
            except Exception:  # the emulator restarting, say: keep watching
                _LOG.exception("bridge: listing gs://%s failed", self.bucket)
