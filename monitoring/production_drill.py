"""Two production policies' drills on the local stack, each with the policy's local twin
(``evaluator``) fed by a sampler of the emulators (``samplers``) and emailing a real SMTP server
on this machine (``mail``):

- ``backlog``: the pull subscriber (``python -m clickstream.subscribers.pull``, as on the VMs)
  on a subscription of its own while the simulator publishes; the subscriber is stopped (and
  the stream the Pub/Sub emulator goes on serving to it is ended, ``end_missed_streams``), the
  backlog-age policy's twin opens an incident and emails once; the subscriber is started again,
  catches up, and the incident closes.
- ``dead_letters``: the pull subscriber running while the simulator publishes malformed visits
  among good ones; the dead-letter-rows policy's twin opens one incident and emails once, and
  closes it when a period passes without new dead-letter rows.

The policies are those of ``production`` with the drills' ``Thresholds`` (``BACKLOG``,
``DEAD_LETTERS``): periods of seconds where Cloud Monitoring's shortest is a minute, so they are
local twins, never applied.
"""

import contextlib
import dataclasses
import datetime
import threading
import time
from collections.abc import Callable
from pathlib import Path

from clickstream.core import incidents, names, ports
from clickstream.gcp import pubsub
from clickstream.monitoring import drill, evaluator, mail, production, samplers

EMAIL = drill.EMAIL
# Seconds, not minutes: a backlog older than 15 s (above the drill subscriber's 10 s leases: a
# message coming back from a lease is no backlog) in 2 s periods; new dead-letter rows in 5 s
# periods (the subscriber writes them within a second or two of each other: one period).
BACKLOG = production.Thresholds(period=2, backlog_age=15)
DEAD_LETTERS = production.Thresholds(period=5)
READY_TIMEOUT = 120.0  # seconds for a subscriber to start
PUSH_HOLD = 0.5  # seconds a subscription is a push one to end its streams (``end_missed_streams``)


@dataclasses.dataclass(frozen=True)
class Drill:
    """One production drill's settings: where things go and how long each step may take."""

    project: str
    workdir: Path
    incidents: Path
    maildir: Path
    email: str = EMAIL
    smtp: tuple[str, int] | None = None
    topic: str = names.TOPIC
    dataset: str = names.DATASET
    visits_per_minute: float = 300.0
    seed: int = 7
    timeout: float = 90.0  # seconds for an incident to open, and again to close


@dataclasses.dataclass(frozen=True)
class Report:
    incidents: list[incidents.Incident]  # their latest state
    emails: int

    @property
    def passed(self) -> bool:
        """One incident, emailed once and closed."""
        closed = [i for i in self.incidents if i.state == incidents.CLOSED]
        return len(self.incidents) == len(closed) == self.emails == 1


def _pull(subscription: str, settings: Drill, output: Path):
    """The pull subscriber as the VMs run it, in a process of its own."""
    flags = ["--subscription", subscription, "--dataset", settings.dataset]
    flags += ["--health-port", "0", "--max-latency", "0.5", "--max-lease-seconds", "10"]
    return drill._process(["clickstream.subscribers.pull", *flags], output)


class _Run:
    """What one drill started, stopped when it ends, whatever happens (``stack``)."""

    def __init__(self, settings: Drill, say: Callable):
        self.settings, self.say = settings, say
        self.run_id = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
        self.stack = contextlib.ExitStack()
        self.watcher: evaluator.Evaluator | None = None

    def record(self, incident: incidents.Incident) -> None:
        incidents.append(self.settings.incidents, incident)
        emailed = ""
        if incident.notified and incident.state == incidents.OPEN:
            emailed = f"; emailed {', '.join(incident.notified)}"
        self.say(f"incident {incident.id} {incident.state}: {incident.summary}{emailed}")

    def subscription(self, kind: str) -> str:
        """A subscription of the drill's own on the topic, deleted at the end, with the kept
        policy: no dead-letter topic (the backlog sampler's looks count as deliveries) and a
        first lease of 10 s (what a stopped subscriber's stream held comes back within that
        once the stream is ended: ``end_missed_streams``)."""
        name = f"{kind}-drill-{self.run_id}"
        path, _ = pubsub.ensure_subscription(
            self.settings.project, name, self.settings.topic, "kept"
        )
        self.stack.callback(drill._delete_subscription, path)
        return path

    def evaluate(
        self, key: str, subscription: str, sampler, thresholds: production.Thresholds
    ) -> None:
        """The twin of the policy ``key`` on ``sampler``'s looks, emailing the mail server."""
        s = self.settings
        declared = production.Production(
            s.project,
            (pubsub.Subscription(subscription.rsplit("/", 1)[-1], s.topic),),
            thresholds,
            s.dataset,
        )
        (watch,) = [w for w in declared.watches() if w.key == key]
        condition = evaluator.Condition.of(declared.policy(watch).fields, (s.email,))
        s.workdir.mkdir(parents=True, exist_ok=True)
        s.incidents.parent.mkdir(parents=True, exist_ok=True)
        self.stack.callback(sampler.close)
        if s.smtp:
            address = s.smtp
        else:
            address = self.stack.enter_context(mail.MailServer(s.maildir)).address
            self.say(f"mail: SMTP server on {address[0]}:{address[1]}, Maildir {s.maildir}")
        self.watcher = evaluator.Evaluator(
            condition, evaluator.email(condition, address), self.record, time.time()
        )
        self.say(f"policy twin: {condition.policy} (every {condition.period:g} s)")
        self.stop = threading.Event()
        arguments = (self.watcher, sampler, self.stop, condition.period / 2)
        self.sampling = threading.Thread(target=samplers.watch, args=arguments)
        self.sampling.start()
        self.stack.callback(self.end_sampling)

    def end_sampling(self) -> None:
        """Stop the sampler; the evaluator evaluates what it has."""
        self.stop.set()
        self.sampling.join()

    def start_pull(self, subscription: str, number: int):
        output = self.settings.workdir / f"pull-{number}.out"
        process = _pull(subscription, self.settings, output)
        self.stack.callback(drill._stop, process, 30.0)
        if not drill._wait(lambda: "pulling " in drill._text(output), READY_TIMEOUT, process):
            raise drill._failed("the pull subscriber did not start", output)
        self.say(f"pull subscriber {number}: pulling {subscription}")
        return process

    def simulate(self, *flags: str):
        s = self.settings
        command = ["clickstream.cli", "simulate", "--topic", s.topic, "--seed", str(s.seed)]
        command += ["--visits-per-minute", f"{s.visits_per_minute:g}", *flags]
        self.say("traffic: clickstream " + " ".join(command[1:]))
        process = drill._process(command, s.workdir / "simulator.out")
        self.stack.callback(drill._stop, process, 10.0)
        return process

    def until(self, check: Callable[[], bool], process) -> bool:
        return drill._wait(check, self.settings.timeout, process)

    @property
    def _watching(self) -> evaluator.Evaluator:
        assert self.watcher is not None, "after evaluate()"
        return self.watcher

    def opened(self) -> bool:
        return bool(self._watching.open)

    def closed(self) -> bool:
        return bool(self._watching.history) and not self._watching.open

    def report(self) -> Report:
        return Report(self._watching.latest, self._watching.notifications)


def end_missed_streams(subscription: str, hold: float = PUSH_HOLD) -> None:
    """End the streaming pulls the Pub/Sub emulator still serves on ``subscription`` (a path)
    after their subscribers closed them. The emulator misses a client's closing of a stream
    (docs/subscribers.md, "On the emulators") and goes on sending it messages for minutes: new
    ones, and those handed back (nacked, or coming back from a lease) too, each held there for
    the stream's ack deadline and then offered again, so they stay out of sight of any other
    subscriber and of the backlog sampler, and come back tens of seconds older. Pub/Sub sends
    nothing to a closed stream. The emulator ends every streaming pull of a subscription that
    has a push endpoint (FAILED_PRECONDITION): the subscription is a push one for ``hold``
    seconds, then a pull one again. The endpoint is a port nothing listens on, so a message pushed
    meanwhile is refused and offered again within a second or two; what the closed stream held
    comes back when its lease (at most the stream's ack deadline) runs out. Local stack only."""
    from google.cloud import pubsub_v1

    refused = f"http://{ports.HOST}:{ports.free_port()}/"
    with pubsub_v1.SubscriberClient() as client:
        client.modify_push_config(subscription=subscription, push_config={"push_endpoint": refused})
        try:
            time.sleep(hold)  # the emulator checks each stream's subscription every 50 ms
        finally:
            client.modify_push_config(subscription=subscription, push_config={})


def backlog(settings: Drill, say: Callable[[str], None] = print) -> Report:
    """The backlog drill (see the module docstring)."""
    run = _Run(settings, say)
    with run.stack:
        subscription = run.subscription("backlog")
        name = subscription.rsplit("/", 1)[-1]
        run.evaluate(f"{name}-backlog-age", subscription, samplers.Backlog(subscription), BACKLOG)
        first = run.start_pull(subscription, 1)
        traffic = run.simulate()
        time.sleep(BACKLOG.period)
        say("stopping the pull subscriber while the simulator publishes")
        drill._stop(first, 30.0)
        # The emulator missed that the subscriber closed its stream: end it, as Pub/Sub would
        # have, or the messages it goes on sending there hide from the sampler and come back
        # late, opening the incident late and again after it closed.
        say("ending the stream the emulator still serves to the stopped subscriber")
        end_missed_streams(subscription)
        if run.until(run.opened, traffic):
            say("starting the pull subscriber again: it catches up")
            run.start_pull(subscription, 2)
            run.until(run.closed, traffic)
        run.end_sampling()
        say("stopping: the simulator and the subscriber")
    return run.report()


def dead_letters(settings: Drill, say: Callable[[str], None] = print) -> Report:
    """The dead-letter drill (see the module docstring)."""
    run = _Run(settings, say)
    with run.stack:
        subscription = run.subscription("dead-letter")
        sampler = samplers.NewRows(settings.dataset)
        run.evaluate("dead-letter-rows", subscription, sampler, DEAD_LETTERS)
        puller = run.start_pull(subscription, 1)
        traffic = run.simulate("--duration", "3", "--malformed-rate", "0.3")
        if run.until(run.opened, puller):
            run.until(run.closed, puller)
        traffic.wait(settings.timeout)
        run.end_sampling()
        say("stopping: the subscriber")
    return run.report()
