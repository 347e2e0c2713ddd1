"""``clickstream local``: start, stop or inspect the local emulators; and how every command
points its clients at them."""

import argparse
import os

from clickstream.core import names


def use_local_stack() -> str:
    """Point the clients at the emulators, failing clearly when the stack is not up; the local
    project."""
    from clickstream.local import emulators

    os.environ.update(emulators.emulator_env())
    if not emulators.status()["bigquery"]["answers"]:
        raise SystemExit(
            "error: the local stack is not running (BigQuery emulator not answering on "
            f"{os.environ['BIGQUERY_EMULATOR_HOST']}); start it with `clickstream local up`, "
            "or pass --project to use Google Cloud"
        )
    return emulators.settings().project


def _local(args: argparse.Namespace) -> None:
    from clickstream.local import emulators

    try:
        if args.action == "up":
            emulators.up(args.dataset)
        elif args.action == "down":
            emulators.down()
        elif args.action == "upload":
            for url in emulators.upload(args.paths, args.prefix):
                print(url)
        elif args.action == "env":
            for name, value in emulators.emulator_env().items():
                print(f"export {name}={value}")
        else:
            emulators.print_status()
    except emulators.StackError as error:
        raise SystemExit(f"error: {error}") from None


def register(commands) -> None:
    """Adds ``local`` to the ``clickstream`` command."""
    local = commands.add_parser(
        "local",
        help="start, stop or inspect the local emulators",
        description="The local stack: the Pub/Sub emulator, the BigQuery emulator (bqemulator) "
        "and the Cloud Storage emulator on 127.0.0.1, in the background. `up` also creates "
        "the bucket, the dataset and every table from metadata/. Idempotent. `upload` copies "
        "local files into the stack's bucket (gs://PROJECT/PREFIX...) and prints their URLs.",
    )
    local.add_argument("action", choices=["up", "down", "status", "env", "upload"])
    local.add_argument("paths", nargs="*", help="upload: local files or globs to copy")
    local.add_argument("--dataset", default=names.DATASET, help="dataset to create (up)")
    local.add_argument(
        "--prefix", default=names.LANDING_PREFIX, help="upload: object prefix in the stack's bucket"
    )
    local.set_defaults(run=_local)
