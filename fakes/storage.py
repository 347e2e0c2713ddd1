"""Cloud Storage as Google Cloud runs it, on top of ``gcp-storage-emulator``: an HTTP front that
passes objects through to the emulator and keeps what the emulator drops of a bucket (its
location, ``iamConfiguration``, ``lifecycle``) and its IAM policy (in the shared project, where
the other fakes check permissions), with the rules the emulator does not enforce."""

import json
import re

from google.iam.v1 import policy_pb2
from google.protobuf import json_format

from clickstream.fakes import http_front
from clickstream.fakes import project as projects
from clickstream.fakes.rules import Broken, Rule

SERVICE = "storage.googleapis.com"
KEPT = ("location", "iamConfiguration", "lifecycle", "labels")  # what the emulator drops
RULES = {
    "bucket-name": Rule(
        "storage.bucket-name",
        "Cloud Storage",
        "a bucket name is 3 to 63 lowercase letters, digits, dashes, underscores and dots, "
        "starting and ending with a letter or digit",
        "https://cloud.google.com/storage/docs/buckets#naming",
    ),
    "location-fixed": Rule(
        "storage.location-fixed",
        "Cloud Storage",
        "a bucket's location is set when it is created and cannot change",
        "https://cloud.google.com/storage/docs/locations",
    ),
    "public-access-prevention": Rule(
        "storage.public-access-prevention",
        "Cloud Storage",
        "with public access prevention enforced, allUsers and allAuthenticatedUsers cannot be "
        "granted a role on the bucket",
        "https://cloud.google.com/storage/docs/public-access-prevention",
    ),
}
_BUCKET_NAME = re.compile(r"[a-z0-9][-_.a-z0-9]{1,61}[a-z0-9]")
_B = r"/storage/v1/b"


class FakeStorage:
    """Cloud Storage for ``project`` at ``url``, objects in the emulator at ``emulator``."""

    def __init__(self, emulator: str, project: projects.FakeProject):
        self.project = project
        self.kept: dict[str, dict] = {}  # bucket -> what the emulator drops
        self.front = http_front.HttpFront(
            emulator,
            [
                ("POST", re.compile(_B), self.create),
                ("GET", re.compile(rf"{_B}/([^/]+)"), self.get),
                ("PATCH", re.compile(rf"{_B}/([^/]+)"), self.patch),
                ("GET", re.compile(rf"{_B}/([^/]+)/iam"), self.get_policy),
                ("PUT", re.compile(rf"{_B}/([^/]+)/iam"), self.set_policy),
            ],
        )
        self.url = self.front.url

    def _bucket(self, name: str) -> dict | None:
        status, found = self.front.upstream_json("GET", f"{_B}/{name}")
        return {**found, **self.kept.get(name, {})} if status == 200 and found else None

    def create(self, request: http_front.Request):
        self.project.require(SERVICE)
        body = request.json()
        name = body.get("name", "")
        if not _BUCKET_NAME.fullmatch(name):
            raise Broken(RULES["bucket-name"], f"invalid bucket name {name!r};")
        status, created = self.front.upstream_json(
            "POST", f"{_B}?{request.query}", {k: v for k, v in body.items() if k not in KEPT}
        )
        if status != 200:
            return status, created
        self.kept[name] = {
            "location": body.get("location", "US").upper(),
            "iamConfiguration": body.get("iamConfiguration", {}),
            **{key: body[key] for key in ("lifecycle", "labels") if key in body},
        }
        return 200, self._bucket(name)

    def get(self, request: http_front.Request):
        found = self._bucket(request.match.group(1))
        return (
            (200, found) if found else http_front.error(404, "The specified bucket does not exist.")
        )

    def patch(self, request: http_front.Request):
        name, body = request.match.group(1), request.json()
        current = self._bucket(name)
        if current is None:
            return http_front.error(404, "The specified bucket does not exist.")
        if "location" in body and body["location"].upper() != current["location"]:
            raise Broken(RULES["location-fixed"], f"{name} is in {current['location']};")
        self.kept[name].update({k: body[k] for k in KEPT if k in body and k != "location"})
        rest = {k: v for k, v in body.items() if k not in KEPT}
        if rest:
            status, answer = self.front.upstream_json("PATCH", f"{_B}/{name}", rest)
            if status != 200:
                return status, answer
        return 200, self._bucket(name)

    def _resource(self, name: str) -> str:
        return f"projects/_/buckets/{name}"

    def get_policy(self, request: http_front.Request):
        name = request.match.group(1)
        if self._bucket(name) is None:
            return http_front.error(404, "The specified bucket does not exist.")
        policy = self.project.policies.setdefault(
            self._resource(name), policy_pb2.Policy(version=1, etag=b"0")
        )
        return 200, _json_policy(name, policy)

    def set_policy(self, request: http_front.Request):
        name = request.match.group(1)
        bucket = self._bucket(name)
        if bucket is None:
            return http_front.error(404, "The specified bucket does not exist.")
        body = request.json()
        prevention = bucket.get("iamConfiguration", {}).get("publicAccessPrevention")
        for binding in body.get("bindings", []):
            public = {"allUsers", "allAuthenticatedUsers"} & set(binding.get("members", []))
            if public and prevention == "enforced":
                raise Broken(RULES["public-access-prevention"], f"{name} refuses {sorted(public)};")
        current = self.project.policies.get(self._resource(name), policy_pb2.Policy())
        if body.get("etag") and body["etag"] != _json_policy(name, current).get("etag"):
            return http_front.error(412, "Precondition Failed: the policy changed (etag)")
        stored = policy_pb2.Policy()
        json_format.ParseDict(
            {"bindings": body.get("bindings", []), "version": body.get("version", 1)}, stored
        )
        stored.etag = str(int(current.etag.decode() or "0") + 1).encode()
        self.project.policies[self._resource(name)] = stored
        return 200, _json_policy(name, stored)

    def stop(self) -> None:
        self.front.stop()


def _json_policy(bucket: str, policy: policy_pb2.Policy) -> dict:
    body = json.loads(json_format.MessageToJson(policy))
    body.setdefault("bindings", [])
    return {"kind": "storage#policy", "resourceId": f"projects/_/buckets/{bucket}", **body}
