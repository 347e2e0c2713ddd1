"""The denial-of-service drill on the local stack (lab Task 3.6), end to end: the detector
(``clickstream stream dos_detection``) on a subscription of its own, writing its entries to a
local log; the alert policy's local twin (``evaluator``) watching that log and emailing a real
SMTP server on this machine (``mail``); and the simulator (``clickstream simulate``) publishing
normal traffic with a burst. The drill passes when the burst opens one incident, its email
arrives, and the incident closes once traffic is back under the threshold; without a burst, when
normal traffic opens none.

The detector and the simulator run as the same commands a user would type, in processes of
their own; ``commands`` gives them (docs/dos-drill.md shows them). The incidents go to a file
the realtime page reads (``clickstream dashboard``).
"""

import contextlib
import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from clickstream.core import dos, incidents, names, shell
from clickstream.gcp import pubsub
from clickstream.monitoring import alerting, evaluator, mail

# The drill's alerting: 10-second windows and 400 page views keep it to a minute or two.
THRESHOLD, WINDOW_SECONDS, EMAIL = 400, 10, "oncall@example.com"
READY_TIMEOUT = 120.0  # seconds for the detector to start
DRAIN_TIMEOUT = 300.0  # seconds for the detector to drain after Ctrl-C


@dataclasses.dataclass(frozen=True)
class Drill:
    """One drill: its alerting (the local project's), the traffic, and where things go."""

    alerting: alerting.Alerting
    workdir: Path  # the detector's log and the processes' output
    incidents: Path
    maildir: Path  # the local mail server's Maildir (when ``smtp`` is None)
    smtp: tuple[str, int] | None = None  # another SMTP server to email instead
    visits_per_minute: float = 600.0
    duration: float = 40.0
    burst: int = 300
    burst_at: float = 15.0
    seed: int = 4
    topic: str = names.TOPIC
    settle: float = 120.0  # seconds to wait after the traffic for the incident to close

    def __post_init__(self):
        if self.alerting.threshold != int(self.alerting.threshold):
            raise ValueError("the drill's threshold is dos_detection's too: a whole number")
        if not (self.visits_per_minute > 0 and self.duration > 0):
            raise ValueError("the traffic needs visits per minute and a duration above 0")
        if self.burst < 0 or (self.burst and not 0 <= self.burst_at < self.duration):
            raise ValueError(
                "the burst is a number of bot visits (0: none) that come during the traffic "
                "(0 <= burst-at < duration)"
            )

    @property
    def log(self) -> Path:
        return self.workdir / "dos.log"

    def subscription(self, run: str) -> str:
        return names.subscription_path(self.alerting.project, f"dos-drill-{run}")

    def commands(self, run: str) -> tuple[list[str], list[str]]:
        """The detector's and the simulator's command lines."""
        a = self.alerting
        detector = ["clickstream", "stream", alerting.DETECTOR, "--topic", self.topic]
        for key, value in (
            ("subscription", self.subscription(run)),
            ("threshold", int(a.threshold)),
            ("window_seconds", a.window_seconds),
            ("log_name", a.log_name),
            ("log_file", self.log),
        ):
            detector += ["--param", f"{key}={value}"]
        simulator = [
            *("clickstream", "simulate", "--topic", self.topic),
            *("--visits-per-minute", f"{self.visits_per_minute:g}"),
            *("--duration", f"{self.duration:g}", "--burst", str(self.burst)),
            *("--burst-at", f"{self.burst_at:g}", "--seed", str(self.seed)),
        ]
        return detector, simulator


@dataclasses.dataclass(frozen=True)
class Report:
    incidents: list[incidents.Incident]  # their latest state
    windows: int  # windows the detector logged (their first panes)
    emails: int  # notifications that reached an address
    burst: bool

    @property
    def passed(self) -> bool:
        """A burst: one incident, emailed and closed. Normal traffic alone: none."""
        if not self.burst:
            return not self.incidents
        closed = [i for i in self.incidents if i.state == incidents.CLOSED]
        return len(self.incidents) == len(closed) == self.emails == 1


def _process(command: list[str], output: Path) -> subprocess.Popen:
    """A ``clickstream`` command (or, with a module's name first, ``python -m`` that module)
    in a process of its own, its output in a file."""
    module = command[0] if "." in command[0] else "clickstream.cli"
    with open(output, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, *command[1:]],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen, timeout: float) -> None:
    """Ctrl-C (the detector drains), then kill what is still running after ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait(check: Callable[[], bool], timeout: float, process: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


def _failed(what: str, output: Path) -> RuntimeError:
    last = [line for line in _text(output).splitlines() if line.strip()][-1:]
    return RuntimeError(f"{what} ({output}: {last[0] if last else 'no output'})")


def _delete_subscription(subscription: str) -> None:
    from google.cloud import pubsub_v1

    with pubsub_v1.SubscriberClient() as subscriber:
        subscriber.delete_subscription(subscription=subscription)


def run(drill: Drill, say: Callable[[str], None] = print) -> Report:
    """Run the drill, saying what happens; everything it started is stopped (the detector
    drained first, so the evaluator sees its last entries), whatever happens."""
    run_id = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    detector, simulator = drill.commands(run_id)
    condition = evaluator.dos_condition(drill.alerting)
    drill.workdir.mkdir(parents=True, exist_ok=True)
    drill.incidents.parent.mkdir(parents=True, exist_ok=True)
    drill.log.unlink(missing_ok=True)
    subscription = drill.subscription(run_id)

    def record(incident: incidents.Incident) -> None:
        incidents.append(drill.incidents, incident)
        emailed = f"; emailed {', '.join(incident.notified)}" if incident.notified else ""
        if incident.state == incidents.CLOSED:
            emailed = ""
        say(f"incident {incident.id} {incident.state}: {incident.summary}{emailed}")

    with contextlib.ExitStack() as stack:  # undone last to first
        pubsub.ensure_subscription(drill.alerting.project, subscription, drill.topic, "dataflow")
        stack.callback(_delete_subscription, subscription)
        if drill.smtp:
            address = drill.smtp
            say(f"mail: to the SMTP server {address[0]}:{address[1]}")
        else:
            address = stack.enter_context(mail.MailServer(drill.maildir)).address
            say(f"mail: SMTP server on {address[0]}:{address[1]}, Maildir {drill.maildir}")
        watcher = evaluator.Evaluator(
            condition, evaluator.email(condition, address), record, start=time.time()
        )
        stop = threading.Event()
        thread = threading.Thread(target=evaluator.watch, args=(watcher, drill.log, stop))
        thread.start()
        stack.callback(thread.join)
        stack.callback(stop.set)
        say("detector: " + shell.line(detector))
        detector_out = drill.workdir / "detector.out"
        stream = _process(detector, detector_out)
        stack.callback(_stop, stream, DRAIN_TIMEOUT)

        def started() -> bool:
            return f"streaming {alerting.DETECTOR}" in _text(detector_out)

        if not _wait(started, READY_TIMEOUT, stream):
            raise _failed("the detector did not start", detector_out)
        say("traffic: " + shell.line(simulator))
        simulator_out = drill.workdir / "simulator.out"
        traffic = _process(simulator, simulator_out)
        stack.callback(_stop, traffic, 10.0)
        if traffic.wait(drill.duration + READY_TIMEOUT) != 0:
            raise _failed("the simulator failed", simulator_out)

        def closed() -> bool:
            return bool(watcher.history) and not watcher.open

        if drill.burst:
            _wait(closed, drill.settle, stream)
        say("stopping: the detector drains, the evaluator reads its last entries")
    lines = evaluator.LogTail(drill.log).lines()
    windows = sum(dos.FIRST_PANES.matches(json.loads(line)) for line in lines)
    return Report(watcher.latest, windows, watcher.notifications, drill.burst > 0)
