"""``clickstream stream``: run a streaming spec on Beam's local runner against the local stack."""

import argparse
import signal
import threading

from clickstream import template_commands

LOCAL_RUNNER = ("--runner=BundleBasedDirectRunner", "--streaming")
CANCEL_WAIT = 5.0  # seconds: the local runner's Pub/Sub read may sit in a 30 s pull


def ensure_subscription(subscription: str, topic: str) -> bool:
    """Create ``subscription`` (projects/P/subscriptions/S) on the topic ``topic`` of the same
    project, and the topic, unless they exist; True if the subscription was created."""
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1

    from simulator import cli as simulator_cli
    from simulator import publisher

    project = subscription.split("/")[1]
    topic_path = simulator_cli.topic_path(project, topic)
    publisher.ensure_topic(pubsub_v1.PublisherClient(), topic_path)
    with pubsub_v1.SubscriberClient() as subscriber:
        try:
            subscriber.create_subscription(name=subscription, topic=topic_path)
        except AlreadyExists:
            return False
    return True


def _until_stopped(result) -> BaseException | None:
    """Wait until Ctrl-C (or SIGTERM) or the pipeline ends; the pipeline's error, if any."""
    done, failure = threading.Event(), []

    def watch():
        try:
            result.wait_until_finish()
        except Exception as error:  # reported by the caller
            failure.append(error)
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(1.0):
        pass
    return failure[0] if failure else None


def _stream(args: argparse.Namespace) -> None:
    from clickstream import templates
    from clickstream.cli import use_local_stack

    try:
        if not templates.metadata(args.name).get("streaming"):
            raise SystemExit(
                f"error: {args.name} is a batch template: `clickstream template run {args.name}`"
            )
        # Locally, files may also go to a local directory.
        given = template_commands.parameters(args.param)
        variables = templates.variables(args.name, given, unchecked=("output",))
    except (templates.ParameterError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    use_local_stack()
    if ensure_subscription(variables["subscription"], args.topic):
        print(f"created subscription {variables['subscription']} to topic {args.topic}")
    beam_args = args.beam_args
    if not any(arg.startswith("--runner") for arg in beam_args):
        beam_args = [*LOCAL_RUNNER, *beam_args]
    result = templates.build_pipeline(args.name, variables, beam_args).run()
    shown = ", ".join(f"{k}={v!r}" for k, v in variables.items())
    print(f"streaming {args.name} on the local stack with {shown}; Ctrl-C stops", flush=True)
    failure = _until_stopped(result)
    if failure is None:
        # Cancelling waits for the runner's threads; those left are daemons and end with us.
        cancel = threading.Thread(target=result.cancel, daemon=True)
        cancel.start()
        cancel.join(CANCEL_WAIT)
    if failure is not None:
        raise SystemExit(f"error: {args.name} failed: {failure}")
    print(f"{args.name} stopped")


def register(commands) -> None:
    """Adds ``stream`` to the ``clickstream`` command."""
    stream = commands.add_parser(
        "stream",
        help="run a streaming template on the local stack until Ctrl-C",
        description="Runs a streaming spec of pipelines/ on Beam's local streaming runner "
        "(BundleBasedDirectRunner) against the local stack's emulators, with the template's "
        "parameters checked as `template run` does (raw_to_gcs may also write to a local "
        "directory). A missing subscription is created on --topic. Publish to the topic with "
        "`clickstream simulate`. Ctrl-C stops it. The local runner "
        "pulls with a 30 s wait: when traffic stops, the last window may come that much later; "
        "messages it has pulled but not written when stopped are lost (it acknowledges on pull). "
        "Arguments after `--` go to Beam.",
    )
    stream.add_argument("name", help="streaming template, e.g. streaming_to_bigquery")
    stream.add_argument(
        "--topic", default="visits", help="topic of a subscription to create (default: visits)"
    )
    template_commands.add_parameter_arguments(stream)
    stream.set_defaults(run=_stream)
