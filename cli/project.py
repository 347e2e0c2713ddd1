"""``clickstream plan | apply | verify | destroy``: every resource of the catalog on a Google
Cloud project, from one settings file, in dependency order (``clickstream.project``); and
``clickstream rehearse``, the whole deployment and the lab's data through it on fakes of Google
Cloud (docs/deploy.md)."""

import argparse
import sys
from pathlib import Path

from clickstream.core import names

NO_CREDENTIALS = (
    "error: no Google Cloud credentials: run `gcloud auth application-default login` or set "
    "GOOGLE_APPLICATION_CREDENTIALS (the deployer's roles: docs/deploy.md)"
)
SETTING_FLAGS = {  # flag -> setting, each overriding the settings file
    "project": "the Google Cloud project id",
    "region": "the region of everything regional, e.g. europe-west1",
    "email": "where alerts go",
    "project_number": "the project's number (default: asked of Resource Manager)",
    "bucket": "the landing bucket (default: named after the project)",
    "ops_bucket": "the bucket of template files, code and temporary files (default: PROJECT-ops)",
    "dataset": f"the analyst dataset (default: {names.DATASET})",
    "dataset_location": "BigQuery location of the dataset (default: the region)",
    "tag": "the images' tag (default: the digest of the image's build context)",
    "composer_environment": f"the Composer environment (default: {names.COMPOSER_ENVIRONMENT})",
}


def _deployment(args: argparse.Namespace):
    """The deployment the arguments describe; one line and exit for anything wrong."""
    from google.api_core import exceptions
    from google.auth import exceptions as auth_exceptions

    from clickstream.deploy import settings as settings_module
    from clickstream.project import areas, lifecycle

    overrides = {key: getattr(args, key) for key in SETTING_FLAGS}
    try:
        settings = settings_module.load(args.settings, overrides)
        return lifecycle.Deployment.of(settings, Path(args.build_dir), args.only or areas.AREAS)
    except (settings_module.SettingsError, areas.AreaError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    except auth_exceptions.DefaultCredentialsError:
        raise SystemExit(NO_CREDENTIALS) from None
    except exceptions.GoogleAPICallError as error:
        raise SystemExit(f"error: {str(error).splitlines()[0]}") from None


def _guarded(run):
    """Google's errors, the engine's and a failed gcloud step as one line and exit 1."""

    def guarded(args: argparse.Namespace) -> None:
        from google.api_core import exceptions

        from clickstream.deploy import gcloud
        from clickstream.gcp import plan
        from clickstream.project import lifecycle

        try:
            run(args)
        except (
            exceptions.GoogleAPICallError,
            exceptions.RetryError,
            plan.PlanError,
            gcloud.StepError,
            lifecycle.DeploymentError,
        ) as error:
            raise SystemExit(f"error: {str(error).splitlines()[0]}") from None

    return guarded


@_guarded
def _plan(args: argparse.Namespace) -> None:
    deployment = _deployment(args)
    print(deployment.render(deployment.planned()))


@_guarded
def _apply(args: argparse.Namespace) -> None:
    from clickstream.gcp import plan

    deployment = _deployment(args)
    changes = deployment.planned()
    print(deployment.render(changes))
    if all(c.action == plan.UNCHANGED for c in changes):
        print("Nothing to apply.")
        return
    done = deployment.apply(
        changes, args.allow_replace, lambda change: print(plan.performed(change), flush=True)
    )
    print(f"Applied {len(done)} changes.")


@_guarded
def _verify(args: argparse.Namespace) -> None:
    report = _deployment(args).verify()
    print(report.render())
    if not report.clean:
        raise SystemExit(1)


@_guarded
def _destroy(args: argparse.Namespace) -> None:
    deployment = _deployment(args)
    changes = deployment.destroy_plan()
    for change in changes:
        print(f"  - delete    {change.resource.label}")
    print(f"Destroy: {len(changes)} to delete (the APIs stay enabled).")
    if not changes:
        return
    if not args.yes:
        if not sys.stdin.isatty():
            raise SystemExit("error: destroy asks for confirmation: pass --yes to confirm")
        answer = input(f"Delete these {len(changes)} resources of {deployment.settings.project}? ")
        if answer.strip().lower() not in ("y", "yes"):
            raise SystemExit("nothing deleted")
    deployment.destroy(
        changes, args.delete_data, lambda change: print(f"done: - delete {change.resource.label}")
    )
    print(f"Deleted {len(changes)} resources.")


def _area_deploy(args: argparse.Namespace) -> None:
    """An area's deployment: its gcloud steps printed (``--dry-run``: nothing contacted), or
    the area of the plan applied."""
    if not args.dry_run:
        return _apply(args)
    from clickstream.deploy import gcloud
    from clickstream.deploy import settings as settings_module
    from clickstream.project import areas

    overrides = {key: getattr(args, key) for key in SETTING_FLAGS}
    try:
        settings = settings_module.load(args.settings, overrides)
        number = settings.project_number or "PROJECT_NUMBER"
        declaration = areas.declare(settings, number, Path(args.build_dir), args.only)
    except (settings_module.SettingsError, areas.AreaError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    print(f"# {', '.join(args.only)}: dry run, nothing is run; the gcloud steps:")
    for step in declaration.steps:
        print(gcloud.line(step.command))
    others = [i.resource.label for i in declaration.items if i.resource.kind != gcloud.KIND]
    if others:
        print(f"# and through the client libraries: {len(others)} resources (`clickstream plan`)")


def add_area_deploy(actions, area: str, text: str) -> None:
    """``deploy`` of a command for ``area``: ``clickstream apply --only AREA``, or its steps."""
    deploy = actions.add_parser(
        "deploy",
        help=text,
        description=f"{text}: the {area} area of `clickstream apply` (plan, then apply), or "
        "with --dry-run its gcloud steps printed, nothing contacted.",
    )
    _common(deploy)
    deploy.add_argument("--dry-run", action="store_true", help="print the steps, run nothing")
    deploy.add_argument("--allow-replace", action="store_true", help=argparse.SUPPRESS)
    deploy.set_defaults(run=_area_deploy, only=[area])


def _docs(args: argparse.Namespace) -> None:
    from clickstream.project import docs

    stale = docs.write(check=args.check)
    if args.check and stale:
        raise SystemExit(f"error: stale: {', '.join(stale)}; run `clickstream docs`")
    print("project docs " + ("are up to date" if args.check else "written"))


def _rehearse(args: argparse.Namespace) -> None:
    from clickstream.cli.local import use_local_stack
    from clickstream.orchestration import local_airflow
    from clickstream.project import rehearsal

    use_local_stack()
    try:
        report = rehearsal.run(Path(args.lab_data), Path(args.build_dir), print)
    except (rehearsal.RehearsalError, local_airflow.OrchestrationError) as error:
        raise SystemExit(f"error: {error}") from None
    if not report.passed:
        raise SystemExit(1)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--settings",
        type=Path,
        help="the settings file (TOML; default: clickstream.toml here, when it exists; "
        "example: deploy/clickstream.example.toml)",
    )
    for key, text in SETTING_FLAGS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, help=text)
    parser.add_argument(
        "--only",
        action="append",
        choices=names.DEPLOYMENT_AREAS,
        metavar="AREA",
        help=f"one area (repeat for more): {', '.join(names.DEPLOYMENT_AREAS)}",
    )
    parser.add_argument(
        "--build-dir", default=str(Path("build", "project")), help="where code is staged"
    )


def register(commands) -> None:
    """Adds ``plan``, ``apply``, ``verify``, ``destroy`` and ``rehearse``."""
    described = (
        "Every resource of the catalog on a Google Cloud project, in dependency order (APIs, "
        "service accounts and grants, buckets, the dataset, images and template files, Pub/Sub, "
        "subscribers, alerting, Dataplex, Composer): through the client libraries where the "
        "catalog uses one, as gcloud steps (printed as they run) where it does not. Settings "
        "come from one file; flags override it."
    )
    for name, run, text in (
        ("plan", _plan, "show what apply would change (create, update with fields, replace)"),
        ("apply", _apply, "make the plan's changes; a second apply changes nothing"),
        ("verify", _verify, "read-only: what is missing, drifted or extra; exit 1 if any"),
        ("destroy", _destroy, "delete what the catalog made, last first, after a confirmation"),
    ):
        parser = commands.add_parser(name, help=text, description=f"{text}. {described}")
        _common(parser)
        if name == "apply":
            parser.add_argument(
                "--allow-replace",
                action="store_true",
                help="replace what holds data when a setting it cannot change changed",
            )
        if name == "destroy":
            parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
            parser.add_argument(
                "--delete-data",
                action="store_true",
                help="also delete what holds data: buckets with objects (emptied first), tables "
                "with rows, the dataset with its tables",
            )
        parser.set_defaults(run=run)

    docs = commands.add_parser(
        "docs",
        help="generate docs/access.md, docs/google-rules.md and docs/deploy.md's tables",
        description="Writes who may do what (from deploy/access.py), the rules of Google the "
        "fakes enforce (from fakes/) and the deployment's areas (from project/areas.py).",
    )
    docs.add_argument("--check", action="store_true", help="fail if a page is stale")
    docs.set_defaults(run=_docs)

    rehearse = commands.add_parser(
        "rehearse",
        help="the whole deployment, end to end, on fakes of Google Cloud",
        description="From an empty fake project (every fake on loopback, over the local "
        "emulators): apply everything, land the lab's files and follow them through the "
        "trigger, Airflow, the flex-template launch and the migration into the tables, publish "
        "traffic through the subscribers, verify, then destroy (the denial-of-service burst is "
        "`clickstream monitoring drill`'s). Prints each step and the counts, which must equal "
        "the lab's. Needs `make airflow`; starts and stops what it needs.",
    )
    rehearse.add_argument(
        "--lab-data",
        default=str(Path("..", "shared", "data", "lab-visits")),
        help="the lab's files (default: ../shared/data/lab-visits)",
    )
    rehearse.add_argument("--build-dir", default=str(Path("build", "rehearsal")))
    rehearse.set_defaults(run=_rehearse)
