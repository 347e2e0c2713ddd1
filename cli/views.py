"""``clickstream views apply``: create or update the analyst views (``metadata/views``)."""

import argparse

from clickstream.cli.local import use_local_stack
from clickstream.core import contract, names


def register(commands) -> None:
    """Add ``views`` to the ``clickstream`` command's subcommands."""
    listed = ", ".join(view.name for view in contract.views())
    parser = commands.add_parser(
        "views",
        help="create or update the analyst views (metadata/views/*.sql)",
        description=f"`apply` creates the analyst views ({listed}) in the dataset, or updates "
        "their SQL and description, after creating the dataset and tables if missing. "
        "Idempotent. Without --project it works on the local stack (`clickstream local up` "
        "applies them too).",
    )
    parser.add_argument("action", choices=["apply"], help="apply: create or update every view")
    parser.add_argument("--dataset", default=names.DATASET, help="BigQuery dataset")
    parser.add_argument("--project", help="Google Cloud project (default: the local stack)")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> None:
    from clickstream.gcp import views

    if args.project is None:
        use_local_stack()
    views.ensure_analyst_dataset(args.project, args.dataset)
    for view_id in views.apply_views(args.project, args.dataset):
        print(f"view {view_id} ready")
