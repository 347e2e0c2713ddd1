"""The ``clickstream`` command line.

Without ``--project`` every command works on the local stack (emulators on 127.0.0.1, no cloud
account); with ``--project`` it works on Google Cloud with Application Default Credentials.
"""

import argparse
import logging
import sys

from clickstream.cli import (
    compact,
    dashboard,
    governance,
    local,
    migrate,
    monitoring,
    orchestrate,
    project,
    pubsub,
    simulate,
    stream,
    subscribe,
    template,
    views,
)

COMMANDS = (
    project,
    local,
    migrate,
    template,
    views,
    compact,
    dashboard,
    simulate,
    stream,
    subscribe,
    pubsub,
    monitoring,
    governance,
    orchestrate,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clickstream",
        description="Clickstream pipeline catalog: local stack, batch migration and more.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    # The root logger at ERROR hides what libraries log there at import (Beam YAML warns about
    # optional ML modules); Beam's own loggers still show warnings, ours show progress.
    logging.basicConfig(level=logging.ERROR, format="%(message)s", stream=sys.stderr)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    logging.getLogger("clickstream").setLevel(logging.INFO)
    args = _parser().parse_args(argv)
    args.run(args)
