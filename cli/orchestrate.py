"""``clickstream orchestrate``: the orchestration of Lab Task 4 on the local stack, or its
deployment to Cloud Composer (see docs/orchestration.md)."""

import argparse
import signal
import threading
from pathlib import Path

from clickstream.cli.local import use_local_stack
from clickstream.core import names


def _local(args: argparse.Namespace) -> None:
    from clickstream.local import emulators
    from clickstream.orchestration import local_airflow

    project = use_local_stack()
    home = Path(args.home or emulators.settings().state_dir / "airflow").resolve()
    local = local_airflow.Local(project, home, args.airflow_port, args.function_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"starting Airflow in {home} (logs in {home / 'logs'})", flush=True)
    try:
        with local_airflow.running(local):
            print(
                f"Airflow      {local.airflow_url} (DAG {names.FILE_LANDED_DAG})\n"
                f"trigger      {local.function_url} (Functions Framework)\n"
                f"bridge       gs://{project} -> trigger, every "
                f"{local_airflow.bridge.POLL_SECONDS} s\n"
                "Upload a visit file (`clickstream local upload FILE`) and watch "
                "`clickstream subscribe files`; Ctrl-C stops.",
                flush=True,
            )
            stop.wait()
    except local_airflow.OrchestrationError as error:
        raise SystemExit(f"error: {error}") from None
    except KeyboardInterrupt:
        pass
    print("stopped")


def _docs(args: argparse.Namespace) -> None:
    from clickstream.orchestration import docs_page

    stale = docs_page.write(check=args.check)
    if args.check and stale:
        raise SystemExit(
            "error: docs/orchestration.md is stale; run `clickstream orchestrate docs`"
        )
    print("docs/orchestration.md " + ("is up to date" if args.check else "written"))


def register(commands) -> None:
    """Adds ``orchestrate`` and its actions to the ``clickstream`` command."""
    from clickstream.cli import project

    orchestrate = commands.add_parser(
        "orchestrate",
        help="Composer runs the batch migration on each landed file (Lab Task 4)",
        description="A visit file written under landing/ in the bucket starts one run of the "
        f"{names.FILE_LANDED_DAG} DAG (through a Cloud Run function on the bucket's "
        "finalize event), which migrates exactly that file with the batch_migration flex "
        f"template and announces it on the {names.FILES_PROCESSED_TOPIC} topic "
        "(`clickstream subscribe files` tells you).",
    )
    actions = orchestrate.add_subparsers(dest="action", required=True, metavar="ACTION")

    local = actions.add_parser(
        "local",
        help="run it all on the local stack until Ctrl-C",
        description="Starts a real Airflow (api-server, scheduler, dag-processor from "
        ".venv-airflow: `make airflow`) on the staged DAGs folder, the trigger function "
        "(Functions Framework) and the bridge that turns new objects in the local bucket into "
        "finalize events; Dataflow is stood in for by `clickstream template run` with the same "
        "launch request. Needs `clickstream local up`.",
    )
    local.add_argument("--airflow-port", type=int, default=8090)
    local.add_argument("--function-port", type=int, default=8091)
    local.add_argument("--home", help="AIRFLOW_HOME (default: the stack's state dir/airflow)")
    local.set_defaults(run=_local)

    project.add_area_deploy(
        actions,
        "orchestration",
        "deploy to Cloud Composer: the environment, the DAG with its settings, the trigger",
    )

    docs = actions.add_parser(
        "docs", help="generate docs/orchestration.md's message and command blocks"
    )
    docs.add_argument("--check", action="store_true", help="fail if the page is stale")
    docs.set_defaults(run=_docs)
