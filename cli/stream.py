"""``clickstream stream``: run a streaming spec on Beam's local runner against the local stack."""

import argparse
import signal
import threading

from clickstream.cli import template
from clickstream.cli.local import use_local_stack
from clickstream.core import names

LOCAL_RUNNER = ("--runner=BundleBasedDirectRunner", "--streaming")
DRAIN_TIMEOUT = 300.0  # seconds a drain may take to write what was received
CANCEL_WAIT = 5.0  # seconds for the runner's threads to stop after a cancel


def _until_stopped(result) -> BaseException | None:
    """Run until the pipeline ends; on Ctrl-C (or SIGTERM) drain it and wait for the drain to
    finish (a second signal, or ``DRAIN_TIMEOUT``, cancels instead). The pipeline's error, if
    any."""
    from apache_beam.runners.runner import PipelineState

    from clickstream.pipelines import local_runner

    done, stop, failure = threading.Event(), threading.Event(), []

    def watch():
        try:
            result.wait_until_finish()
        except Exception as error:  # reported by the caller
            failure.append(error)
        done.set()

    def on_signal(*_):
        if stop.is_set():
            done.set()  # asked twice: do not wait for the drain
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    while not stop.wait(1.0):
        if done.is_set():
            return failure[0] if failure else None
    print("draining: no more pulls; writing what was received (Ctrl-C again to cancel)", flush=True)
    local_runner.drain()
    if not done.wait(DRAIN_TIMEOUT) or result.state != PipelineState.DONE:
        if not failure:
            print(
                "cancelled before the drain finished: messages received and not yet written "
                "are lost (the local runner acknowledged them when it pulled them)",
                flush=True,
            )
        # Cancelling waits for the runner's threads; those left are daemons and end with us.
        cancel = threading.Thread(target=result.cancel, daemon=True)
        cancel.start()
        cancel.join(CANCEL_WAIT)
    return failure[0] if failure else None


def _stream(args: argparse.Namespace) -> None:
    from clickstream.core import templates
    from clickstream.gcp import pubsub
    from clickstream.pipelines import catalog, local_runner

    try:
        if not templates.metadata(args.name).get("streaming"):
            raise SystemExit(
                f"error: {args.name} is a batch template: `clickstream template run {args.name}`"
            )
        # Locally, files may also go to a local directory.
        given = template.parameters_of(args.param)
        variables = templates.variables(args.name, given, unchecked=("output",))
    except (templates.ParameterError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    use_local_stack()
    subscription = variables["subscription"]
    project = subscription.split("/")[1]
    if pubsub.ensure_subscription(project, subscription, args.topic, "dataflow")[1]:
        print(f"created subscription {subscription} to topic {args.topic}")
    beam_args = args.beam_args
    if not any(arg.startswith("--runner") for arg in beam_args):
        beam_args = [*LOCAL_RUNNER, *beam_args]
    local_runner.install()
    result = catalog.build_pipeline(args.name, variables, beam_args).run()
    shown = ", ".join(f"{k}={v!r}" for k, v in variables.items())
    print(f"streaming {args.name} on the local stack with {shown}; Ctrl-C drains", flush=True)
    failure = _until_stopped(result)
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
        "`clickstream simulate`. Ctrl-C (or SIGTERM) drains it, as Dataflow drains a job: "
        "it stops pulling, fires every pending window and batch, writes them and exits; a "
        "second Ctrl-C cancels at once, losing what was received and not yet written (the "
        "local runner acknowledges messages when it pulls them). Arguments after `--` go to "
        "Beam.",
    )
    stream.add_argument("name", help="streaming template, e.g. streaming_to_bigquery")
    stream.add_argument(
        "--topic", default=names.TOPIC, help=f"topic of a subscription to create ({names.TOPIC})"
    )
    template.add_parameter_arguments(stream)
    stream.set_defaults(run=_stream)
