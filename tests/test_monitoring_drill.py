"""The drills on the local stack, as a user runs them. ``clickstream monitoring drill``: the
simulator's normal traffic and burst through the Pub/Sub emulator, the detector on the local
runner, the policy's local twin, and the drill's own SMTP server; exactly one email, for the
burst. ``drill-backlog`` and ``drill-dead-letters``: two production policies' twins on samplers
of the emulators; exactly one email per incident, and the incident closed."""

import datetime
import subprocess
import sys

from clickstream.core import incidents
from clickstream.monitoring import mail

BURST_AT = 12.0


def drill(tmp_path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clickstream.cli", "monitoring", "drill", "--email",
         "sre@example.com", "--maildir", str(tmp_path / "Maildir"),
         "--incidents", str(tmp_path / "incidents.jsonl"), *flags],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_the_drill_emails_once_for_the_burst_and_not_for_normal_traffic(stack, tmp_path):
    maildir, record = tmp_path / "Maildir", tmp_path / "incidents.jsonl"
    began = datetime.datetime.now(datetime.UTC)
    done = drill(tmp_path, "--duration", "32", "--burst-at", str(BURST_AT))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("passed: the burst opened one incident")
    (email,) = mail.received(maildir)
    assert email["To"] == "sre@example.com"
    assert email["Subject"] == "[ALERT] Clickstream: possible denial of service"
    (incident,) = incidents.read(record)
    assert incident.state == incidents.CLOSED and incident.notified == ("sre@example.com",)
    opened = datetime.datetime.fromisoformat(incident.opened_at)
    # Normal traffic ran for BURST_AT seconds (after the detector's start) without an incident.
    assert opened > began + datetime.timedelta(seconds=BURST_AT)
    assert incident.value > incident.threshold == 400
    windows = int(done.stdout.split("windows logged: ")[1].split(";")[0])
    assert windows > 3  # the normal windows were logged and judged too


def test_normal_traffic_alone_sends_nothing(stack, tmp_path):
    done = drill(tmp_path, "--duration", "20", "--burst", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == (
        "passed: normal traffic opened no incident and sent no email"
    )
    assert "windows logged: " in done.stdout and "incidents: 0; emails: 0" in done.stdout
    assert mail.received(tmp_path / "Maildir") == []
    assert incidents.read(tmp_path / "incidents.jsonl") == []


def production_drill(tmp_path, action: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clickstream.cli", "monitoring", action, "--email",
         "sre@example.com", "--maildir", str(tmp_path / "Maildir"),
         "--incidents", str(tmp_path / "incidents.jsonl")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def one_incident_emailed_and_closed(tmp_path, done, subject: str) -> incidents.Incident:
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "passed: one incident, one email, closed"
    (email,) = mail.received(tmp_path / "Maildir")
    assert (email["To"], email["Subject"].replace("\n", "")) == ("sre@example.com", subject)
    assert "Runbook: docs/alerts.md" in email.get_payload(decode=True).decode().replace("\n", " ")
    (incident,) = incidents.read(tmp_path / "incidents.jsonl")
    assert incident.state == incidents.CLOSED and incident.notified == ("sre@example.com",)
    return incident


def test_the_backlog_drill_alerts_once_while_the_subscriber_is_down(stack, tmp_path):
    """The pull subscriber stopped while the simulator publishes: the backlog-age policy's
    twin opens one incident (emailed), and closes it once the restarted subscriber caught up."""
    done = production_drill(tmp_path, "drill-backlog")
    run = done.stdout.split("subscriptions/backlog-drill-")[1].split()[0]
    subject = f"[ALERT] Clickstream: backlog-drill-{run}: oldest unacknowledged message ageing"
    incident = one_incident_emailed_and_closed(tmp_path, done, subject)
    assert incident.value > incident.threshold == 15
    assert "starting the pull subscriber again" in done.stdout


def test_the_dead_letter_drill_alerts_once_for_malformed_visits(stack, tmp_path):
    done = production_drill(tmp_path, "drill-dead-letters")
    subject = "[ALERT] Clickstream: rows written to dead_letter"
    incident = one_incident_emailed_and_closed(tmp_path, done, subject)
    assert incident.value > 0 == incident.threshold
    assert incident.summary.endswith("closed: no data, not beyond 0")
