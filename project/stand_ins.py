"""What the gcloud steps do, on the fake project: a ``gcloud`` on the rehearsal's PATH (a shim
that hands its arguments to ``GcloudStandIn``), so the plan runs and checks its steps with the
same shell lines as on Google Cloud, and each command has the effect Google documents for it,
on the fakes and the local stack:

=====================================  ==================================================
gcloud ...                             stands in
=====================================  ==================================================
storage cp, cat, rm, objects describe  the same, through the Cloud Storage fake
builds submit (an image)               the image pushed to the fake Artifact Registry; its
                                       contents are proven from the same build context by
                                       tests/test_image.py
artifacts docker images describe       whether the image was pushed
dataflow flex-template build           gcloud's own ``--print-only``, written to the bucket
functions deploy, describe, delete     the function served by the Functions Framework on
                                       loopback as a Cloud Run service of the fake project;
                                       an event trigger registered with the fake Eventarc
compute firewall-rules, health-checks, recorded; the managed instance group runs the pull
instance-templates, instance-groups    subscriber as the startup script would, once
composer environments ...              the environment's settings, DAGs folder (in a
                                       bucket, as Composer's) and Airflow users, which the
                                       local Airflow runs from
=====================================  ==================================================

Where the stand-in differs from Google Cloud it says so in the step's effect (``notes``).
"""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from clickstream.fakes import eventarc, platform
from clickstream.fakes import project as projects
from clickstream.fakes.rules import Broken

SHIM = """#!{python}
import json, sys, urllib.request
request = urllib.request.Request({url!r}, data=json.dumps(sys.argv[1:]).encode())
answer = json.load(urllib.request.urlopen(request, timeout=600))
sys.stdout.write(answer["stdout"])
sys.stderr.write(answer["stderr"])
sys.exit(answer["status"])
"""


class StandInError(Exception):
    """A command the stand-in refuses (as gcloud would), with its message."""


def _flags(words: list[str]) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Positional words, ``--flag=value`` flags (each a list of values) and what follows
    ``--``."""
    positional: list[str] = []
    flags: dict[str, list[str]] = {}
    rest: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word == "--":
            rest = words[index + 1 :]
            break
        if word.startswith("--"):
            key, equals, value = word[2:].partition("=")
            if not equals and index + 1 < len(words) and not words[index + 1].startswith("--"):
                boolean = key in ("gen2", "retry", "quiet", "trigger-http", "shielded-secure-boot")
                if not boolean and not key.startswith("no-"):
                    value = words[index + 1]
                    index += 1
            flags.setdefault(key, []).append(value)
        else:
            positional.append(word)
        index += 1
    return positional, flags, rest


@dataclasses.dataclass
class Function:
    """A deployed function: its process, where it serves, its source digest."""

    name: str
    url: str
    process: subprocess.Popen
    environment: dict[str, str]
    trigger: dict | None  # for an event trigger: bucket, type, service account


@dataclasses.dataclass
class Composer:
    """A Composer environment's state as gcloud sets it."""

    name: str
    service_account: str
    bucket: str
    variables: dict[str, str] = dataclasses.field(default_factory=dict)
    packages: dict[str, str] = dataclasses.field(default_factory=dict)
    roles: dict[str, set[str]] = dataclasses.field(default_factory=dict)  # email -> roles
    airflow_uri: str = ""


class GcloudStandIn:
    """The commands of the catalog's gcloud steps, on ``project`` and the Cloud Storage fake at
    ``storage_url``. ``start_function(name, source, entry_point, kind, environment) -> url``
    and ``stop_function``, ``start_pull`` and ``stop_pull`` are the rehearsal's (they start
    local processes); ``work`` is a folder of its own."""

    def __init__(
        self,
        project: projects.FakeProject,
        storage_url: str,
        work: Path,
        start_function: Callable[..., tuple[str, subprocess.Popen]],
        start_pull: Callable[[dict[str, str]], subprocess.Popen],
        triggers: eventarc.FakeEventarc,
    ):
        self.project, self.work, self.triggers = project, work, triggers
        self.airflow_uri = ""  # where the local Airflow of a Composer environment will serve
        self.gcs = storage.Client(
            project=project.project_id,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": storage_url},
        )
        self.start_function, self.start_pull = start_function, start_pull
        self.real_gcloud = shutil.which("gcloud")
        self.functions: dict[str, Function] = {}
        self.compute: dict[str, dict] = {}  # "firewall NAME", "template NAME", ... -> settings
        self.group: dict | None = None
        self.composer: Composer | None = None
        self.commands: list[list[str]] = []  # every command run, in order
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.bin = work / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        shim = self.bin / "gcloud"
        url = f"http://127.0.0.1:{self.server.server_port}/"
        shim.write_text(SHIM.format(python=sys.executable, url=url))
        shim.chmod(0o755)

    def _handler(self):
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                argv = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, out, err = stand_in.run(argv)
                body = json.dumps({"status": status, "stdout": out, "stderr": err}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        """One gcloud command: (exit status, standard output, standard error)."""
        self.commands.append(argv)
        positional, flags, rest = _flags(argv)
        try:
            return 0, self._dispatch(positional, flags, rest), ""
        except StandInError as error:
            return 1, "", f"ERROR: (gcloud stand-in) {error}\n"
        except Broken as broken:
            return 1, "", f"ERROR: (gcloud) {broken.message}\n"

    def _dispatch(self, words: list[str], flags: dict, rest: list[str]) -> str:
        group = tuple(words[:2])
        if words[:1] == ["storage"]:
            return self._storage(words[1:], flags)
        if group == ("builds", "submit"):
            return self._build(flags)
        if words[:4] == ["artifacts", "docker", "images", "describe"]:
            if words[4] not in self.project.images:
                raise StandInError(f"image {words[4]} not found")
            return f"image_summary:\n  fully_qualified_digest: {words[4]}\n"
        if words[:3] == ["dataflow", "flex-template", "build"]:
            return self._template_file(words, flags)
        if words[:1] == ["functions"]:
            return self._functions(words[1], words[2], flags)
        if words[:1] == ["compute"]:
            return self._compute(words[1:], flags)
        if words[:2] == ["composer", "environments"]:
            return self._composer(words[2:], flags, rest)
        raise StandInError(f"no stand-in for gcloud {' '.join(words)}")

    # Cloud Storage

    def _blob(self, url: str) -> storage.Blob:
        if not url.startswith("gs://"):
            raise StandInError(f"{url} is not a Cloud Storage URL (gs://...)")
        bucket, _, name = url.removeprefix("gs://").partition("/")
        return self.gcs.bucket(bucket).blob(name)

    def _storage(self, words: list[str], flags: dict) -> str:
        if words[0] == "cp":
            source, target = words[1], words[2]
            if target.endswith("/"):
                target += Path(source).name
            self._require_bucket(target)
            self._blob(target).upload_from_filename(source)
            return ""
        blob = self._blob(words[-1])
        if words[0] == "rm":
            blob.delete()
            return ""
        if not blob.exists():
            raise StandInError(f"{words[-1]} not found")
        if words[0] == "cat":
            return blob.download_as_text()
        return (
            f"name: {blob.name}\n" if flags.get("format") != ["value(name)"] else f"{blob.name}\n"
        )

    def _require_bucket(self, url: str) -> None:
        bucket = url.removeprefix("gs://").split("/", 1)[0]
        if self.gcs.lookup_bucket(bucket) is None:
            raise StandInError(f"bucket {bucket} does not exist")

    # Images and template files

    def _build(self, flags: dict) -> str:
        self.project.require("cloudbuild.googleapis.com")
        settings = dict(pair.split("=", 1) for pair in flags["substitutions"][0].split(","))
        image = settings["_IMAGE"]
        if platform.repository_of(image) not in self.project.repositories:
            raise StandInError(f"repository of {image} does not exist (push refused)")
        self.project.images.add(image)
        return ""

    def _template_file(self, words: list[str], flags: dict) -> str:
        if self.real_gcloud is None:
            raise StandInError("gcloud is not installed: it writes the template file")
        config = tempfile.mkdtemp(prefix="gcloud-config-")
        env = {**os.environ, "CLOUDSDK_CONFIG": config, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
        printing = "print-only" in flags
        flags = {key: values for key, values in flags.items() if key != "print-only"}
        command = [self.real_gcloud, *words, *_unflag(flags), "--print-only"]
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode:
            raise StandInError(done.stderr.strip()[-500:])
        if printing:
            return done.stdout
        self._require_bucket(words[3])
        self._blob(words[3]).upload_from_string(done.stdout[done.stdout.index("{") :])
        return ""

    # Cloud Run functions

    def _service(self, name: str, flags: dict) -> str:
        region = flags["region"][0]
        return f"projects/{self.project.project_id}/locations/{region}/services/{name}"

    def _functions(self, verb: str, name: str, flags: dict) -> str:
        service = self._service(name, flags)
        if verb == "describe":
            if name not in self.functions:
                raise StandInError(f"function {name} not found")
            field = flags.get("format", [""])[0]
            variable = re.fullmatch(r"value\(serviceConfig\.environmentVariables\.(\w+)\)", field)
            return (
                f"{self.functions[name].environment.get(variable.group(1), '')}\n"
                if variable
                else ""
            )
        if verb == "delete":
            found = self.functions.pop(name, None)
            if found:
                self.triggers.remove(found.url)
                found.process.terminate()
                found.process.wait(15)
            self.project.run_services.pop(service, None)
            return ""
        if verb != "deploy":
            raise StandInError(f"no stand-in for gcloud functions {verb}")
        for api in (
            "cloudfunctions.googleapis.com",
            "run.googleapis.com",
            "cloudbuild.googleapis.com",
        ):
            self.project.require(api)
        account = flags["service-account"][0]
        if not self.project.account_usable(account):
            raise StandInError(f"service account {account} does not exist")
        environment = dict(
            pair.split("=", 1) for pair in flags.get("set-env-vars", [""])[0].split(",") if pair
        )
        filters = dict(f.split("=", 1) for f in flags.get("trigger-event-filters", []))
        trigger = None
        if filters:
            self.project.require("eventarc.googleapis.com")
            trigger = {**filters, "service_account": flags["trigger-service-account"][0]}
        if name in self.functions:
            self._functions("delete", name, flags)
        kind = "cloudevent" if trigger else "http"
        url, process = self.start_function(
            name, Path(flags["source"][0]), flags["entry-point"][0], kind, environment
        )
        self.functions[name] = Function(name, url, process, environment, trigger)
        self.project.run_services[service] = url
        if trigger:
            self.triggers.add(
                eventarc.Trigger(trigger["bucket"], url, service, trigger["service_account"])
            )
        return ""

    # Compute Engine (the pull subscriber's group)

    def _compute(self, words: list[str], flags: dict) -> str:
        self.project.require("compute.googleapis.com")
        if words[0] in ("firewall-rules", "health-checks", "instance-templates"):
            verb = words[1]
            name = words[3] if words[:3] == ["health-checks", "create", "http"] else words[2]
            key = f"{words[0]} {name}"
            if verb == "create":
                self.compute[key] = {k: v[-1] for k, v in flags.items()}
            elif verb == "delete":
                self.compute.pop(key, None)
            elif key not in self.compute:
                raise StandInError(f"{key} not found")
            return ""
        verb, name = words[2], words[3]
        if verb == "create":
            template = self.compute.get(f"instance-templates {flags['template'][0]}")
            if template is None:
                raise StandInError(f"instance template {flags['template'][0]} not found")
            self.group = {"name": name, "template": flags["template"][0]}
            self.group["process"] = self.start_pull(_metadata(template))
            return ""
        if self.group is None:
            raise StandInError(f"instance group {name} not found")
        if verb == "describe":
            field = flags.get("format", [""])[0]
            if "instanceTemplate" in field:
                return f"{self.group['template']}\n"
            return f"{self.group.get('max_replicas', '')}\n"
        if verb == "set-autoscaling":
            self.group["max_replicas"] = flags["max-num-replicas"][0]
            return ""
        if verb == "rolling-action":
            template = flags["version"][0].removeprefix("template=")
            self.group["process"].terminate()
            self.group["process"].wait(30)
            self.group["template"] = template
            self.group["process"] = self.start_pull(
                _metadata(self.compute[f"instance-templates {template}"])
            )
            return ""
        if verb == "delete":
            self.group["process"].terminate()
            self.group["process"].wait(30)
            self.group = None
            return ""
        raise StandInError(f"no stand-in for gcloud compute instance-groups managed {verb}")

    # Cloud Composer

    def _composer(self, words: list[str], flags: dict, rest: list[str]) -> str:
        self.project.require("composer.googleapis.com")
        verb, name = words[0], words[1] if len(words) > 1 else ""
        if verb == "create":
            account = flags["service-account"][0]
            if not self.project.account_usable(account):
                raise StandInError(f"service account {account} does not exist")
            if not self.project.allows(
                f"serviceAccount:{account}", "composer.environments.get", self.project.name
            ):
                raise StandInError(f"{account} lacks roles/composer.worker (Composer requires it)")
            bucket = f"{self.project.project_id}-composer-{name}"
            self.gcs.create_bucket(bucket)
            self.composer = Composer(name, account, bucket, airflow_uri=self.airflow_uri)
            return ""
        if verb == "storage":  # storage dags import --environment=E --source=PATH
            composer = self._environment(flags["environment"][0])
            source = Path(flags["source"][0])
            files = (
                [source]
                if source.is_file()
                else sorted(p for p in source.rglob("*") if p.is_file())
            )
            for file in files:
                relative = (
                    file.name if file == source else f"{source.name}/{file.relative_to(source)}"
                )
                self.gcs.bucket(composer.bucket).blob(f"dags/{relative}").upload_from_filename(
                    str(file)
                )
            return ""
        composer = self._environment(name)
        if verb == "describe":
            field = flags.get("format", [""])[0]
            values = {
                "value(state)": "RUNNING",
                "value(config.airflowUri)": composer.airflow_uri,
                "value(config.dagGcsPrefix)": f"gs://{composer.bucket}/dags",
                "value(config.softwareConfig)": json.dumps({"pypiPackages": composer.packages}),
            }
            return f"{values.get(field, '')}\n"
        if verb == "update":
            for package in flags.get("update-pypi-package", []):
                requirement, _, version = package.partition("==")
                composer.packages[requirement] = f"=={version}"
            return ""
        if verb == "delete":
            self.composer = None
            return ""
        if verb == "run":  # run ENV --location=L COMMAND... -- ARGS
            return self._airflow(composer, words[2:], rest)
        raise StandInError(f"no stand-in for gcloud composer environments {verb}")

    def _environment(self, name: str) -> Composer:
        if self.composer is None or self.composer.name != name:
            raise StandInError(f"Composer environment {name} not found")
        return self.composer

    @staticmethod
    def _airflow(composer: Composer, command: list[str], rest: list[str]) -> str:
        if command == ["variables", "set"]:
            composer.variables[rest[0]] = rest[1]
            return ""
        if command == ["variables", "get"]:
            if rest[0] not in composer.variables:
                raise StandInError(f"Variable {rest[0]} does not exist")
            return f"{composer.variables[rest[0]]}\n"
        if command == ["users", "add-role"]:
            email, role = rest[rest.index("-e") + 1], rest[rest.index("-r") + 1]
            composer.roles.setdefault(email, set()).add(role)
            return ""
        if command == ["users", "list"]:
            return "".join(f"{e} | {' '.join(sorted(r))}\n" for e, r in composer.roles.items())
        raise StandInError(f"no stand-in for airflow {' '.join(command)}")

    def stop(self) -> None:
        for function in self.functions.values():
            function.process.terminate()
        if self.group:
            self.group["process"].terminate()
        self.server.shutdown()


def _unflag(flags: dict[str, list[str]]) -> list[str]:
    return [
        f"--{key}={value}" if value else f"--{key}"
        for key, values in flags.items()
        for value in values
    ]


def _metadata(template: dict) -> dict[str, str]:
    """An instance template's ``--metadata`` as a dict."""
    return dict(pair.split("=", 1) for pair in template.get("metadata", "").split(",") if pair)
