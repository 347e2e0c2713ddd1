"""``clickstream monitoring``: the catalog's alerting as code. ``plan`` and ``apply`` the
denial-of-service drill's log-based metrics, email channel, policy and dashboard
(``clickstream.monitoring.alerting``) and the production policies of every template and
subscriber with their dashboard (``clickstream.monitoring.production``) on Google Cloud;
``drill`` runs the DoS chain on the local stack, ``drill-backlog`` and ``drill-dead-letters``
two production policies' local twins; ``docs`` regenerates the generated parts of
docs/dos-drill.md and docs/alerts.md."""

import argparse

from clickstream.core import names

NO_PROJECT = (
    "error: plan and apply need --project: Cloud Logging and Cloud Monitoring have no local "
    "emulator. On the local stack the alert policy's twin is `clickstream monitoring drill`."
)
NO_CREDENTIALS = (
    "error: no Google Cloud credentials: run `gcloud auth application-default login` or set "
    "GOOGLE_APPLICATION_CREDENTIALS (roles needed: docs/dos-drill.md)"
)


def _alerting(args: argparse.Namespace, project: str):
    """The alerting the arguments declare; one line and exit when they are not valid."""
    from clickstream.monitoring import alerting

    try:
        return alerting.Alerting(
            project,
            args.email,
            alerting.threshold_value(args.threshold),
            args.log_name,
            alerting.window_value(args.window_seconds),
        )
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


def _thresholds(settings: list[str]):
    """The production thresholds, with each ``NAME=VALUE`` of --alert-threshold."""
    import dataclasses

    from clickstream.monitoring import production

    known = {field.name for field in dataclasses.fields(production.Thresholds)}
    given = {}
    for setting in settings:
        name, _, value = setting.partition("=")
        if name not in known or not value.isdigit() or int(value) <= 0:
            raise SystemExit(
                f"error: --alert-threshold {setting!r} is not NAME=VALUE with a whole number "
                f"above 0 and NAME one of {', '.join(sorted(known))}"
            )
        given[name] = int(value)
    return production.Thresholds(**given)


def declared(args: argparse.Namespace, project: str):
    """Every alerting resource the arguments declare (DoS and production)."""
    from clickstream.deploy import pubsub
    from clickstream.monitoring import production

    dos = _alerting(args, project)
    thresholds = _thresholds(args.alert_threshold)
    return production.resources(dos, pubsub.subscriptions(streaming=True), thresholds)


def _check_credentials() -> None:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError:
        raise SystemExit(NO_CREDENTIALS) from None


def _plan_or_apply(args: argparse.Namespace) -> None:
    from google.api_core import exceptions

    from clickstream.gcp import plan
    from clickstream.monitoring import adapters

    if args.project is None:
        raise SystemExit(NO_PROJECT)
    resources = declared(args, args.project)
    if args.endpoint is None:
        _check_credentials()
    clients = adapters.Clients(args.endpoint)
    propagation = adapters.Propagation.within(args.wait_for_metrics)

    def waiting(error: Exception) -> None:
        message = error.message if isinstance(error, exceptions.GoogleAPICallError) else str(error)
        refusal = message.split(". ")[0]
        print(f"waiting for a new log-based metric to reach Cloud Monitoring ({refusal})")

    try:
        api = adapters.adapters(clients, args.project, propagation, waiting)
        changes = plan.plan(resources, api)
        print(plan.render(changes, limit=None))
        if args.action == "apply":
            done = plan.apply(
                changes,
                api,
                lambda change: print(plan.performed(change)),
            )
            print(f"Applied {len(done)} changes." if done else "Nothing to apply.")
    except (exceptions.GoogleAPICallError, exceptions.RetryError, plan.PlanError) as error:
        raise SystemExit(f"error: {str(error).splitlines()[0]}") from None
    finally:
        clients.close()


def _alerting_arguments(
    parser: argparse.ArgumentParser, threshold: float | None = None, window_seconds=None
) -> None:
    """--threshold, --log-name and --window-seconds; the defaults are dos_detection's."""
    from clickstream.monitoring import alerting

    threshold = threshold or alerting.DEFAULT_THRESHOLD
    window_seconds = window_seconds or alerting.DEFAULT_WINDOW_SECONDS
    parser.add_argument(
        "--threshold",
        default=f"{threshold:g}",
        help=f"page views per window above which the alert fires (default: {threshold:g})",
    )
    parser.add_argument(
        "--log-name",
        default=names.DOS_LOG,
        help=f"log of the detector's entries (its log_name; default: {names.DOS_LOG})",
    )
    parser.add_argument(
        "--window-seconds",
        default=str(window_seconds),
        help="the detector's window (its window_seconds), the alert's alignment period "
        f"(default: {window_seconds})",
    )


def register(commands) -> None:
    """Adds ``monitoring`` to the ``clickstream`` command."""
    monitoring = commands.add_parser(
        "monitoring",
        help="alerting as code: the DoS drill and every template and subscriber; drills",
        description="The catalog's alerting, declared once: the denial-of-service detector's "
        "(lab Task 3.5: two log-based metrics over its entries, an email notification channel, "
        "an alert policy and a dashboard) and the production policies of every template and "
        "subscriber on Google's metrics, with their dashboard, on the same channel. `plan` "
        "shows what `apply` would create, update or replace in --project; `apply` does exactly "
        "that, so a second apply changes nothing. `drill` runs Task 3.6 on the local stack "
        "(simulated traffic with a burst, the detector, the policy's local twin and an email to "
        "a local mail server); `drill-backlog` and `drill-dead-letters` run two production "
        "policies' local twins. See docs/dos-drill.md and docs/alerts.md.",
    )
    actions = monitoring.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, summary in (
        ("plan", "show what apply would change in the project, field by field"),
        ("apply", "create or change the resources as planned; then the plan is empty"),
    ):
        parser = actions.add_parser(
            action,
            help=summary,
            description=f"{summary[0].upper()}{summary[1:]}. Needs --project and Application "
            "Default Credentials (Cloud Logging and Monitoring have no emulator).",
        )
        parser.add_argument("--project", help="Google Cloud project (required)")
        parser.add_argument("--email", required=True, help="address the alert emails go to")
        _alerting_arguments(parser)
        parser.add_argument(
            "--alert-threshold",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a production threshold other than its default (docs/alerts.md lists them), "
            "e.g. backlog_age=900; may be repeated",
        )
        parser.add_argument(
            "--wait-for-metrics",
            type=float,
            default=900.0,
            metavar="SECONDS",
            help="how long apply retries a policy that Cloud Monitoring refuses because a new "
            "log-based metric has not reached it yet (default: 900)",
        )
        # Tests only: the fake services' host:port instead of Google (no TLS, no credentials).
        parser.add_argument("--endpoint", help=argparse.SUPPRESS)
        parser.set_defaults(run=_plan_or_apply)
    _register_drill(actions)
    _register_production_drills(actions)
    docs = actions.add_parser(
        "docs",
        help="write the generated parts of docs/dos-drill.md and docs/alerts.md",
        description="Writes the parts of docs/dos-drill.md and docs/alerts.md generated from "
        "the definitions: the plan for a fresh project, the roles, the drill's commands, every "
        "production alert and the thresholds.",
    )
    docs.add_argument("--check", action="store_true", help="only list what is stale")
    docs.set_defaults(run=_docs)


def _smtp(text: str | None) -> tuple[str, int] | None:
    if text is None:
        return None
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"error: --smtp {text!r} is not HOST:PORT")
    return host, int(port)


def _drill(args: argparse.Namespace) -> None:
    from pathlib import Path

    from clickstream.cli.local import use_local_stack
    from clickstream.local import emulators
    from clickstream.monitoring import drill

    smtp = _smtp(args.smtp)
    settings = emulators.settings()
    state = settings.state_dir
    try:
        planned = drill.Drill(
            _alerting(args, settings.project),
            workdir=state / "dos-drill",
            incidents=Path(args.incidents or state / names.INCIDENTS_FILE),
            maildir=Path(args.maildir or state / names.DRILL_MAILBOX),
            smtp=smtp,
            visits_per_minute=args.visits_per_minute,
            duration=args.duration,
            burst=args.burst,
            burst_at=args.burst_at,
            seed=args.seed,
            topic=args.topic,
            settle=args.settle,
        )
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    use_local_stack()
    try:
        report = drill.run(planned)
    except RuntimeError as error:
        raise SystemExit(f"error: {error}") from None
    except KeyboardInterrupt:
        raise SystemExit("drill stopped") from None
    print(f"windows logged: {report.windows}; incidents: {len(report.incidents)}; ", end="")
    print(f"emails: {report.emails} (incidents in {planned.incidents})")
    states = ", ".join(incident.state for incident in report.incidents) or "none"
    if not report.passed:
        expected = (
            "one incident, opened by the burst and closed after it"
            if planned.burst
            else ("no incident for normal traffic")
        )
        raise SystemExit(
            f"error: the drill expected {expected}; it had {len(report.incidents)} ({states}). "
            "See docs/dos-drill.md to choose the threshold and the burst"
        )
    if planned.burst:
        print(
            "passed: the burst opened one incident, its email arrived, and the incident closed "
            "when the traffic was back under the threshold"
        )
    else:
        print("passed: normal traffic opened no incident and sent no email")


def _docs(args: argparse.Namespace) -> None:
    from clickstream.deploy import pubsub
    from clickstream.monitoring import drill_docs

    stale = drill_docs.write(pubsub.subscriptions(streaming=True), check=args.check)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'} {path}")
    if args.check and stale:
        raise SystemExit(1)


def _register_drill(actions) -> None:
    from clickstream.monitoring import drill

    defaults = drill.Drill.__dataclass_fields__
    parser = actions.add_parser(
        "drill",
        help="run the drill on the local stack: burst, detector, local alert, email",
        description="Task 3.6 on the local stack, end to end: starts the detector (`clickstream "
        "stream dos_detection`) on a subscription of its own with its entries in a local log, "
        "the alert policy's local twin (the same selection, aggregation and threshold) and a "
        "local SMTP server (a Maildir in the stack's state directory), then publishes normal "
        "traffic with a burst (`clickstream simulate`). Passes when the burst opens one "
        "incident, its email arrives, and the incident closes once traffic is back under the "
        "threshold. Incidents go to a file that the realtime page of `clickstream dashboard` "
        "shows. Needs `clickstream local up`.",
    )
    parser.add_argument("--email", default=drill.EMAIL, help="the alert's recipient")
    _alerting_arguments(parser, drill.THRESHOLD, drill.WINDOW_SECONDS)
    traffic = (
        ("--visits-per-minute", float, "the steady traffic"),
        ("--duration", float, "seconds of traffic"),
        ("--burst", int, "bot visits of the burst, eight page views each; 0: normal traffic only"),
        ("--burst-at", float, "seconds into the traffic when the burst goes"),
        ("--seed", int, "the simulator's seed"),
        ("--settle", float, "seconds to wait after the traffic for the incident to close"),
    )
    for flag, kind, what in traffic:
        default = defaults[flag[2:].replace("-", "_")].default
        parser.add_argument(flag, type=kind, default=default, help=f"{what} (default: {default})")
    parser.add_argument("--topic", default=names.TOPIC, help=f"topic (default: {names.TOPIC})")
    parser.add_argument(
        "--smtp", metavar="HOST:PORT", help="email through this SMTP server instead of the drill's"
    )
    parser.add_argument(
        "--maildir",
        help=f"the drill's mail server's Maildir (default: STATE/{names.DRILL_MAILBOX})",
    )
    parser.add_argument(
        "--incidents", help=f"incidents file (default: STATE/{names.INCIDENTS_FILE})"
    )
    parser.set_defaults(run=_drill)


def _production_drill(args: argparse.Namespace) -> None:
    from pathlib import Path

    from clickstream.cli.local import use_local_stack
    from clickstream.local import emulators
    from clickstream.monitoring import production_drill

    smtp = _smtp(args.smtp)
    state = emulators.settings().state_dir
    settings = production_drill.Drill(
        use_local_stack(),
        workdir=state / f"{args.action}",
        incidents=Path(args.incidents or state / names.INCIDENTS_FILE),
        maildir=Path(args.maildir or state / names.DRILL_MAILBOX),
        email=args.email,
        smtp=smtp,
        topic=args.topic,
    )
    run = {
        "drill-backlog": production_drill.backlog,
        "drill-dead-letters": production_drill.dead_letters,
    }
    try:
        report = run[args.action](settings)
    except RuntimeError as error:
        raise SystemExit(f"error: {error}") from None
    except KeyboardInterrupt:
        raise SystemExit("drill stopped") from None
    states = ", ".join(incident.state for incident in report.incidents) or "none"
    print(f"incidents: {len(report.incidents)} ({states}); emails: {report.emails}")
    if not report.passed:
        raise SystemExit("error: the drill expected one incident, emailed once and closed")
    print("passed: one incident, one email, closed")


def _register_production_drills(actions) -> None:
    from clickstream.monitoring import drill

    for action, summary in (
        (
            "drill-backlog",
            "stop the pull subscriber while the simulator publishes: the backlog-age "
            "policy's twin opens an incident and emails once, then closes it when the "
            "subscriber, started again, catches up",
        ),
        (
            "drill-dead-letters",
            "publish malformed visits to the running pull subscriber: the dead-letter-rows "
            "policy's twin opens one incident, emails once, and closes it when no more come",
        ),
    ):
        parser = actions.add_parser(
            action,
            help=summary.split(":")[0],
            description=f"On the local stack: {summary}. The policy is the production one "
            "(docs/alerts.md) with periods of seconds; the points come from a sampler of the "
            "emulators. Needs `clickstream local up`.",
        )
        parser.add_argument("--email", default=drill.EMAIL, help="the alert's recipient")
        parser.add_argument("--topic", default=names.TOPIC, help=f"topic (default: {names.TOPIC})")
        parser.add_argument("--smtp", metavar="HOST:PORT", help="email through this SMTP server")
        parser.add_argument("--maildir", help=f"the Maildir (default: STATE/{names.DRILL_MAILBOX})")
        parser.add_argument(
            "--incidents", help=f"incidents (default: STATE/{names.INCIDENTS_FILE})"
        )
        parser.set_defaults(run=_production_drill)
