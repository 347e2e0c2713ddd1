"""BigQuery as Google Cloud runs it, on top of ``bqemulator``: an HTTP front that passes queries,
jobs, loads and streaming inserts through to the emulator, keeps what the emulator drops of a
table (a view's SQL, ``tableConstraints``), and serves tables' IAM policies (the emulator has
none), kept in the shared project where the other fakes check permissions."""

import json
import re
from collections.abc import Callable

from google.iam.v1 import policy_pb2
from google.protobuf import json_format

from clickstream.fakes import http_front
from clickstream.fakes import project as projects
from clickstream.fakes.rules import Rule

SERVICE = "bigquery.googleapis.com"
KEPT = ("view", "tableConstraints")  # what the emulator drops of a table
_T = r"/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables"
RULES = {
    "table-iam": Rule(
        "bigquery.table-iam",
        "BigQuery",
        "a table has its own IAM policy (tables.getIamPolicy, tables.setIamPolicy); a role "
        "granted there adds to what the dataset's access entries grant",
        "https://cloud.google.com/bigquery/docs/control-access-to-resources-iam",
    ),
}


class FakeBigQuery:
    """BigQuery for ``project`` at ``url``, data in the emulator at ``emulator``."""

    def __init__(self, emulator: str, project: projects.FakeProject):
        self.project = project
        self.kept: dict[str, dict] = {}  # projects/P/datasets/D/tables/T -> dropped fields
        # called with (project, dataset, table, columns) for each new table: Dataplex lists it
        self.on_table: Callable[[str, str, str, list[str]], None] | None = None
        self.front = http_front.HttpFront(
            emulator,
            [
                ("POST", re.compile(_T), self.insert),
                ("GET", re.compile(rf"{_T}/([^/:]+)"), self.get),
                ("PATCH", re.compile(rf"{_T}/([^/:]+)"), self.change),
                ("PUT", re.compile(rf"{_T}/([^/:]+)"), self.change),
                ("DELETE", re.compile(rf"{_T}/([^/:]+)"), self.delete),
                ("POST", re.compile(rf"{_T}/([^/:]+):getIamPolicy"), self.get_policy),
                ("POST", re.compile(rf"{_T}/([^/:]+):setIamPolicy"), self.set_policy),
            ],
        )
        self.url = self.front.url

    @staticmethod
    def _name(match: re.Match, table: str | None = None) -> str:
        project, dataset = match.group(1), match.group(2)
        return f"projects/{project}/datasets/{dataset}/tables/{table or match.group(3)}"

    def _path(self, name: str) -> str:
        return f"/bigquery/v2/{name}"

    def _table(self, name: str) -> dict | None:
        status, found = self.front.upstream_json("GET", self._path(name))
        return {**found, **self.kept.get(name, {})} if status == 200 and found else None

    def insert(self, request: http_front.Request):
        self.project.require(SERVICE)
        body = request.json()
        name = self._name(request.match, body.get("tableReference", {}).get("tableId"))
        status, answer = self.front.upstream_json("POST", request.target, body)
        if status == 200:
            self.kept[name] = {key: body[key] for key in KEPT if key in body}
            answer = {**answer, **self.kept[name]}
            if self.on_table and "view" not in body:
                columns = [field["name"] for field in body.get("schema", {}).get("fields", [])]
                self.on_table(
                    request.match.group(1), request.match.group(2), name.rsplit("/", 1)[-1], columns
                )
        return status, answer

    def get(self, request: http_front.Request):
        found = self._table(self._name(request.match))
        return (200, found) if found else None  # not found: the emulator's own answer

    def change(self, request: http_front.Request):
        name, body = self._name(request.match), request.json()
        status, answer = self.front.upstream_json(request.method, request.target, body)
        if status == 200:
            self.kept.setdefault(name, {}).update({k: body[k] for k in KEPT if k in body})
            answer = {**answer, **self.kept[name]}
        return status, answer

    def delete(self, request: http_front.Request):
        name = self._name(request.match)
        self.kept.pop(name, None)
        self.project.policies.pop(name, None)
        return None  # passed through

    def get_policy(self, request: http_front.Request):
        name = self._name(request.match)
        if self._table(name) is None:
            return http_front.error(404, f"Not found: Table {name}")
        policy = self.project.policies.setdefault(name, policy_pb2.Policy(version=1, etag=b"0"))
        return 200, json.loads(json_format.MessageToJson(policy))

    def set_policy(self, request: http_front.Request):
        name = self._name(request.match)
        if self._table(name) is None:
            return http_front.error(404, f"Not found: Table {name}")
        given = request.json().get("policy", {})
        current = self.project.policies.get(name, policy_pb2.Policy(etag=b"0"))
        if given.get("etag") and given["etag"] != json.loads(
            json_format.MessageToJson(current)
        ).get("etag"):
            return http_front.error(409, "the table's policy changed (etag); read it again")
        stored = policy_pb2.Policy()
        json_format.ParseDict({"bindings": given.get("bindings", []), "version": 1}, stored)
        stored.etag = str(int(current.etag.decode() or "0") + 1).encode()
        self.project.policies[name] = stored
        return 200, json.loads(json_format.MessageToJson(stored))

    def stop(self) -> None:
        self.front.stop()
