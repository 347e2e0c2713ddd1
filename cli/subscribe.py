"""``clickstream subscribe``: run the push and pull subscribers, publish visits, deploy them.

Without ``--project`` the subscribers run against the local stack and their subscription is
created there first; with ``--project`` against Google Cloud.
"""

import argparse
import os
import signal
import subprocess
import sys
from importlib import resources

from clickstream.cli.local import use_local_stack
from clickstream.core import names
from clickstream.subscribers import options

# The subscribers import the Pub/Sub and BigQuery clients (a second); handlers import them.
PUSH_SOURCE = str(resources.files("clickstream.subscribers") / "push.py")  # for --source


def _pull(args: argparse.Namespace) -> None:
    from clickstream.gcp import pubsub
    from clickstream.subscribers import pull

    if args.project is None:
        path, _ = pubsub.ensure_subscription(use_local_stack(), args.subscription, args.topic)
        print(f"local stack: pull subscription {path} on topic {args.topic}", flush=True)
    pull.configure_logging()
    raise SystemExit(pull.run(args))


def _push(args: argparse.Namespace) -> None:
    from clickstream.gcp import pubsub

    endpoint = f"http://{args.host}:{args.port}/"
    project = None if args.project else use_local_stack()
    if project:
        path, _ = pubsub.ensure_subscription(
            project, args.subscription, args.topic, "push", endpoint
        )
        print(f"local stack: push subscription {path} delivers to {endpoint}")
    env = dict(os.environ)  # the local stack's variables included
    env["BIGQUERY_DATASET"] = args.dataset
    if args.project:
        env["BIGQUERY_PROJECT"] = args.project
    print(f"push subscriber listening on {endpoint}, writing to dataset {args.dataset}", flush=True)
    command = [  # the Functions Framework's server, as on Cloud Run
        *(sys.executable, "-m", "functions_framework", "--target", "receive"),
        *("--source", PUSH_SOURCE, "--host", args.host, "--port", str(args.port)),
    ]
    server = subprocess.Popen(command, env=env)
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())
    try:
        status = server.wait()
    except KeyboardInterrupt:
        server.send_signal(signal.SIGINT)  # from a terminal it has it already
        status = server.wait()
    finally:
        if project:  # else the emulator retries pushing to the closed port without pause
            pubsub.stop_pushing(project, args.subscription)
            print(f"local stack: {args.subscription} keeps its messages until the next run")
    raise SystemExit(status)


def _publish(args: argparse.Namespace) -> None:
    from clickstream.core import jsonlines
    from clickstream.gcp import pubsub

    project = args.project
    if project is None:
        project = use_local_stack()
        pubsub.ensure_topic(project, args.topic)
    if not pubsub.subscription_count(project, args.topic):
        print(
            f"warning: topic {args.topic} has no subscription, so these messages are dropped; "
            "start `clickstream subscribe pull` or `push` first",
            file=sys.stderr,
        )
    try:
        ids = pubsub.publish(project, jsonlines.read(args.paths), args.topic)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"published {len(ids):,} messages to projects/{project}/topics/{args.topic}")


def _files(args: argparse.Namespace) -> None:
    from clickstream.gcp import pubsub
    from clickstream.orchestration import notifications

    if args.count is not None and args.count < 1:
        raise SystemExit(f"error: --count takes a positive number, not {args.count}")
    project = args.project
    if project is None:
        project = use_local_stack()
        pubsub.ensure_subscription(project, args.subscription, names.FILES_PROCESSED_TOPIC)
    mail = None
    if args.mail_to:
        mail = notifications.Mail(args.mail_to, args.smtp_host, args.smtp_port)
    print(f"listening on {names.subscription_path(project, args.subscription)}", flush=True)
    try:
        notifications.follow(
            project, args.subscription, lambda line: print(line, flush=True), mail, args.count
        )
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except OSError as error:  # the mail relay
        raise SystemExit(f"error: mailing failed: {error}") from None


def register(commands) -> None:
    """Adds ``subscribe`` and its actions to the ``clickstream`` command."""
    from clickstream.cli import project

    subscribe = commands.add_parser(
        "subscribe",
        help="the Pub/Sub subscribers: run push or pull, publish visits, deploy",
        description="Pub/Sub subscribers that parse visits with the visit model and write them "
        "to the analyst tables without duplicates (same keys as the batch migration).",
    )
    actions = subscribe.add_subparsers(dest="action", required=True, metavar="ACTION")

    pull = actions.add_parser(
        "pull",
        help="run the pull subscriber (streaming pull, batched writes, /healthz)",
        description="Streaming pull into BigQuery, acking each batch once written. On the "
        "local stack (no --project) the topic, its dead-letter topic and the subscription are "
        "created first. SIGTERM or Ctrl-C drains: writes and acks what was received, exits 0.",
    )
    options.add_pull_arguments(pull)
    pull.add_argument("--topic", default=names.TOPIC, help="local stack: topic to subscribe")
    pull.set_defaults(run=_pull)

    push = actions.add_parser(
        "push",
        help="serve the push subscriber (the Cloud Run function) locally",
        description="Serves subscribers/push.py with the Functions Framework, as Cloud Run "
        "does. On the local stack (no --project) a push subscription delivering to it is "
        "created (or pointed at it) first. On Google Cloud, deploy it: `subscribe deploy push`.",
    )
    push.add_argument("--project", help="Google Cloud project (default: the local stack)")
    push.add_argument("--dataset", default=names.DATASET, help="BigQuery dataset")
    push.add_argument("--host", default="127.0.0.1")
    push.add_argument("--port", type=int, default=8080)
    push.add_argument("--subscription", default=names.PUSH_SUBSCRIPTION)
    push.add_argument("--topic", default=names.TOPIC, help="local stack: topic to subscribe")
    push.set_defaults(run=_push)

    publish = actions.add_parser(
        "publish",
        help="publish visits to the topic, one message per line of JSON-lines files",
        description="Publishes each non-blank line of the files as one message, replaying "
        "recorded visits (`clickstream simulate` makes new ones). Start a subscriber first: a "
        "topic keeps no message by itself.",
    )
    publish.add_argument("paths", nargs="+", help="files or globs of JSON lines")
    publish.add_argument("--project", help="Google Cloud project (default: the local stack)")
    publish.add_argument("--topic", default=names.TOPIC)
    publish.set_defaults(run=_publish)

    files = actions.add_parser(
        "files",
        help="tell each processed or failed landed file (Lab Task 4.2), one line each",
        description="Reads the files-processed subscription the orchestration DAG announces "
        "to and prints one line per file: records read, visits and events loaded and "
        "rejected (and where rejected ones went), or why it failed. With --mail-to each line "
        "is also mailed through SMTP (locally a sink: python -m aiosmtpd -n -l "
        "127.0.0.1:8025). On the local stack (no --project) the subscription is created "
        "first. Runs until Ctrl-C, or until --count lines were printed.",
    )
    files.add_argument("--project", help="Google Cloud project (default: the local stack)")
    files.add_argument("--subscription", default=names.FILES_PROCESSED_SUBSCRIPTION)
    files.add_argument("--count", type=int, help="stop after this many lines")
    files.add_argument("--mail-to", metavar="ADDRESS", help="also mail each line to ADDRESS")
    files.add_argument("--smtp-host", default="127.0.0.1", help="mail relay (default 127.0.0.1)")
    files.add_argument("--smtp-port", type=int, default=25, help="mail relay port (default 25)")
    files.set_defaults(run=_files)

    project.add_area_deploy(
        actions,
        "subscribers",
        "deploy on Google Cloud: the push function and the pull instance group",
    )
