"""Changes made with gcloud, where the catalog uses no client library (Cloud Build, Cloud Run
functions, Compute Engine instance groups, Composer's Airflow commands, Artifact Registry), as
``clickstream.gcp.plan`` resources of kind ``gcloud``: each a command that makes the change, a
read-only command that tells whether it is made (its exit status, and where it matters its
output compared with what the change makes), and the command that undoes it.

So the one plan holds them too: a step whose check fails is to create, one whose check prints
something else than expected is to update (its command is run again: every command here makes
its change whether or not it was made before), one whose check passes is unchanged. The shell
runs them (a command may read a value with ``$(gcloud ...)``); ``Runner`` can be replaced (the
rehearsal gives each step's documented effect on the fake project instead).
"""

import dataclasses
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from clickstream.core import shell
from clickstream.gcp import plan

KIND = "gcloud"
ROOT = Path(__file__).resolve().parents[1]  # the catalog's commands name files relative to it
# A command -> (exit status, what it printed, what it printed on standard error)
Runner = Callable[[list[str] | str], tuple[int, str, str]]


def content_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, or of a folder's files (their paths and bytes)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file != path:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class Step:
    """One change: ``command`` makes it; ``check`` (read-only; a list, or a shell line with
    pipes) exits 0 once it is made, printing ``expect`` when that is given; ``update`` brings
    it to what is expected when it is made but differs (default: ``command`` again); ``undo``
    removes it (None: nothing to remove, or it goes with what it belongs to)."""

    name: str
    command: list[str]
    check: list[str] | str
    expect: str | None = None
    undo: list[str] | None = None
    update: list[str] | None = None
    after: tuple[str, ...] = ()

    def resource(self) -> plan.Resource:
        fields = {"run": shell.line(self.command)}
        if self.expect is not None:
            fields["state"] = self.expect
        return plan.Resource(KIND, self.name, fields, after=self.after)


def line(command: list[str] | str) -> str:
    """A command as the shell line that runs it."""
    return command if isinstance(command, str) else shell.line(command)


def shell_runner(command: list[str] | str) -> tuple[int, str, str]:
    """Run a command line with bash (its ``$(...)`` read): its exit status and output."""
    done = subprocess.run(["bash", "-c", line(command)], capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


class StepError(RuntimeError):
    """A step's command failed."""


def template_file(build: list[str]) -> str:
    """The template file ``build`` (a ``gcloud dataflow flex-template build`` command) writes,
    in canonical JSON: gcloud's own ``--print-only`` output, offline, with no credentials and an
    empty configuration."""
    with tempfile.TemporaryDirectory(prefix="gcloud-config-") as config:
        env = {**os.environ, "CLOUDSDK_CONFIG": config, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
        try:
            done = subprocess.run(
                [*build, "--print-only"], cwd=ROOT, env=env, capture_output=True, text=True
            )
        except FileNotFoundError:
            raise StepError(
                "gcloud is missing: template files are written by `gcloud dataflow "
                "flex-template build` (install the Google Cloud CLI)"
            ) from None
    if done.returncode:
        raise StepError(f"{line(build[:4])} failed: {done.stderr.strip()[-500:]}")
    printed = done.stdout[done.stdout.index("{") :]
    return json.dumps(json.loads(printed), sort_keys=True)


class Steps:
    """The adapter of ``gcloud`` resources, for ``steps`` (by name), with ``runner``."""

    def __init__(self, steps: list[Step], runner: Runner = shell_runner):
        self.steps = {step.name: step for step in steps}
        self.runner = runner

    def read(self, resource: plan.Resource) -> dict | None:
        step = self.steps[resource.name]
        status, output, _ = self.runner(step.check)  # a failed check: not made (yet)
        if status:
            return None
        found = {"run": resource.fields["run"]}
        if step.expect is not None:
            found["state"] = output.strip()
        return found

    def _run(self, command: list[str] | str) -> None:
        status, _, errors = self.runner(command)
        if status:
            said = errors.strip().splitlines()[-1:] or ["(nothing on stderr)"]
            raise StepError(f"this command failed (exit {status}): {line(command)}: {said[0]}")

    def create(self, resource: plan.Resource) -> None:
        self._run(self.steps[resource.name].command)

    def update(self, resource: plan.Resource, current: dict, fields: tuple[str, ...]) -> None:
        step = self.steps[resource.name]
        self._run(step.update or step.command)

    def delete(self, resource: plan.Resource, current: dict) -> None:
        undo = self.steps[resource.name].undo
        if undo:
            self._run(undo)
