"""Dataflow's REST API (``dataflow.v1b3``) as Google Cloud serves it, for the calls Airflow's
Dataflow hook makes to run a flex template: ``projects.locations.flexTemplates.launch``, then,
in its wait loop and after, ``jobs.get``, ``jobs.getMetrics`` and ``jobs.messages.list``. An HTTP
server on loopback that the real discovery client (``googleapiclient``, given
``client_options={"api_endpoint": fake.endpoint}``) drives unchanged.

A launched job is ``JOB_STATE_QUEUED``, ``JOB_STATE_RUNNING`` while the ``runner`` performs it,
then ``JOB_STATE_DONE`` (the runner's counters are its metrics) or ``JOB_STATE_FAILED`` (the
runner raised, or a rule below failed the job first: then the runner is not called, and the
job's messages say why). Whoever serves the fake gives the runner (the catalog hands the job to
Beam's local runner); the fake runs nothing itself. Jobs are batch jobs.

The rules (``RULES``, and the project's; a refusal or a failure names its rule and source):

- the Dataflow API must be enabled in the project;
- a request body must match its schema in the API reference (``fakes.discovery``);
- the job name matches ``[a-z]([-a-z0-9]{0,1022}[a-z0-9])?``; a launch with the name of an
  active job in the region is refused (409 ALREADY_EXISTS);
- ``containerSpecGcsPath`` names a flex template file: the JSON of a ``ContainerSpec`` with an
  ``image`` and ``sdkInfo.language``;
- the parameters are checked against the file's metadata: an undeclared one is refused
  (``Unrecognized parameter``) unless it is one of the pipeline options Dataflow takes undeclared
  (``UNDECLARED_OPTIONS``), a required one missing is refused, a value given (empty too) must
  match each regex of its parameter; ``defaultValue`` is not checked;
- the workers of a PYTHON template run ``environment.sdkContainerImage``, else the
  ``sdk_container_image`` option, else the stock Apache Beam SDK container, which lacks the code
  a template's image carries: then the job fails;
- the launcher's image (the file's ``image``) and the workers' must have been pushed
  (``project.images``), or the job fails pulling them;
- with ``check_callers``, identities (without it, nobody's is checked): the caller, named by
  its bearer token (``project.token``), needs ``dataflow.jobs.create`` on the project and
  ``iam.serviceAccounts.actAs`` on the job's worker service account
  (``environment.serviceAccountEmail``, else Compute Engine's default account) to launch, and
  ``dataflow.jobs.get``, ``dataflow.metrics.get`` or ``dataflow.messages.list`` to watch; the
  worker account needs ``dataflow.workItems.lease`` (``roles/dataflow.worker``) on the project
  and ``artifactregistry.repositories.downloadArtifacts`` on each image's repository, or the
  job fails.
"""

import dataclasses
import datetime
import itertools
import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import grpc

from clickstream.fakes import discovery, platform
from clickstream.fakes import project as projects
from clickstream.fakes.rules import HTTP_STATUS, Broken, Rule
from clickstream.fakes.server import Fault

SERVICE = "dataflow.googleapis.com"
API = "dataflow.v1b3"
JOB_NAME = re.compile(r"[a-z]([-a-z0-9]{0,1022}[a-z0-9])?")
# Pipeline options a launch may pass as parameters without the metadata declaring them: those
# Google's own Python sample passes so (python-docs-samples, dataflow/gemma-flex-template:
# e2e_test.py passes both, its metadata.json declares neither).
UNDECLARED_OPTIONS = frozenset({"sdk_container_image", "machine_type"})
STEP = "s1"  # the step the runner's counters, summed over steps, are reported under
QUEUED, RUNNING, DONE, FAILED = (
    f"JOB_STATE_{state}" for state in ("QUEUED", "RUNNING", "DONE", "FAILED")
)
STATUS = {  # HTTP status per gRPC code, for the codes the fake answers with
    **HTTP_STATUS,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.UNIMPLEMENTED: 501,
}
_REFERENCE = "dataflow.v1b3 API reference"
_ACCESS = "https://cloud.google.com/dataflow/docs/concepts/access-control"
_SECURITY = "https://cloud.google.com/dataflow/docs/concepts/security-and-permissions"
RULES = {
    "request": Rule(
        "dataflow.request",
        "Dataflow",
        "a request body has only the fields of its schema, with their types (Invalid JSON "
        "payload received)",
        f"{_REFERENCE} (its discovery document), the method's request body",
    ),
    "job-name": Rule(
        "dataflow.job-name",
        "Dataflow",
        "a job name matches [a-z]([-a-z0-9]{0,1022}[a-z0-9])?",
        f"{_REFERENCE}, LaunchFlexTemplateParameter.jobName and Job.name",
    ),
    "active-name": Rule(
        "dataflow.active-name",
        "Dataflow",
        "only one active job with a given name can exist in a project and region: a launch "
        "with the name of an active job is refused (409 ALREADY_EXISTS)",
        f"{_REFERENCE}, Job.name; the launch's answer as apache/beam#29441 shows it",
    ),
    "template-file": Rule(
        "dataflow.template-file",
        "Dataflow",
        "containerSpecGcsPath names a Cloud Storage file holding a ContainerSpec as JSON: the "
        "launcher image and the SDK language (required), the metadata",
        f"{_REFERENCE}, LaunchFlexTemplateParameter.containerSpecGcsPath, ContainerSpec, "
        "SDKInfo.language",
    ),
    "unrecognized-parameter": Rule(
        "dataflow.unrecognized-parameter",
        "Dataflow",
        "the template's metadata determines which parameters are valid: an undeclared one is "
        "refused (INVALID_ARGUMENT, Unrecognized parameter), but for a few pipeline options "
        "(sdk_container_image, machine_type)",
        f"{_REFERENCE}, LaunchTemplateParameters; the error as GoogleCloudPlatform/"
        "DataflowTemplates#512 shows it; the options as Google's sample python-docs-samples "
        "dataflow/gemma-flex-template passes them",
    ),
    "required-parameter": Rule(
        "dataflow.required-parameter",
        "Dataflow",
        "a parameter the metadata does not mark isOptional must be given",
        f"{_REFERENCE}, ParameterMetadata.isOptional (defaults to false); Dataflow validates "
        "launches against the metadata (GoogleCloudPlatform/DataflowTemplates#905)",
    ),
    "parameter-regex": Rule(
        "dataflow.parameter-regex",
        "Dataflow",
        "a parameter's value, empty or not, must match each of its regexes (defaultValue is "
        "not checked: it only pre-fills the console's form)",
        f"{_REFERENCE}, ParameterMetadata.regexes and defaultValue; the error as "
        "GoogleCloudPlatform/DataflowTemplates#1106 shows it",
    ),
    "worker-image": Rule(
        "dataflow.worker-image",
        "Dataflow",
        "the workers of a Python pipeline run the SDK container the job names "
        "(sdkContainerImage, or the sdk_container_image option), else the prebuilt Apache Beam "
        "image of the SDK's version, which has none of the code in the template's image",
        f"{_REFERENCE}, FlexTemplateRuntimeEnvironment.sdkContainerImage; "
        "https://cloud.google.com/dataflow/docs/guides/using-custom-containers",
    ),
    "image-pull": Rule(
        "dataflow.image-pull",
        "Dataflow",
        "the launcher VM and the workers pull their images as the job's worker service "
        "account: the image must exist and the account must be allowed to read it",
        "https://cloud.google.com/dataflow/docs/guides/templates/run-flex-templates and "
        "https://cloud.google.com/artifact-registry/docs/access-control",
    ),
    "permission": Rule(
        "dataflow.permission",
        "Dataflow",
        "each method needs its permission on the project: flexTemplates.launch "
        "dataflow.jobs.create, jobs.get dataflow.jobs.get, jobs.getMetrics "
        "dataflow.metrics.get, jobs.messages.list dataflow.messages.list",
        _ACCESS,
    ),
    "act-as": Rule(
        "dataflow.act-as",
        "Dataflow",
        "who launches a job needs iam.serviceAccounts.actAs on its worker service account "
        "(serviceAccountEmail, else the Compute Engine default service account)",
        _SECURITY,
    ),
    "worker-account": Rule(
        "dataflow.worker-account",
        "Dataflow",
        "the worker service account needs roles/dataflow.worker on the project to run the "
        "job's work (dataflow.workItems.lease)",
        _SECURITY,
    ),
}
Counters = dict[str, dict[str, int]]  # namespace -> counter -> value, summed over steps


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclasses.dataclass
class Job:
    """A launched job, as the runner gets it."""

    id: str
    project_id: str
    location: str
    name: str
    template: str  # containerSpecGcsPath
    spec: dict  # the template file: a ContainerSpec
    parameters: dict[str, str]  # the template's own (declared in its metadata)
    options: dict[str, str]  # the pipeline options given as parameters (UNDECLARED_OPTIONS)
    environment: dict  # the launch's FlexTemplateRuntimeEnvironment
    worker_image: str | None  # what the workers run; None: the stock Beam SDK container
    worker_account: str
    created: str = dataclasses.field(default_factory=_now)
    state: str = QUEUED
    state_time: str = ""
    messages: list[dict] = dataclasses.field(default_factory=list)
    counters: Counters = dataclasses.field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state in (QUEUED, RUNNING)

    def resource(self) -> dict:
        """The job as the API answers it (``Job``)."""
        return {
            "id": self.id,
            "projectId": self.project_id,
            "location": self.location,
            "name": self.name,
            "type": "JOB_TYPE_BATCH",
            "currentState": self.state,
            "currentStateTime": self.state_time or self.created,
            "createTime": self.created,
            "startTime": self.created,
        }

    def say(self, text: str, importance: str = "JOB_MESSAGE_BASIC") -> None:
        self.messages.append(
            {
                "id": str(len(self.messages) + 1),
                "time": _now(),
                "messageText": text,
                "messageImportance": importance,
            }
        )

    def metrics(self) -> dict:
        """``JobMetrics``: each counter as a user metric of its namespace, committed and
        ``tentative``."""
        updates = [
            {
                "name": {"origin": "user", "name": name, "context": context},
                "scalar": value,
                "updateTime": self.state_time or self.created,
            }
            for namespace, counters in sorted(self.counters.items())
            for name, value in sorted(counters.items())
            for context in (
                {"namespace": namespace, "step": STEP},
                {"namespace": namespace, "step": STEP, "tentative": "true"},
            )
        ]
        return {"metricTime": _now(), "metrics": updates}


_WHERE = r"/v1b3/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
ROUTES = (  # verb, path, method (as the API reference names it)
    ("POST", re.compile(rf"{_WHERE}/flexTemplates:launch"), "flexTemplates.launch"),
    ("GET", re.compile(rf"{_WHERE}/jobs/(?P<job>[^/]+)"), "jobs.get"),
    ("GET", re.compile(rf"{_WHERE}/jobs/(?P<job>[^/]+)/metrics"), "jobs.getMetrics"),
    ("GET", re.compile(rf"{_WHERE}/jobs/(?P<job>[^/]+)/messages"), "jobs.messages.list"),
)
PERMISSIONS = {
    "flexTemplates.launch": "dataflow.jobs.create",
    "jobs.get": "dataflow.jobs.get",
    "jobs.getMetrics": "dataflow.metrics.get",
    "jobs.messages.list": "dataflow.messages.list",
}


class FakeDataflow:
    """Dataflow of ``project`` at ``endpoint``. ``read_object(gs_url)``: the bytes of a Cloud
    Storage object, or None; ``runner(job)``: performs a job, returns its counters, raises if
    it fails; ``check_callers``: check identities (see the module). ``calls``: the methods
    called, in order; ``jobs``: by id."""

    def __init__(
        self,
        project: projects.FakeProject,
        read_object: Callable[[str], bytes | None],
        runner: Callable[[Job], Counters],
        check_callers: bool = False,
    ):
        self.project, self.read_object, self.runner = project, read_object, runner
        self.check_callers = check_callers
        self.calls: list[str] = []
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._running: list[threading.Thread] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        serving = {"poll_interval": 0.05}  # seconds: how soon stop() stops it
        threading.Thread(target=self._server.serve_forever, kwargs=serving, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/"

    def stop(self) -> None:
        """Stop serving, and wait for the jobs still running."""
        self._server.shutdown()
        self._server.server_close()
        for thread in self._running:
            thread.join()

    # Requests

    def handle(self, verb: str, path: str, body: bytes, authorization: str | None):
        """(HTTP status, JSON answer) of a request."""
        try:
            method, where = self._route(verb, path)
            self.calls.append(method)
            self.project.require(SERVICE)
            member = self._caller(authorization)
            if where["project"] not in (self.project.project_id, self.project.number):
                raise Fault(grpc.StatusCode.PERMISSION_DENIED, f"no access to {where['project']}")
            if member and not self.project.allows(member, PERMISSIONS[method], self.project.name):
                raise Broken(
                    RULES["permission"],
                    f"Permission '{PERMISSIONS[method]}' denied to {member} on "
                    f"{self.project.name};",
                    grpc.StatusCode.PERMISSION_DENIED,
                )
            if method == "flexTemplates.launch":
                return 200, self.launch(where["location"], body, member)
            job = self._job(where["location"], where["job"])
            answers = {
                "jobs.get": job.resource,
                "jobs.getMetrics": job.metrics,
                "jobs.messages.list": lambda: {"jobMessages": list(job.messages)},
            }
            return 200, answers[method]()
        except Fault as fault:
            status = STATUS.get(fault.code, 500)
            return status, {
                "error": {"code": status, "message": fault.message, "status": fault.code.name}
            }

    def _route(self, verb: str, path: str) -> tuple[str, dict[str, str]]:
        path = unquote(path)
        for route_verb, pattern, method in ROUTES:
            found = pattern.fullmatch(path)
            if found and verb == route_verb:
                return method, found.groupdict()
        raise Fault(grpc.StatusCode.NOT_FOUND, f"the fake serves no {verb} {path}")

    def _caller(self, authorization: str | None) -> str | None:
        """The calling member, when callers are checked."""
        if not self.check_callers:
            return None
        member = projects.caller(authorization)
        if member is None:
            raise Fault(
                grpc.StatusCode.UNAUTHENTICATED,
                "Request had invalid authentication credentials. Expected OAuth 2 access token "
                f"(the fakes take {projects.TOKEN_PREFIX}EMAIL).",
            )
        return member

    def _job(self, location: str, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None or job.location != location:
            raise Fault(grpc.StatusCode.NOT_FOUND, f"Requested job with id {job_id} not found.")
        return job

    def launch(self, location: str, body: bytes, member: str | None) -> dict:
        """``flexTemplates.launch``: the job, queued and started (nothing with validateOnly)."""
        request = _request(body, "LaunchFlexTemplateRequest")
        launch = request.get("launchParameter", {})
        name = launch.get("jobName", "")
        if not JOB_NAME.fullmatch(name):
            raise Broken(RULES["job-name"], f"Invalid job name {name!r};")
        spec = self._template(launch)
        parameters, options = _parameters(spec, launch.get("parameters", {}))
        environment = launch.get("environment", {})
        account = environment.get("serviceAccountEmail") or projects.AGENTS[
            "compute.googleapis.com"
        ].format(number=self.project.number)
        if member and not (
            self.project.account_usable(account)
            and self.project.allows(
                member,
                "iam.serviceAccounts.actAs",
                f"{self.project.name}/serviceAccounts/{account}",
            )
        ):
            raise Broken(
                RULES["act-as"],
                f"Current user cannot act as service account {account};",
                grpc.StatusCode.PERMISSION_DENIED,
            )
        if request.get("validateOnly"):
            return {}
        with self._lock:
            if any(
                j.active and (j.name, j.location) == (name, location) for j in self.jobs.values()
            ):
                raise Broken(
                    RULES["active-name"],
                    f"There is already an active job named {name}. If you want to submit a "
                    "second job, try again by setting a different name.",
                    grpc.StatusCode.ALREADY_EXISTS,
                )
            started = datetime.datetime.now(datetime.UTC)
            job = Job(
                id=f"{started:%Y-%m-%d_%H_%M_%S}-{next(self._ids)}",
                project_id=self.project.project_id,
                location=location,
                name=name,
                template=launch["containerSpecGcsPath"],
                spec=spec,
                parameters=parameters,
                options=options,
                environment=environment,
                worker_image=environment.get("sdkContainerImage")
                or options.get("sdk_container_image"),
                worker_account=account,
            )
            self.jobs[job.id] = job
            answer = {"job": job.resource()}  # as launched: queued
            thread = threading.Thread(target=self._run, args=(job,), daemon=True)
            self._running.append(thread)
        thread.start()
        return answer

    def _template(self, launch: dict) -> dict:
        """The ContainerSpec the launch names."""
        if "containerSpec" in launch:
            raise Fault(
                grpc.StatusCode.UNIMPLEMENTED,
                "the fake launches templates from a file (containerSpecGcsPath) only",
            )
        path = launch.get("containerSpecGcsPath", "")
        data = self.read_object(path) if path.startswith("gs://") else None
        if data is None:
            raise Broken(RULES["template-file"], f"Unable to open template file: {path!r};")
        try:
            spec = json.loads(data)
        except ValueError:
            spec = None
        found = discovery.problems(spec, API, "ContainerSpec")
        if not found and not (spec.get("image") and spec.get("sdkInfo", {}).get("language")):
            found = ["a flex template names its image and sdkInfo.language"]
        if found:
            raise Broken(
                RULES["template-file"], f"Invalid template file {path}: {'; '.join(found)};"
            )
        return spec

    # Jobs

    def _run(self, job: Job) -> None:
        """The job's life: the launcher, the workers, the runner."""
        try:
            self._pull(job, job.spec["image"], "launcher")
            self._state(job, RUNNING)
            self._start_workers(job)
            counters = self.runner(job)
        except Broken as broken:
            job.say(broken.message, "JOB_MESSAGE_ERROR")
            self._state(job, FAILED)
        except Exception as error:  # the runner's failure is the job's
            job.say(f"Workflow failed. Causes: {error}", "JOB_MESSAGE_ERROR")
            self._state(job, FAILED)
        else:
            job.counters = counters
            self._state(job, DONE)

    def _state(self, job: Job, state: str) -> None:
        job.state, job.state_time = state, _now()
        job.say(f"Job state set to {state}.")

    def _start_workers(self, job: Job) -> None:
        worker = f"serviceAccount:{job.worker_account}"
        if self.check_callers and not self.project.allows(
            worker, "dataflow.workItems.lease", self.project.name
        ):
            raise Broken(
                RULES["worker-account"],
                f"Workflow failed: the workers' service account {job.worker_account} lacks "
                f"dataflow.workItems.lease on {self.project.name};",
            )
        if job.worker_image is None:
            if job.spec["sdkInfo"]["language"] == "PYTHON":
                raise Broken(
                    RULES["worker-image"],
                    "Workflow failed: the workers run the stock Apache Beam SDK container, "
                    f"which lacks the code of the template's image {job.spec['image']} (name "
                    "it as environment.sdkContainerImage or the sdk_container_image option);",
                )
            return
        self._pull(job, job.worker_image, "worker")

    def _pull(self, job: Job, image: str, who: str) -> None:
        """The launcher or the workers pull ``image`` as the job's worker account."""
        if image not in self.project.images:
            raise Broken(
                RULES["image-pull"],
                f"Failed to pull the {who} image {image}: not found (not pushed to the "
                "project's registry);",
            )
        where = platform.repository_of(image)
        permission = "artifactregistry.repositories.downloadArtifacts"
        worker = f"serviceAccount:{job.worker_account}"
        if self.check_callers and not self.project.allows(worker, permission, where):
            raise Broken(
                RULES["image-pull"],
                f"Failed to pull the {who} image {image}: {job.worker_account} lacks "
                f"{permission} on {where};",
            )


def _request(body: bytes, schema: str) -> dict:
    """A request body, checked against its schema."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        raise Broken(RULES["request"], "Invalid JSON payload received: not JSON;") from None
    found = discovery.problems(request, API, schema)
    if not found and "launchParameter" not in request:
        found = ["launchParameter is required"]
    if found:
        raise Broken(RULES["request"], f"Invalid JSON payload received: {'; '.join(found)};")
    return request


def _parameters(spec: dict, given: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The template's parameters and the pipeline options among ``given``, checked against the
    template's metadata."""
    declared = {p["name"]: p for p in spec.get("metadata", {}).get("parameters", [])}
    unknown = sorted(set(given) - set(declared) - UNDECLARED_OPTIONS)
    invalid = "The template parameters are invalid. Details:"
    if unknown:
        details = "; ".join(f"{key}: Unrecognized parameter" for key in unknown)
        raise Broken(RULES["unrecognized-parameter"], f"{invalid} {details};")
    missing = [
        key
        for key, parameter in declared.items()
        if not parameter.get("isOptional", False) and key not in given
    ]
    if missing:
        details = "; ".join(f"{key}: Missing required parameter" for key in missing)
        raise Broken(RULES["required-parameter"], f"{invalid} {details};")
    for key, value in given.items():
        for regex in declared.get(key, {}).get("regexes", []):
            if not re.fullmatch(regex, value):
                raise Broken(
                    RULES["parameter-regex"],
                    f"{invalid} {key}: Parameter didn't match regex '{regex}';",
                )
    parameters = {key: value for key, value in given.items() if key in declared}
    options = {key: value for key, value in given.items() if key not in declared}
    return parameters, options


def _handler(fake: FakeDataflow) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self._answer("GET")

        def do_POST(self):
            self._answer("POST")

        def _answer(self, verb: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, answer = fake.handle(
                verb, urlsplit(self.path).path, body, self.headers.get("Authorization")
            )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):
            pass

    return Handler
