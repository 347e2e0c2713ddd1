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


def _deploy(args: argparse.Namespace) -> None:
    from clickstream.deploy.subscribers import DeployError, execute
    from clickstream.orchestration import deployment

    try:
        target = deployment.Target(
            args.project,
            args.region,
            args.environment,
            args.bucket,
            args.template_bucket,
            dataset=args.dataset,
            airflow_api=args.airflow_api,
            worker_account=args.worker_account,
            repository=args.repository,
            tag=args.tag,
        )
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    build = Path(args.build_dir)
    if args.what == "dags":
        commands = deployment.dags_commands(target, deployment.stage_dags(build / "dags"))
    else:
        source = deployment.stage_function(build / "trigger-function")
        commands = deployment.trigger_commands(target, source)
    print(f"# {args.what}: {'dry run, nothing is run' if args.dry_run else 'running'}")
    try:
        execute(commands, args.dry_run)
    except DeployError as error:
        raise SystemExit(f"error: {error}") from None


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

    deploy = actions.add_parser(
        "deploy",
        help="deploy to Cloud Composer: dags, trigger",
        description="Prints (--dry-run) or runs the gcloud commands, in order: `dags` (the "
        "DAG, the Beam-free core beside it, its settings and rights), then `trigger` (the Cloud "
        "Run function on the bucket's finalize events). Staging happens in --build-dir in both "
        "cases. First build the template (`clickstream template build batch_migration`) and "
        "create the files-processed topic (`clickstream pubsub apply`).",
    )
    deploy.add_argument("what", choices=["dags", "trigger"])
    deploy.add_argument("--project", required=True)
    deploy.add_argument("--region", required=True, help="the Composer environment's region")
    deploy.add_argument("--environment", required=True, help="Composer environment name")
    deploy.add_argument("--bucket", required=True, help="bucket files land in (no gs://)")
    deploy.add_argument(
        "--template-bucket", required=True, help="bucket of templates/batch_migration.json"
    )
    deploy.add_argument("--dataset", default=names.DATASET, help="BigQuery dataset")
    deploy.add_argument(
        "--airflow-api", default="v2", choices=["v2", "v1"], help="v2: Airflow 3; v1: Airflow 2"
    )
    deploy.add_argument("--worker-account", default="", help="Dataflow workers' service account")
    deploy.add_argument(
        "--repository",
        default=names.IMAGE_REPOSITORY,
        help="Artifact Registry repository of the template's image (as `template build`)",
    )
    deploy.add_argument(
        "--tag", default=names.IMAGE_TAG, help="the template image's tag (as `template build`)"
    )
    deploy.add_argument("--build-dir", default=str(Path("build", "orchestration")))
    deploy.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    deploy.set_defaults(run=_deploy)

    docs = actions.add_parser(
        "docs", help="generate docs/orchestration.md's message and command blocks"
    )
    docs.add_argument("--check", action="store_true", help="fail if the page is stale")
    docs.set_defaults(run=_docs)
