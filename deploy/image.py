"""The flex-template image without Docker: its build context, read from ``templates/Dockerfile``;
its Python environment, built the way the Dockerfile builds it; and its launcher, run the way
Dataflow's flex-template launcher runs it (the launcher twin).

Docker cannot run on the project's machines, so this is how the image's contents are tested: a
fresh virtual environment gets exactly the files the Dockerfile copies, installed with the same
commands, and nothing else (no source tree, no development tools).
"""

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from clickstream.deploy import gcloud

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "templates" / "Dockerfile"


@dataclasses.dataclass(frozen=True)
class Dockerfile:
    """What the catalog's Dockerfile says about the final image."""

    bases: tuple[str, ...]  # FROM images
    copies: tuple[tuple[str, str], ...]  # (source in the build context, destination)
    env: dict[str, str]  # ENV, with ${ARG} references left as written
    workdir: str
    runs: tuple[str, ...]  # RUN commands of the final stage

    @property
    def launcher_file(self) -> str:
        """The launcher's entry file, relative to the work directory."""
        return self.env["FLEX_TEMPLATE_PYTHON_PY_FILE"].removeprefix(self.workdir + "/")


def read(path: Path = DOCKERFILE) -> Dockerfile:
    """Parse the Dockerfile's FROM, COPY (from the build context), ENV, WORKDIR and RUN lines of
    its final stage."""
    bases: list[str] = []
    copies: list[tuple[str, str]] = []
    runs: list[str] = []
    env: dict[str, str] = {}
    workdir = "/"
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        instruction, arguments = words[0].upper(), words[1:]
        if instruction == "FROM":
            bases.append(arguments[0])
            copies, runs = [], []  # a new stage
        elif instruction == "COPY" and not arguments[0].startswith("--from"):
            *sources, destination = arguments
            copies += [(source, _destination(source, destination, workdir)) for source in sources]
        elif instruction == "ENV":
            env.update(dict(argument.split("=", 1) for argument in arguments))
        elif instruction == "WORKDIR":
            workdir = arguments[0]
        elif instruction == "RUN":
            runs.append(" ".join(arguments))
    return Dockerfile(tuple(bases), tuple(copies), env, workdir, tuple(runs))


def _destination(source: str, destination: str, workdir: str) -> str:
    """Where COPY puts ``source``, relative to the work directory."""
    if destination.endswith("/") or destination in (".", "./"):
        destination = destination.rstrip("/") + "/" + Path(source).name
    path = Path(workdir) / destination
    return str(path.relative_to(workdir))


def stage_context(destination: Path, dockerfile: Dockerfile | None = None) -> Path:
    """Copy exactly what the Dockerfile copies from the build context (the repository root) to
    ``destination``, at the paths the image's work directory gets; returns ``destination``."""
    dockerfile = dockerfile or read()
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    for source, target in dockerfile.copies:
        origin, copy = ROOT / source, destination / target
        if not origin.exists():
            raise FileNotFoundError(f"templates/Dockerfile copies {source}, which does not exist")
        copy.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, copy, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, copy)
    return destination


@dataclasses.dataclass
class Environment:
    """The image's Python environment, built from a staged context."""

    venv: Path
    context: Path
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(
            f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stdout[-3000:]}"
            f"{done.stderr[-3000:]}"
        )


def build_environment(
    workspace: Path,
    dockerfile: Dockerfile | None = None,
    reuse: bool = False,
    runs: int | None = None,
) -> Environment:
    """Stage the build context under ``workspace`` and build the image's environment there: a
    fresh virtual environment, then the Dockerfile's RUN commands in order (``pip install``
    of the pinned requirements, of the catalog with ``--no-deps``, ``pip check``), with pip's
    cache allowed (``--no-cache-dir`` only keeps the image small). Records how long each step
    took. With ``reuse``, an environment built from the same context is kept as it is; with
    ``runs``, only the first that many RUN commands run (1: the pinned requirements alone,
    without the catalog)."""
    dockerfile, workspace = dockerfile or read(), workspace.resolve()
    context = stage_context(workspace / "template", dockerfile)
    environment = Environment(workspace / "venv", context)
    stamp, digest = workspace / "venv.digest", f"{gcloud.content_digest(context)}:{runs}"
    if reuse and stamp.is_file() and stamp.read_text() == digest and environment.python.exists():
        return environment
    stamp.unlink(missing_ok=True)
    started = time.perf_counter()
    shutil.rmtree(environment.venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(environment.venv)], check=True)
    environment.seconds["venv"] = time.perf_counter() - started
    env = {
        "PATH": f"{environment.venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "HOME": os.environ.get("HOME", str(workspace)),
    }
    for index, command in enumerate(dockerfile.runs[:runs], start=1):
        started = time.perf_counter()
        _run(["bash", "-c", command.replace("--no-cache-dir ", "")], context, env)
        environment.seconds[f"RUN {index}: {command}"] = time.perf_counter() - started
    stamp.write_text(digest)
    return environment


def launcher_environment(
    environment: Environment, pipeline: str, dockerfile: Dockerfile | None = None
) -> dict[str, str]:
    """The variables the image sets (ENV), with ``${PIPELINE}`` (the build argument) filled in
    and the launcher file where the staged context has it."""
    dockerfile = dockerfile or read()
    env = {key: value.replace("${PIPELINE}", pipeline) for key, value in dockerfile.env.items()}
    env["FLEX_TEMPLATE_PYTHON_PY_FILE"] = str(environment.context / dockerfile.launcher_file)
    return env


def build_package(workspace: Path, dockerfile: Dockerfile | None = None) -> Path:
    """The catalog's source distribution built from the image's build context (so it holds what
    the image installs, and no more): what the job builder's ``packages`` installs."""
    workspace = workspace.resolve()
    context = stage_context(workspace / "package", dockerfile)
    dist = workspace / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(dist)!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=context, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"building the package failed:\n{done.stderr[-3000:]}")
    return dist / done.stdout.strip().splitlines()[-1]


BUILT = re.compile(r"built pipeline (\S+) in ([0-9.]+) s")  # logged by catalog.launch


@dataclasses.dataclass(frozen=True)
class Launch:
    """A run of the launcher: its exit code, its output, and how long it took."""

    returncode: int
    output: str
    seconds: float  # from start to exit
    startup_seconds: float | None  # from start until the pipeline was built and submitted


def launch(
    environment: Environment,
    pipeline: str,
    parameters: dict[str, str],
    beam_args: list[str],
    extra_env: dict[str, str],
) -> Launch:
    """Run the image's launcher as Dataflow's flex-template launcher runs it: ``python
    FLEX_TEMPLATE_PYTHON_PY_FILE --name=value ...`` for every parameter (the caller has checked
    them and filled in the metadata's defaults), then the Beam options, with the image's ENV
    and ``extra_env`` (e.g. the emulators' hosts) and nothing of this process's environment
    but PATH and HOME."""
    env = {
        "PATH": f"{environment.venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", "/"),
        **launcher_environment(environment, pipeline),
        **extra_env,
    }
    command = [
        str(environment.python),
        env["FLEX_TEMPLATE_PYTHON_PY_FILE"],
        *(f"--{key}={value}" for key, value in parameters.items()),
        *beam_args,
    ]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=environment.context, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    output = done.stdout + done.stderr
    built = BUILT.search(output)
    return Launch(done.returncode, output, seconds, float(built.group(2)) if built else None)
