"""The parts of docs/dos-drill.md and docs/alerts.md generated from the definitions: the plan
for a fresh project, the roles each identity needs, the drill's commands; every production
alert and the thresholds with their reasons. ``clickstream monitoring docs`` writes them; a test
fails when they are stale."""

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from clickstream.core import generated, names, shell
from clickstream.gcp import plan, pubsub
from clickstream.monitoring import alerting, drill, production

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "dos-drill.md"
ALERTS_PAGE = ROOT / "docs" / "alerts.md"
EXAMPLE = alerting.Alerting("my-project", "oncall@example.com")  # the docs' example values
EXAMPLE_COMMAND = "clickstream monitoring plan --project my-project --email oncall@example.com"
# Least privilege, per identity: (who, role, what for).
ROLES = (
    ("who runs `monitoring plan`", "roles/logging.viewer", "reads the log-based metrics"),
    ("", "roles/monitoring.viewer", "lists the channels, policies and dashboards"),
    (
        "who runs `monitoring apply`",
        "roles/logging.configWriter",
        "creates, updates and deletes the log-based metrics",
    ),
    ("", "roles/monitoring.notificationChannelEditor", "the email channel"),
    ("", "roles/monitoring.alertPolicyEditor", "the alert policy"),
    ("", "roles/monitoring.dashboardEditor", "the dashboard"),
    ("the detector's Dataflow workers", "roles/logging.logWriter", "write the log entries"),
    (
        "who looks at the dashboard",
        "roles/monitoring.viewer, roles/logging.viewer",
        "its charts and its log panel",
    ),
)


def fresh_plan() -> str:
    """What ``monitoring plan`` prints for a project that has none of the resources."""
    changes = [plan.Change(plan.CREATE, resource) for resource in EXAMPLE.resources()]
    return plan.render(changes, limit=None)


def roles_table() -> str:
    lines = ["| identity | role | for |", "|---|---|---|"]
    for who, roles, why in ROLES:
        lines.append(f"| {who} | {', '.join(f'`{role}`' for role in roles.split(', '))} | {why} |")
    return "\n".join(lines)


def drill_commands() -> str:
    defaults = drill.Drill(
        alerting.Alerting(
            names.LOCAL_PROJECT, drill.EMAIL, drill.THRESHOLD, window_seconds=drill.WINDOW_SECONDS
        ),
        workdir=Path("STATE/dos-drill"),
        incidents=Path("STATE/dos-incidents.jsonl"),
        maildir=Path("STATE/dos-mailbox"),
    )
    return "\n".join(shell.line(command) for command in defaults.commands("RUN"))


COMMAND = "clickstream monitoring docs"
SECTIONS = {
    "plan": lambda: f"```console\n$ {EXAMPLE_COMMAND}\n{fresh_plan()}\n```",
    "roles": roles_table,
    "drill": lambda: f"```bash\n{drill_commands()}\n```",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def alerts_table(subscriptions: Iterable[pubsub.Subscription]) -> str:
    """Every production alert: its policy label, metric, condition, why and what to do."""
    declared = production.Production(EXAMPLE.project, tuple(subscriptions))
    lines = [
        "| alert (label) | metric and selection | fires when | why this threshold | what to do |",
        "|---|---|---|---|---|",
    ]
    for w in declared.watches():
        side = ">" if w.comparison == "COMPARISON_GT" else "<"
        when = f"{w.aligner} per {w.window} s {side} {w.threshold:g}"
        if w.duration:
            when += f" for {w.duration} s"
        where = f": {_cell(w.where.replace(' AND ', ', '))}" if w.where else ""
        lines.append(
            f"| {w.title} (`{w.key}`) | `{w.metric}` of `{w.resource}`{where} | {when} "
            f"| {_cell(w.why)} | {_cell(w.action)} |"
        )
    return "\n".join(lines)


def thresholds_table() -> str:
    lines = ["| name | default | why |", "|---|---|---|"]
    for field in dataclasses.fields(production.Thresholds):
        lines.append(f"| `{field.name}` | {field.default:,} | {production.REASONS[field.name]} |")
    return "\n".join(lines)


def write(subscriptions: Iterable[pubsub.Subscription], check: bool = False) -> list[str]:
    """Write the generated sections of both pages (with ``check``, only compare), the alerts
    of ``subscriptions`` (``clickstream.deploy.pubsub.subscriptions()``); the stale pages."""
    subscriptions = tuple(subscriptions)
    alerts = {"alerts": lambda: alerts_table(subscriptions), "thresholds": thresholds_table}
    fresh = {
        PAGE: generated.fill(PAGE.read_text(encoding="utf-8"), SECTIONS, COMMAND),
        ALERTS_PAGE: generated.fill(ALERTS_PAGE.read_text(encoding="utf-8"), alerts, COMMAND),
    }
    return generated.write(fresh, ROOT, check)
