"""The denial-of-service drill's alerting, declared once (lab Task 3.5): two log-based metrics
over the entries ``dos_detection`` writes, an email notification channel (shared by every
policy of the catalog, ``clickstream.monitoring.production``), an alert policy and a Cloud
Monitoring dashboard, as ``clickstream.gcp.plan`` resources in their APIs' JSON form.

- ``clickstream_dos_page_views`` (distribution): each window's page views, from its first pane.
- ``clickstream_dos_windows_over_threshold`` (counter): windows the detector flagged.
- The policy: per alignment period of one window, the mean page views of the windows logged in
  it per ``timing`` series, the highest series, above ``threshold``: an incident, one email when
  it opens. The metric is a DELTA DISTRIBUTION, for which Cloud Monitoring's API reference
  documents ``ALIGN_SUM`` (the period's values merged into one distribution) but not
  ``ALIGN_MEAN`` (numeric values only); ``REDUCE_MEAN`` takes distributions and gives their mean,
  which a distribution keeps exactly (percentiles are estimated from its buckets). So two
  aggregations, applied in order (``MetricThreshold.aggregations``): ``ALIGN_SUM`` then
  ``REDUCE_MEAN`` by ``timing``; ``ALIGN_MAX`` then ``REDUCE_MAX`` across the two. A period
  without entries changes nothing (no ``evaluation_missing_data``: unspecified is NO_OP, and the
  field needs a duration of a minute or more): an incident closes when windows are back under
  the threshold, or after ``AUTO_CLOSE_SECONDS`` without data.
- The dashboard: the policy's chart (page views per window with the threshold line), the flagged
  windows, and the log entries. The threshold lives in the policy alone.

The metrics' filters come from the selections of ``core/dos.py``, which the local alert evaluator
(``clickstream.monitoring.evaluator``) applies to the local log; the evaluator also reads its
aggregation and threshold from the policy declared here.
"""

import dataclasses
import math
import re

from clickstream.core import dos, names, templates
from clickstream.gcp import plan

DETECTOR = "dos_detection"  # the template whose entries are watched
LOG_METRIC, CHANNEL = "log_metric", "notification_channel"  # the kinds of resource
POLICY, DASHBOARD = "alert_policy", "dashboard"
EMAIL, POLICY_KEY, DASHBOARD_KEY = "dos-email", "dos-policy", "dos-dashboard"  # their labels
USER_METRIC_PREFIX = "logging.googleapis.com/user/"
COMPARISON = "COMPARISON_GT"
PROMPTS = ("OPENED",)  # one email per incident
AUTO_CLOSE_SECONDS = 1800
POLICY_NAME = "Clickstream: possible denial of service"
PROJECT_ID = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
METRIC_TYPE = re.compile(r'metric\.type = "([^"]+)"')  # in the filters declared here
EMAIL_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


@dataclasses.dataclass(frozen=True)
class LogMetric:
    """A log-based metric over the DoS log: the entries of ``selection``, counted (no
    ``value_field``) or as a distribution of ``value_field``, per ``core/dos.py`` series labels."""

    name: str
    display_name: str
    description: str
    selection: dos.Selection
    value_field: str | None = None

    @property
    def type(self) -> str:
        return USER_METRIC_PREFIX + self.name


METRICS = (
    LogMetric(
        names.DOS_PAGE_VIEWS_METRIC,
        "DoS detector: page views per window",
        "Page views of each window of the denial-of-service detector (dos_detection), from the "
        "window's first pane; late updates of a window are not counted again.",
        dos.FIRST_PANES,
        dos.PAGE_VIEWS,
    ),
    LogMetric(
        names.DOS_FLAGGED_WINDOWS_METRIC,
        "DoS detector: windows over its threshold",
        "Windows the denial-of-service detector (dos_detection) flagged over_threshold in their "
        "first pane.",
        dos.FLAGGED_WINDOWS,
    ),
)
LABEL_DESCRIPTIONS = {
    dos.TIMING: "ON_TIME: the window's count when the watermark passed its end; LATE: its first "
    "count came with late data"
}


def _detector_parameter(name: str) -> dict:
    (parameter,) = [p for p in templates.metadata(DETECTOR)["parameters"] if p["name"] == name]
    return parameter


def _matches_parameter(name: str, value: str) -> bool:
    return all(re.fullmatch(r, value) for r in _detector_parameter(name).get("regexes", []))


DEFAULT_WINDOW_SECONDS = int(_detector_parameter("window_seconds")["defaultValue"])
DEFAULT_THRESHOLD = float(_detector_parameter("threshold")["defaultValue"])


def threshold_value(text: str) -> float:
    """A threshold given as text: a positive number of page views per window."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"threshold must be a positive number of page views, not {text!r}")
    return value


def window_value(text: str) -> int:
    """A window given as text: whole seconds, as ``dos_detection``'s window_seconds takes."""
    if not _matches_parameter("window_seconds", text):
        raise ValueError(f"window must be a whole number of seconds from 1 to 99999, not {text!r}")
    return int(text)


def _number(value: float) -> float | int:
    return int(value) if value == int(value) else value


@dataclasses.dataclass(frozen=True)
class Alerting:
    """The drill's alerting for ``project``: an email to ``email`` when the page views per
    window of the detector's log ``log_name`` go above ``threshold``. Raises ValueError with a
    sentence naming what is wrong."""

    project: str
    email: str
    threshold: float = DEFAULT_THRESHOLD
    log_name: str = names.DOS_LOG
    window_seconds: int = DEFAULT_WINDOW_SECONDS

    def __post_init__(self):
        if not PROJECT_ID.fullmatch(self.project):
            raise ValueError(f"{self.project!r} is not a Google Cloud project id")
        if not EMAIL_ADDRESS.fullmatch(self.email):
            raise ValueError(f"{self.email!r} is not an email address")
        threshold_value(str(self.threshold))
        if not _matches_parameter("log_name", self.log_name):
            raise ValueError(f"{self.log_name!r} is not a log name ({DETECTOR}'s log_name)")
        window_value(str(self.window_seconds))

    @property
    def alignment(self) -> str:
        return f"{self.window_seconds}s"

    def metric_filter(self, metric: LogMetric) -> str:
        """A Cloud Monitoring filter of the metric's time series."""
        return f'metric.type = "{metric.type}" AND resource.type = "{dos.RESOURCE_TYPE}"'

    def aggregations(self) -> list[dict]:
        """Per period: the page views of each ``timing`` series' windows merged (ALIGN_SUM of
        distributions) and their mean (REDUCE_MEAN), then the highest of those means."""
        return [
            {
                "alignment_period": self.alignment,
                "per_series_aligner": "ALIGN_SUM",
                "cross_series_reducer": "REDUCE_MEAN",
                "group_by_fields": [f"metric.label.{label}" for label in dos.SERIES_LABELS],
            },
            {
                "alignment_period": self.alignment,
                "per_series_aligner": "ALIGN_MAX",
                "cross_series_reducer": "REDUCE_MAX",
            },
        ]

    def resources(self) -> list[plan.Resource]:
        """Every resource, each after those it refers to."""
        metrics = [self.log_metric(metric) for metric in METRICS]
        return [*metrics, self.channel(), self.policy(), self.dashboard()]

    def log_metric(self, metric: LogMetric) -> plan.Resource:
        labels = [
            {"key": field, "value_type": "STRING", "description": LABEL_DESCRIPTIONS[field]}
            for field in dos.SERIES_LABELS
        ]
        fields = {
            "name": metric.name,
            "description": metric.description,
            "filter": metric.selection.logging_filter(self.project, self.log_name),
            "metric_descriptor": {
                "metric_kind": "DELTA",
                "value_type": "DISTRIBUTION" if metric.value_field else "INT64",
                "unit": "1",
                "display_name": metric.display_name,
                "labels": labels,
            },
            "label_extractors": {field: dos.extractor(field) for field in dos.SERIES_LABELS},
        }
        if metric.value_field:
            fields["value_extractor"] = dos.extractor(metric.value_field)
            buckets = {"num_finite_buckets": 32, "growth_factor": 2.0, "scale": 1.0}
            fields["bucket_options"] = {"exponential_buckets": buckets}
        return plan.Resource(LOG_METRIC, metric.name, fields, immutable=("metric_descriptor",))

    def channel(self) -> plan.Resource:
        fields = {
            "type_": "email",  # the client library's name of the API's field "type"
            "display_name": "Clickstream alerts",
            "description": "Where the clickstream catalog's alert policies send their email.",
            "labels": {"email_address": self.email},
            "user_labels": {names.RESOURCE_LABEL: EMAIL},
            "enabled": True,
        }
        return plan.Resource(CHANNEL, EMAIL, fields, immutable=("type_",))

    def policy(self) -> plan.Resource:
        (page_views, _) = METRICS
        condition = {
            "filter": self.metric_filter(page_views),
            "aggregations": self.aggregations(),
            "comparison": COMPARISON,
            "threshold_value": _number(float(self.threshold)),
            "duration": "0s",
            "trigger": {"count": 1},
        }
        fields = {
            "display_name": POLICY_NAME,
            "documentation": {
                "subject": f"[ALERT] {POLICY_NAME}",
                "content": (
                    f"The page views per window of the denial-of-service detector ({DETECTOR}, "
                    f"log `{self.log_name}`) are above the threshold. Look at the dashboard "
                    "*Clickstream denial-of-service drill* and at the log entries flagged "
                    "`over_threshold`, then block the source or scale out. Runbook: "
                    "docs/dos-drill.md in the clickstream pipeline catalog."
                ),
                "mime_type": "text/markdown",
            },
            "user_labels": {names.RESOURCE_LABEL: POLICY_KEY},
            "combiner": "OR",
            "conditions": [
                {
                    "display_name": "Page views per window above the threshold",
                    "condition_threshold": condition,
                }
            ],
            "notification_channels": [plan.Reference(CHANNEL, EMAIL)],
            "alert_strategy": {
                "auto_close": f"{AUTO_CLOSE_SECONDS}s",
                "notification_prompts": list(PROMPTS),
            },
            "severity": "WARNING",
            "enabled": True,
        }
        return plan.Resource(POLICY, POLICY_KEY, fields)

    def dashboard(self) -> plan.Resource:
        (_, flagged) = METRICS
        flagged_chart = {
            "data_sets": [
                {
                    "time_series_query": {
                        "time_series_filter": {
                            "filter": self.metric_filter(flagged),
                            "aggregation": {
                                "alignment_period": "60s",
                                "per_series_aligner": "ALIGN_SUM",
                                "cross_series_reducer": "REDUCE_SUM",
                                "group_by_fields": [f"metric.label.{dos.TIMING}"],
                            },
                        }
                    },
                    "plot_type": "STACKED_BAR",
                }
            ],
            "y_axis": {"label": "windows", "scale": "LINEAR"},
        }
        logs = {
            "filter": dos.EVERY_ENTRY.logging_filter(self.project, self.log_name),
            "resource_names": [f"projects/{self.project}"],
        }
        widgets = [
            {
                "title": f"Page views per {self.window_seconds}-second window, alert threshold",
                "alert_chart": {"name": plan.Reference(POLICY, POLICY_KEY)},
            },
            {"title": "Windows the detector flagged, per minute", "xy_chart": flagged_chart},
            {"title": f"Log {self.log_name}: windows, late updates, rejects", "logs_panel": logs},
        ]
        fields = {
            "display_name": "Clickstream denial-of-service drill",
            "labels": {names.RESOURCE_LABEL: DASHBOARD_KEY},
            "grid_layout": {"columns": "1", "widgets": widgets},
        }
        return plan.Resource(DASHBOARD, DASHBOARD_KEY, fields)


def metric_of_type(metric_type: str) -> LogMetric:
    """The declared log-based metric of a Cloud Monitoring metric type."""
    for metric in METRICS:
        if metric.type == metric_type:
            return metric
    raise KeyError(f"no log-based metric of type {metric_type}")
