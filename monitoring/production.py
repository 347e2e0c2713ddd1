"""Production alerting, declared once per template and subscriber, on Google's published
metrics (https://cloud.google.com/monitoring/api/metrics_gcp, each named exactly), routed to the
email channel of ``alerting``, each policy with a runbook line, and one dashboard with a tile
(the policy's chart) per policy:

- every template (``metadata/``): its jobs failed (``dataflow.googleapis.com/job/is_failed``);
  the streaming ones also falling behind (``job/system_lag``) or their output going stale
  (``job/data_watermark_age``); jobs are found by the names ``clickstream template`` and the
  Composer DAG give them;
- every subscription (``clickstream.deploy.pubsub``): its oldest unacknowledged message ageing
  (``pubsub.googleapis.com/subscription/oldest_unacked_message_age``) and its backlog growing
  (``subscription/num_undelivered_messages``); every dead-letter subscription: any message in it;
- the push subscriber's Cloud Run function answering 5xx (``run.googleapis.com/request_count`` of
  response class 5xx); the pull subscriber's instance group without a VM
  (``compute.googleapis.com/instance_group/size``);
- rows written to the ``dead_letter`` table (``bigquery.googleapis.com/storage/uploaded_row_count``
  of table ``dead_letter``): a visit or event the writers rejected;
- a batch migration whose counts did not reconcile: no published metric says so, so a log-based
  counter (``UNRECONCILED_METRIC``) of the error line the Composer DAG logs then
  (``core.landing.UNRECONCILED``; Composer sends the Airflow workers' task logs to Cloud
  Logging as the log ``airflow-worker`` of resource type ``cloud_composer_environment``).

Thresholds are ``Thresholds``, each default with its reason (``REASONS``). ``resources`` returns
the denial-of-service alerting's resources and these, in the order plan/apply needs them.
"""

import dataclasses
from collections.abc import Iterable

from clickstream.core import landing, names, templates
from clickstream.gcp import plan, pubsub
from clickstream.monitoring import alerting

POLICY_PREFIX = "Clickstream: "
UNRECONCILED_METRIC = "clickstream_unreconciled_migrations"
COMPOSER_LOG = "airflow-worker"  # the Composer environment's Airflow task logs
DASHBOARD_KEY = "production-dashboard"
AUTO_CLOSE_SECONDS = 1800


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """The production policies' thresholds and periods (seconds unless said); ``REASONS`` says
    why each default."""

    period: int = 60
    system_lag: int = 300
    watermark_age: int = 600
    backlog_age: int = 600
    backlog_messages: int = 10_000
    sustained: int = 300
    push_errors: int = 5
    error_window: int = 300


REASONS = {
    "period": "every policy's alignment period: Cloud Monitoring's shortest (60 s) and the rate "
    "at which Dataflow and Pub/Sub report these metrics",
    "system_lag": "the pipelines window by the minute: five minutes behind is five windows "
    "late, past the noise of an autoscaling step or a worker restart",
    "watermark_age": "ten minutes, the templates' allowed lateness (600 s): windows older than "
    "that can no longer be completed on time",
    "backlog_age": "longer than the subscriptions' longest redelivery backoff (600 s): not a "
    "retry any more, a consumer that stopped or cannot write",
    "backlog_messages": "two autoscaler targets of the pull group (5,000 messages per VM) "
    "waiting for five minutes: more than a burst the group absorbs",
    "sustained": "how long a lag, a stale watermark, a backlog or an empty group must last: "
    "longer than an autoscaling step or a VM's restart",
    "push_errors": "a few 5xx answers in five minutes are BigQuery hiccups Pub/Sub retries; more "
    "is an outage of the function or of BigQuery",
    "error_window": "the window the push function's 5xx answers are summed over",
}


@dataclasses.dataclass(frozen=True)
class Watch:
    """One production alert: ``metric`` of ``resource`` selected by ``where`` (if any), aligned by
    ``aligner`` (and reduced by ``reducer``) per ``window`` seconds, compared with
    ``threshold`` for ``duration`` seconds. ``why`` explains the threshold, ``action`` is the
    runbook line."""

    key: str
    title: str
    metric: str
    resource: str
    where: str
    aligner: str
    comparison: str
    threshold: float
    why: str
    action: str
    window: int
    duration: int = 0
    reducer: str = "REDUCE_NONE"
    missing_data: str | None = None

    @property
    def metric_filter(self) -> str:
        found = f'metric.type = "{self.metric}" AND resource.type = "{self.resource}"'
        return f"{found} AND {self.where}" if self.where else found


def _job_names(template: str) -> str:
    """A filter clause of the jobs of ``template``: named by ``clickstream template`` (and for
    the batch migration by the Composer DAG, one job per landed file)."""
    prefixes = [templates.job_prefix(template)]
    if template == "batch_migration":
        prefixes.append(landing.JOB_PREFIX)
    pattern = "|".join(prefix.removesuffix("-") for prefix in prefixes)
    return f'resource.labels.job_name = monitoring.regex.full_match("({pattern})-.*")'


@dataclasses.dataclass(frozen=True)
class Production:
    """The production alerting of ``project``'s templates and ``subscriptions``, by the names
    the deployments give (``core/names.py``)."""

    project: str
    subscriptions: tuple[pubsub.Subscription, ...]
    thresholds: Thresholds = Thresholds()
    dataset: str = names.DATASET
    function: str = names.PUSH_FUNCTION
    group: str = names.PULL_GROUP

    def watches(self) -> list[Watch]:
        """Every alert, templates first, then subscriptions, the subscribers and the tables."""
        found = [w for name in templates.template_names() for w in self._template(name)]
        dead_letters: dict[str, None] = {}
        for subscription in self.subscriptions:
            found += self._subscription(subscription.name)
            if pubsub.POLICIES[subscription.consumer].dead_letter:
                dead_letters[names.dead_letter_topic(subscription.topic.rsplit("/", 1)[-1])] = None
        found += [self._dead_letters(name) for name in dead_letters]
        return [*found, *self._subscribers(), self._dead_letter_rows(), self._unreconciled()]

    def _template(self, name: str) -> list[Watch]:
        t, jobs = self.thresholds, _job_names(name)
        watches = [
            Watch(
                f"{name}-failed",
                f"{name} job failed",
                "dataflow.googleapis.com/job/is_failed",
                "dataflow_job",
                jobs,
                "ALIGN_MAX",
                "COMPARISON_GT",
                0,
                "any failed job: nothing restarts it, and a streaming one stops consuming",
                "Read the job's error in the Dataflow console (job logs, `job-message`), fix it "
                "and launch the template again with the same subscription: it resumes from "
                "the backlog that the failed job left unacknowledged.",
                t.period,
            )
        ]
        if not templates.metadata(name)["streaming"]:
            return watches
        return [
            *watches,
            Watch(
                f"{name}-system-lag",
                f"{name} falling behind",
                "dataflow.googleapis.com/job/system_lag",
                "dataflow_job",
                jobs,
                "ALIGN_MAX",
                "COMPARISON_GT",
                t.system_lag,
                REASONS["system_lag"],
                "Look at the job's autoscaling and its slowest step (Dataflow console, job "
                "graph); raise max_workers if it is at its maximum, or fix the step that "
                "waits (a BigQuery quota, a hot key).",
                t.period,
                t.sustained,
            ),
            Watch(
                f"{name}-watermark-age",
                f"{name} output going stale",
                "dataflow.googleapis.com/job/data_watermark_age",
                "dataflow_job",
                jobs,
                "ALIGN_MAX",
                "COMPARISON_GT",
                t.watermark_age,
                REASONS["watermark_age"],
                "Windows are not closing: check that the subscription still receives messages "
                "(its backlog policies) and that no step is stuck (job graph, worker logs).",
                t.period,
                t.sustained,
            ),
        ]

    def _subscription(self, name: str) -> list[Watch]:
        t, where = self.thresholds, f'resource.labels.subscription_id = "{name}"'
        return [
            Watch(
                f"{name}-backlog-age",
                f"{name}: oldest unacknowledged message ageing",
                "pubsub.googleapis.com/subscription/oldest_unacked_message_age",
                "pubsub_subscription",
                where,
                "ALIGN_MAX",
                "COMPARISON_GT",
                t.backlog_age,
                REASONS["backlog_age"],
                f"The consumer of {name} stopped or cannot write: check that it runs (its "
                "health, its logs) and that BigQuery accepts its rows; it catches up by itself "
                "once it runs again.",
                t.period,
            ),
            Watch(
                f"{name}-backlog-size",
                f"{name}: backlog growing",
                "pubsub.googleapis.com/subscription/num_undelivered_messages",
                "pubsub_subscription",
                where,
                "ALIGN_MAX",
                "COMPARISON_GT",
                t.backlog_messages,
                REASONS["backlog_messages"],
                f"More is published to {name} than its consumer acknowledges: scale the "
                "consumer out (the pull group's max replicas, the function's max instances, "
                "the job's max workers) or find what slows it.",
                t.period,
                t.sustained,
            ),
        ]

    def _dead_letters(self, name: str) -> Watch:
        return Watch(
            f"{name}-messages",
            f"{name}: messages dead-lettered",
            "pubsub.googleapis.com/subscription/num_undelivered_messages",
            "pubsub_subscription",
            f'resource.labels.subscription_id = "{name}"',
            "ALIGN_MAX",
            "COMPARISON_GT",
            0,
            "any message: it failed every delivery attempt (BigQuery down for long, or a bug); "
            "the subscription keeps it until it is handled",
            f"Pull a few messages of {name} (`gcloud pubsub subscriptions pull {name}`), find "
            "why their deliveries failed, fix it, then republish them to their topic and "
            "acknowledge them here.",
            self.thresholds.period,
        )

    def _subscribers(self) -> list[Watch]:
        t = self.thresholds
        return [
            Watch(
                "push-errors",
                f"push subscriber {self.function} answering 5xx",
                "run.googleapis.com/request_count",
                "cloud_run_revision",
                f'resource.labels.service_name = "{self.function}" AND '
                'metric.labels.response_code_class = "5xx"',
                "ALIGN_SUM",
                "COMPARISON_GT",
                t.push_errors,
                REASONS["push_errors"],
                "Read the function's logs (Cloud Run, service "
                f"{self.function}): 503 is BigQuery unavailable (Pub/Sub retries, then "
                "dead-letters), 500 a bug; redeploy or roll back.",
                t.error_window,
                reducer="REDUCE_SUM",
            ),
            Watch(
                "pull-group-empty",
                f"pull subscriber group {self.group} without a VM",
                "compute.googleapis.com/instance_group/size",
                "instance_group",
                f'resource.labels.instance_group_name = "{self.group}"',
                "ALIGN_MIN",
                "COMPARISON_LT",
                1,
                "no VM for five minutes: autohealing did not bring one back (quota, image or "
                "startup script failing), so nothing pulls",
                f"Look at the group's errors (`gcloud compute instance-groups managed "
                f"list-errors {self.group}`) and a VM's serial output; fix the template or "
                "quota.",
                t.period,
                t.sustained,
            ),
        ]

    def _dead_letter_rows(self) -> Watch:
        return Watch(
            "dead-letter-rows",
            "rows written to dead_letter",
            "bigquery.googleapis.com/storage/uploaded_row_count",
            "bigquery_dataset",
            f'resource.labels.dataset_id = "{self.dataset}" AND '
            'metric.labels.table = "dead_letter"',
            "ALIGN_SUM",
            "COMPARISON_GT",
            0,
            "any row: a message that is not a visit, or an event the visit model rejects; "
            "the rest of the data is loaded, but someone sends bad data",
            f"Query `{self.dataset}.dead_letter` for the newest rows: `reason` says what was "
            "wrong and `payload` holds the message as it came; fix the sender, then replay "
            "the payloads if they can be mended.",
            self.thresholds.period,
            self.thresholds.period,  # the shortest duration that lets a quiet minute close it
            reducer="REDUCE_SUM",
            missing_data="EVALUATION_MISSING_DATA_INACTIVE",
        )

    def _unreconciled(self) -> Watch:
        return Watch(
            "unreconciled-migration",
            "batch migration that did not reconcile",
            alerting.USER_METRIC_PREFIX + UNRECONCILED_METRIC,
            "cloud_composer_environment",
            "",  # every environment: the metric counts the catalog's DAG's lines only
            "ALIGN_SUM",
            "COMPARISON_GT",
            0,
            "any: a migration whose records read are not its visits loaded and rejected, or "
            "whose events do not add up, lost or invented rows",
            "Find the DAG run's `announce_processed` log line (its file and job), compare the "
            "job's counters with the file's lines, and load the file again once the cause is "
            "fixed (a new generation of the object starts a new run).",
            self.thresholds.period,
            self.thresholds.period,
            reducer="REDUCE_SUM",
            missing_data="EVALUATION_MISSING_DATA_INACTIVE",
        )

    def unreconciled_metric(self) -> plan.Resource:
        """The log-based counter of the DAG's line for a file whose counts do not reconcile."""
        fields = {
            "name": UNRECONCILED_METRIC,
            "description": "Batch migrations (one per landed file) whose counts did not "
            "reconcile, from the Composer DAG's error line.",
            "filter": (
                f'resource.type = "cloud_composer_environment" AND '
                f'logName = "projects/{self.project}/logs/{COMPOSER_LOG}" AND '
                f'severity >= ERROR AND textPayload : "{landing.UNRECONCILED}"'
            ),
            "metric_descriptor": {
                "metric_kind": "DELTA",
                "value_type": "INT64",
                "unit": "1",
                "display_name": "Clickstream: unreconciled batch migrations",
            },
        }
        return plan.Resource(
            alerting.LOG_METRIC, UNRECONCILED_METRIC, fields, immutable=("metric_descriptor",)
        )

    def policy(self, watch: Watch) -> plan.Resource:
        """The alert policy of ``watch``, emailing the shared channel."""
        aggregation = {
            "alignment_period": f"{watch.window}s",
            "per_series_aligner": watch.aligner,
            "cross_series_reducer": watch.reducer,
        }
        condition = {
            "filter": watch.metric_filter,
            "aggregations": [aggregation],
            "comparison": watch.comparison,
            "threshold_value": watch.threshold,
            "duration": f"{watch.duration}s",
            "trigger": {"count": 1},
        }
        if watch.missing_data:
            condition["evaluation_missing_data"] = watch.missing_data
        title = POLICY_PREFIX + watch.title
        fields = {
            "display_name": title,
            "documentation": {
                "subject": f"[ALERT] {title}",
                "content": f"{watch.action} Threshold: {watch.why}. Runbook: docs/alerts.md in "
                "the clickstream pipeline catalog.",
                "mime_type": "text/markdown",
            },
            "user_labels": {names.RESOURCE_LABEL: watch.key},
            "combiner": "OR",
            "conditions": [{"display_name": watch.title, "condition_threshold": condition}],
            "notification_channels": [plan.Reference(alerting.CHANNEL, alerting.EMAIL)],
            "alert_strategy": {
                "auto_close": f"{AUTO_CLOSE_SECONDS}s",
                "notification_prompts": ["OPENED"],
            },
            "severity": "ERROR",
            "enabled": True,
        }
        return plan.Resource(alerting.POLICY, watch.key, fields)

    def dashboard(self, watches: list[Watch]) -> plan.Resource:
        """A tile per policy: its chart, with its threshold."""
        widgets = [
            {"title": w.title, "alert_chart": {"name": plan.Reference(alerting.POLICY, w.key)}}
            for w in watches
        ]
        fields = {
            "display_name": "Clickstream production alerts",
            "labels": {names.RESOURCE_LABEL: DASHBOARD_KEY},
            "grid_layout": {"columns": "2", "widgets": widgets},
        }
        return plan.Resource(alerting.DASHBOARD, DASHBOARD_KEY, fields)

    def resources(self) -> list[plan.Resource]:
        """The log-based metric, the policies, then their dashboard (the channel is the DoS
        alerting's)."""
        watches = self.watches()
        policies = [self.policy(w) for w in watches]
        return [self.unreconciled_metric(), *policies, self.dashboard(watches)]


def resources(
    dos: alerting.Alerting,
    subscriptions: Iterable[pubsub.Subscription],
    thresholds: Thresholds = Thresholds(),
) -> list[plan.Resource]:
    """Every alerting resource of the catalog in ``dos.project``, emailing ``dos.email``: the
    denial-of-service alerting's (its channel first), then the production policies of the
    templates and of ``subscriptions`` (``clickstream.deploy.pubsub.subscriptions``) with their
    dashboard."""
    production = Production(dos.project, tuple(subscriptions), thresholds)
    return [*dos.resources(), *production.resources()]
