"""The offline local stack: the Pub/Sub, BigQuery and Cloud Storage emulators on 127.0.0.1.

``up`` starts them detached (they outlive the calling process), ``down`` stops them, ``status``
inspects them. Pid files and one log per emulator live in the state directory. Settings come from
the environment: ``CLICKSTREAM_PROJECT`` (default ``clickstream-local``),
``CLICKSTREAM_PUBSUB_PORT`` (8085), ``CLICKSTREAM_BIGQUERY_PORT`` (REST, 9050),
``CLICKSTREAM_BIGQUERY_GRPC_PORT`` (9060), ``CLICKSTREAM_STORAGE_PORT`` (9023),
``CLICKSTREAM_METADATA_PORT`` (8089, the stand-in metadata server that hands out local credentials),
``CLICKSTREAM_STATE_DIR`` (``.local-stack`` in the working directory) and
``CLICKSTREAM_PUBSUB_EMULATOR`` (path of Google's emulator script). No cloud credentials needed.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clickstream.core import names

HOST = "127.0.0.1"
PUBSUB_EMULATOR = Path(
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
)
READY_TIMEOUT = 60.0  # seconds an emulator may take until its ports answer
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
POLL_INTERVAL = 0.1
LOG_TAIL_LINES = 20
PUBSUB_HINT = (
    "install it with `gcloud components install pubsub-emulator` or the Debian package "
    "google-cloud-cli-pubsub-emulator (it needs Java), or point CLICKSTREAM_PUBSUB_EMULATOR at it"
)
SETUP_HINT = "run `make setup`"


class StackError(RuntimeError):
    """An emulator is missing, did not become ready, or its port is taken."""


@dataclass(frozen=True)
class Settings:
    project: str
    pubsub_port: int
    bigquery_port: int
    bigquery_grpc_port: int
    storage_port: int
    metadata_port: int
    state_dir: Path
    pubsub_emulator: Path


@dataclass(frozen=True)
class Emulator:
    name: str
    ports: tuple[int, ...]  # the first one is the port clients use
    command: tuple[str, ...]
    install_hint: str
    state_dir: Path
    prepare: Callable[[], None] | None = None  # runs before each start

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.log"


def settings() -> Settings:
    """The stack's settings, read from the environment (see the module docstring)."""
    env = os.environ.get
    return Settings(
        project=env("CLICKSTREAM_PROJECT", names.LOCAL_PROJECT),
        pubsub_port=int(env("CLICKSTREAM_PUBSUB_PORT", "8085")),
        bigquery_port=int(env("CLICKSTREAM_BIGQUERY_PORT", "9050")),
        bigquery_grpc_port=int(env("CLICKSTREAM_BIGQUERY_GRPC_PORT", "9060")),
        storage_port=int(env("CLICKSTREAM_STORAGE_PORT", "9023")),
        metadata_port=int(env("CLICKSTREAM_METADATA_PORT", "8089")),
        state_dir=Path(env("CLICKSTREAM_STATE_DIR", ".local-stack")).resolve(),
        pubsub_emulator=Path(env("CLICKSTREAM_PUBSUB_EMULATOR", str(PUBSUB_EMULATOR))),
    )


def emulators(s: Settings) -> list[Emulator]:
    """The three emulators with their commands; the Python ones come from this interpreter's
    environment."""
    bin_dir = Path(sys.executable).parent
    return [
        Emulator(
            "pubsub",
            (s.pubsub_port,),
            (str(s.pubsub_emulator), f"--host={HOST}", f"--port={s.pubsub_port}"),
            PUBSUB_HINT,
            s.state_dir,
        ),
        Emulator(
            "bigquery",
            (s.bigquery_port, s.bigquery_grpc_port),
            (
                *(str(bin_dir / "bqemulator"), "start", "--project", s.project),
                *("--rest-host", HOST, "--rest-port", str(s.bigquery_port)),
                *("--grpc-host", HOST, "--grpc-port", str(s.bigquery_grpc_port)),
            ),
            SETUP_HINT,
            s.state_dir,
            _install_duckdb_extensions,
        ),
        Emulator(
            "storage",
            (s.storage_port,),
            (
                *(str(bin_dir / "gcp-storage-emulator"), "start", "--host", HOST),
                *("--port", str(s.storage_port), "--in-memory"),
            ),
            SETUP_HINT,
            s.state_dir,
        ),
        Emulator(
            "metadata",
            (s.metadata_port,),
            (
                *(sys.executable, "-m", "clickstream.local.metadata_server", "--host", HOST),
                *("--port", str(s.metadata_port), "--project", s.project),
            ),
            SETUP_HINT,
            s.state_dir,
        ),
    ]


def emulator_env() -> dict[str, str]:
    """The environment variables that point Google's clients (and Beam) at the emulators."""
    s = settings()
    return {
        "PUBSUB_EMULATOR_HOST": f"{HOST}:{s.pubsub_port}",
        "BIGQUERY_EMULATOR_HOST": f"http://{HOST}:{s.bigquery_port}",
        "STORAGE_EMULATOR_HOST": f"http://{HOST}:{s.storage_port}",
        "GOOGLE_CLOUD_PROJECT": s.project,
        # Application Default Credentials from the stand-in metadata server: dummy, local only.
        "GCE_METADATA_HOST": f"{HOST}:{s.metadata_port}",
        "GCE_METADATA_IP": f"{HOST}:{s.metadata_port}",
    }


def up(dataset: str = names.DATASET) -> None:
    """Start the emulators that are not running, wait until they answer, then create the bucket
    (named after the project), the dataset and its tables. Idempotent. Also sets
    ``emulator_env()`` in ``os.environ``."""
    s = settings()
    started = [(em, *_start(em)) for em in emulators(s)]  # launch all, then wait: faster
    for em, pid, launched_at in started:
        _wait_ready(em, pid, stop_on_failure=launched_at is not None)
        if launched_at is None:
            print(f"{em.name:<8} already running on {HOST}:{em.port} (pid {pid})")
        else:
            took = time.monotonic() - launched_at
            print(f"{em.name:<8} started on {HOST}:{em.port} ({took:.1f} s, pid {pid})")
    os.environ.update(emulator_env())
    _ensure_bucket(s)
    print(f"{'storage':<8} bucket gs://{s.project} ready")
    from clickstream.gcp import bigquery_tables, views  # heavy imports, only needed here

    tables = bigquery_tables.ensure_tables(s.project, dataset)
    print(f"{'bigquery':<8} dataset {s.project}.{dataset} ready ({len(tables)} tables)")
    applied = views.apply_views(s.project, dataset)
    print(f"{'bigquery':<8} views of {s.project}.{dataset} ready ({len(applied)} views)")


def down() -> None:
    """Stop the emulators ``up`` started and remove their pid files. Idempotent."""
    for em in reversed(emulators(settings())):
        pid = _stop(em)
        print(f"{em.name:<8} stopped (pid {pid})" if pid else f"{em.name:<8} not running")


def status() -> dict[str, dict]:
    """Per emulator: ``running`` (its pid file names a live process), ``pid`` (or None),
    ``port`` and ``answers`` (all its ports accept connections)."""
    return {
        em.name: {
            "running": (pid := _running_pid(em)) is not None,
            "pid": pid,
            "port": em.port,
            "answers": all(_answers(port) for port in em.ports),
        }
        for em in emulators(settings())
    }


def print_status(rows: dict[str, dict] | None = None) -> None:
    """Print ``status()`` (or the given rows) as a small table."""
    rows = status() if rows is None else rows
    print(f"{'emulator':<10}{'running':<9}{'pid':<9}{'port':<7}answers")
    for name, row in rows.items():
        running, answers = ("yes" if row[k] else "no" for k in ("running", "answers"))
        print(f"{name:<10}{running:<9}{row['pid'] or '-':<9}{row['port']:<7}{answers}")


def _start(em: Emulator) -> tuple[int, float | None]:
    """Launch ``em`` unless it is running; its pid and launch time (None if it was running)."""
    pid = _read_pid(em)
    if pid is not None and _alive(pid):
        return pid, None
    if pid is not None:
        em.pid_file.unlink()
        print(f"{em.name:<8} removed stale pid file (pid {pid})")
    if not Path(em.command[0]).is_file():
        raise StackError(f"{em.name} emulator not found at {em.command[0]}: {em.install_hint}")
    for port in em.ports:
        if _answers(port):
            raise StackError(f"{em.name}: port {HOST}:{port} is in use by another process")
    if em.prepare:
        em.prepare()
    em.state_dir.mkdir(parents=True, exist_ok=True)
    launched_at = time.monotonic()
    with em.log_file.open("wb") as log:
        process = subprocess.Popen(
            em.command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=em.state_dir,
            start_new_session=True,  # its own process group, detached from the caller
        )
    em.pid_file.write_text(f"{process.pid}\n")
    return process.pid, launched_at


def _wait_ready(em: Emulator, pid: int, stop_on_failure: bool) -> None:
    """Poll until every port of ``em`` answers; raise (with the log's tail) if it exits or takes
    longer than ``READY_TIMEOUT``."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not all(_answers(port) for port in em.ports):
        problem = None
        if not _alive(pid):
            problem = "exited before it was ready"
        elif time.monotonic() > deadline:
            problem = f"was not ready after {READY_TIMEOUT:.0f} s"
        if problem:
            if stop_on_failure:
                _stop(em)
            raise StackError(f"{em.name} emulator {problem}; {em.log_file} ends:\n{_tail(em)}")
        time.sleep(POLL_INTERVAL)


def _stop(em: Emulator) -> int | None:
    """SIGTERM the process group of ``em``, SIGKILL it after ``STOP_TIMEOUT``; remove the pid
    file. Returns the pid that was stopped, if any."""
    pid = _running_pid(em)
    if pid is not None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)  # pid == process group id: started with start_new_session
            if _wait_exit(pid, STOP_TIMEOUT):
                break
    em.pid_file.unlink(missing_ok=True)
    return pid


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_INTERVAL)
    return True


def _read_pid(em: Emulator) -> int | None:
    try:
        return int(em.pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _running_pid(em: Emulator) -> int | None:
    pid = _read_pid(em)
    return pid if pid is not None and _alive(pid) else None


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (an exited child of ours is reaped first)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers(port: int) -> bool:
    """Whether something accepts TCP connections on ``HOST:port``."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(em: Emulator) -> str:
    try:
        lines = em.log_file.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(f"  {line[:300]}" for line in lines)


def _install_duckdb_extensions() -> None:
    """Install DuckDB's spatial and avro extensions from their packages: bqemulator loads them at
    start and would otherwise try to download them."""
    try:
        import duckdb
        import duckdb_extensions

        with duckdb.connect() as con:
            for name in ("spatial", "avro"):
                duckdb_extensions.import_extension(name, con=con)
    except ImportError as error:
        raise StackError(f"bigquery emulator: {error}; {SETUP_HINT}") from error


def _storage_client(s: Settings):
    """A Cloud Storage client for the storage emulator."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project=s.project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": f"http://{HOST}:{s.storage_port}"},
    )


def _ensure_bucket(s: Settings) -> None:
    """Create the bucket named after the project in the storage emulator, unless it exists."""
    from google.api_core.exceptions import Conflict

    with contextlib.suppress(Conflict):
        _storage_client(s).create_bucket(s.project)


def upload(paths: list[str], prefix: str = names.LANDING_PREFIX) -> list[str]:
    """Copy local files (globs allowed) into the stack's bucket under ``prefix``; their gs:// URLs.
    A path that matches nothing raises StackError."""
    import glob

    files = [name for path in paths for name in sorted(glob.glob(path))]
    missing = [path for path in paths if not glob.glob(path)]
    if missing or not files:
        raise StackError(f"no file matches {', '.join(missing) or 'the given paths'}")
    s = settings()
    bucket = _storage_client(s).bucket(s.project)
    urls = []
    for name in files:
        blob = bucket.blob(prefix + Path(name).name)
        blob.upload_from_filename(name)
        urls.append(f"gs://{s.project}/{blob.name}")
    return urls
