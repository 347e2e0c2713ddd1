"""``clickstream governance``: the Dataplex data mesh (lab Task 5) planned and applied as code,
the lineage graph of the batch migration's runs, and the generated governance page."""

import argparse
import os

from clickstream.core import contract, names


def _mesh(args: argparse.Namespace, project: str, location: str):
    from clickstream.governance import mesh

    members = {
        audience: tuple(getattr(args, audience) or ())
        for audience in contract.governance()["audiences"]
    }
    return mesh.Mesh(
        project,
        location,
        lake=args.lake,
        bucket=args.bucket or "",
        dataset=args.dataset,
        dataset_location=(args.dataset_location or "").lower(),  # BigQuery's US is Dataplex's us
        members={audience: ms for audience, ms in members.items() if ms},
    )


def _checked_mesh(args: argparse.Namespace):
    """The mesh of the arguments on Google Cloud; one line and exit for anything invalid."""
    from clickstream.governance import mesh

    if not args.location:
        raise SystemExit("error: --location is required with --project (the lake's region)")
    declared = _mesh(args, args.project, args.location)
    try:
        mesh.check(declared)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    return declared


def _plan_and_apply(args: argparse.Namespace) -> None:
    from google.api_core import exceptions
    from google.auth import exceptions as auth_exceptions

    from clickstream.gcp import plan
    from clickstream.governance import dataplex, mesh

    if args.project is None:
        if args.action == "apply":
            raise SystemExit(
                "error: Dataplex has no local emulator: pass --project (and --location) to apply "
                "on Google Cloud; `governance plan` without --project previews a fresh project"
            )
        preview = _mesh(args, "PROJECT", args.location or "REGION")
        print("Preview (no --project): the plan for a project where none of the mesh exists.")
        print(plan.render(mesh.fresh_plan(preview)))
        return
    declared = _checked_mesh(args)
    try:
        adapters = dataplex.adapters(*dataplex.clients())
        changes = plan.plan(mesh.resources(declared), adapters)
        print(plan.render(changes))
        if args.action == "plan" and args.validate:
            verdicts = plan.validate(changes, adapters)
            print("\nChecked by the APIs without changing anything (validate_only):")
            for change, verdict in verdicts:
                status, _, reason = verdict.partition(": ")
                print(f"  {status:<12} {change.resource.label}")
                if reason:
                    print(f"      {reason}")
            if any(verdict.startswith("refused") for _, verdict in verdicts):
                raise SystemExit("error: the APIs refuse some changes (see above)")
        if args.action == "apply":
            done = plan.apply(
                changes,
                adapters,
                lambda change: print(plan.performed(change)),
            )
            print(f"Applied {len(done)} changes.")
    except auth_exceptions.GoogleAuthError as error:
        raise SystemExit(
            f"error: no Google Cloud credentials ({error}); run "
            "`gcloud auth application-default login`"
        ) from None
    except exceptions.GoogleAPICallError as error:
        raise SystemExit(f"error: {error}") from None


def _lineage(args: argparse.Namespace) -> None:
    from clickstream.gcp import lineage
    from clickstream.governance import lineage_graph

    if args.project is None:
        from clickstream.local import emulators

        path = emulators.emulator_env()[names.LINEAGE_FILE_ENV]
        if not os.path.isfile(path):
            raise SystemExit(
                f"error: no lineage recorded at {path}: run a migration on the local stack first "
                f"(clickstream migrate --input 'gs://{emulators.settings().project}/"
                f"{names.LANDING_PREFIX}*.jsonl')"
            )
        runs = lineage_graph.runs_from_calls(lineage.read_file(path))
    else:
        from google.api_core import exceptions
        from google.cloud import datacatalog_lineage_v1 as lineage_v1

        if not args.location:
            raise SystemExit("error: --location is required with --project (lineage's location)")
        process = lineage.migration_process(args.project, args.location, None).name
        try:
            runs = lineage_graph.runs_from_api(lineage_v1.LineageClient(), process)
        except exceptions.GoogleAPICallError as error:
            raise SystemExit(f"error: {error}") from None
    try:
        run = lineage_graph.pick(runs, args.run_id)
    except KeyError as error:
        raise SystemExit(f"error: {error.args[0]}") from None
    print(lineage_graph.mermaid(run) if args.format == "mermaid" else lineage_graph.text(run))


def _docs(args: argparse.Namespace) -> None:
    from clickstream.governance import docs

    stale = docs.write(check=args.check)
    if args.check and stale:
        raise SystemExit(f"error: {', '.join(stale)} is stale; run `clickstream governance docs`")
    print("governance docs " + ("are up to date" if args.check else "written"))


def _mesh_arguments(parser: argparse.ArgumentParser, project_help: str) -> None:
    parser.add_argument("--project", help=project_help)
    parser.add_argument("--location", help="the lake's region, e.g. europe-west1")
    parser.add_argument("--lake", default=names.LAKE, help="lake id (default: %(default)s)")
    parser.add_argument("--bucket", help="the landing bucket (default: named after the project)")
    parser.add_argument("--dataset", default=names.DATASET, help="the analyst dataset")
    parser.add_argument(
        "--dataset-location",
        help="the dataset's BigQuery location, e.g. US or europe-west1 (default: --location)",
    )
    for audience, spec in contract.governance()["audiences"].items():
        grants = "; ".join(f"{', '.join(r)} on {place}" for place, r in spec["grants"].items())
        parser.add_argument(
            f"--{audience}",
            action="append",
            metavar="MEMBER",
            help=f"{spec['description']} ({grants}); an IAM member such as "
            "group:NAME@example.com (repeat for each)",
        )


def register(commands) -> None:
    """Adds ``governance`` and its actions to the ``clickstream`` command."""
    governance = commands.add_parser(
        "governance",
        help="the Dataplex data mesh as code: plan, apply, lineage, docs (lab Task 5)",
        description="A Dataplex lake with a raw zone (the landing bucket) and a curated zone "
        "(the analyst dataset), IAM roles per audience merged into the existing policies, "
        "aspect types and every curated table's aspects from metadata/, and the lineage the "
        "batch migration records. See docs/governance.md.",
    )
    actions = governance.add_subparsers(dest="action", required=True, metavar="ACTION")
    plan = actions.add_parser(
        "plan",
        help="show what apply would change",
        description="Reads the mesh's resources and prints, per resource, create / update (with "
        "the fields) / replace / unchanged. Changes nothing. Without --project: the plan for a "
        "project where none of it exists, made offline (Dataplex has no emulator).",
    )
    _mesh_arguments(plan, "Google Cloud project (default: the offline preview)")
    plan.add_argument(
        "--validate",
        action="store_true",
        help="also have the APIs check each change without making it (validate_only)",
    )
    plan.set_defaults(run=_plan_and_apply)
    apply = actions.add_parser(
        "apply",
        help="make the changes of the plan (Google Cloud: needs --project)",
        description="Plans, prints the plan, then makes exactly its changes; applying again "
        "changes nothing. IAM roles are added to the existing policies (by etag), never "
        "replacing bindings it did not create. Aspects wait for Dataplex to list new tables.",
    )
    _mesh_arguments(apply, "Google Cloud project (required)")
    apply.set_defaults(run=_plan_and_apply)
    graph = actions.add_parser(
        "lineage",
        help="print the lineage graph of a batch migration run",
        description="The sources, process and targets of the latest (or --run) run of the batch "
        "migration, from the lineage events the code recorded: on the local stack its lineage "
        "file, with --project the Data Lineage API.",
    )
    graph.add_argument("--project", help="Google Cloud project (default: the local stack)")
    graph.add_argument("--location", help="with --project: the lineage's location, e.g. us")
    graph.add_argument("--run", dest="run_id", help="run id or display name (default: the latest)")
    graph.add_argument("--format", choices=["text", "mermaid"], default="text")
    graph.set_defaults(run=_lineage)
    docs = actions.add_parser("docs", help="generate the sections of docs/governance.md")
    docs.add_argument("--check", action="store_true", help="fail if the page is stale")
    docs.set_defaults(run=_docs)
