"""Every gcloud command the catalog prints, runs or documents is one gcloud accepts: gcloud parses
a command before it authenticates, so offline, with an empty configuration, a well-formed command
stops at "You do not currently have an active account selected" and a wrong flag or value at
"unrecognized arguments" or "invalid ... value". Slow (about a second per command): its own
tier, `gcloud`."""

import concurrent.futures
import os
import re
import subprocess

from conftest import ROOT

from clickstream import pipelines
from clickstream.core import shell, templates
from clickstream.deploy import gcloud as steps
from clickstream.deploy import settings
from clickstream.project import areas

WHERE = ("my-project", "europe-west1", "my-bucket", "clickstream", "latest")
NOT_SIGNED_IN = "You do not currently have an active account selected"


def catalog_commands(build_dir) -> list[str]:
    """Every gcloud line the catalog runs or prints: each step of the whole project's plan (its
    command, check, update and undo), the template commands, and their substitutions."""
    lines = [shell.line(templates.package_upload_command("/etc/hostname", "my-bucket"))]
    for name in pipelines.names():
        lines += [shell.line(c) for c in templates.build_commands(name, *WHERE)]
        example = templates.example_parameters(name)
        lines.append(shell.line(templates.run_command(name, *WHERE, example)))
    chosen = settings.Settings("my-project", "europe-west1", "oncall@example.com")
    for step in areas.declare(chosen, "123456789012", build_dir).steps:
        for command in (step.command, step.check, step.update, step.undo):
            if command:
                lines.append(steps.line(command).split(" | ")[0])  # the pipe's gcloud part
    return [line for line in lines if line.startswith("gcloud ")]


def documented_commands() -> list[str]:
    """gcloud lines of the README's and the docs' code blocks (placeholders in capitals made
    concrete)."""
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = re.sub(r"\\\n\s*", " ", page.read_text())  # continued lines as one
        for line in text.splitlines():
            if line.startswith("gcloud "):
                concrete = line.replace("PROJECT", "my-project").replace("REGION", "europe-west1")
                concrete = concrete.replace("BUCKET", "my-bucket").replace("TAG", "latest")
                found.append(concrete)
    return found


def parses(line: str, config_dir) -> str:
    """gcloud's verdict on ``line``: its error output."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(config_dir),
        "CLOUDSDK_CONFIG": str(config_dir),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
    }
    done = subprocess.run(
        ["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    return done.stderr


SUBSTITUTION = re.compile(r"\$\((gcloud [^()]*(?:\([^()]*\)[^()]*)*)\)")


def _value(substitution: re.Match) -> str:
    """What a substitution gives: a Cloud Storage prefix for the DAGs folder, else a word."""
    return (
        "gs://clickstream-value/dags"
        if "dagGcsPrefix" in substitution.group(1)
        else ("clickstream-value")
    )


def checked_separately(lines: list[str]) -> list[str]:
    """The lines with each `$(gcloud ...)` substitution checked as a line of its own and
    replaced by a value in the outer line (a job name's `$(date ...)` is left to bash)."""
    found = []
    for line in lines:
        found += [inner.group(1) for inner in SUBSTITUTION.finditer(line)]
        found.append(SUBSTITUTION.sub(_value, line))
    return found


def test_every_printed_and_documented_gcloud_command_is_well_formed(gcloud, tmp_path):
    lines = sorted(
        set(checked_separately(catalog_commands(tmp_path / "build") + documented_commands()))
    )
    assert len(lines) > 20
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        verdicts = dict(zip(lines, pool.map(lambda line: parses(line, gcloud), lines), strict=True))
    refused = {
        line: verdict.strip().splitlines()[0] if verdict.strip() else "(no error)"
        for line, verdict in verdicts.items()
        if NOT_SIGNED_IN not in verdict
        or re.search(r"unrecognized arguments|invalid .* value", verdict)
    }
    assert not refused, "\n".join(f"{line}\n  -> {why}" for line, why in refused.items())
