"""Fakes of the Google services the alerting uses, served over gRPC on loopback, so that the real
client libraries run against them unchanged: Cloud Logging's MetricsServiceV2 and Cloud
Monitoring's NotificationChannelService, AlertPolicyService and DashboardsService.

They implement the calls ``clickstream.monitoring`` makes, with the behaviour it relies on:
NotFound and AlreadyExists; names the server assigns (channels, policies, dashboards, and each
policy's conditions); a log-based metric's descriptor that cannot change; update masks; a
dashboard's etag (Aborted when stale); lists in pages of two (the client's pager follows them);
and a new log-based metric unknown to Monitoring for ``metric_delay`` seconds ("Cannot find
metric(s) that match ...", NotFound, as Cloud Monitoring answers for up to ten minutes).
Every request is recorded in ``calls``.

They also enforce, as Cloud Monitoring does, the documented rules of what a policy or a chart
may ask of a metric (``Rules`` below, each rule beside where Google states it): the metric
types it knows (Google's built-in metrics from its published list, ``BUILT_IN``, and the
log-based metrics created here), which aligner and reducer fit a metric's kind and value type,
alignment periods, durations, comparisons and labels. A request that breaks one is refused with
INVALID_ARGUMENT (NOT_FOUND for a metric type it does not know), naming the field, as Google's
answers do.
"""

import dataclasses
import itertools
import re
import threading
import time
import uuid
from concurrent import futures

import grpc
import proto
from google.api import metric_pb2
from google.cloud import monitoring_dashboard_v1 as dashboards
from google.cloud import monitoring_v3 as monitoring
from google.cloud.logging_v2.types import logging_metrics
from google.protobuf import empty_pb2, timestamp_pb2

from clickstream.fakes.rules import Rule
from clickstream.fakes.server import Fault

PAGE_SIZE = 2
MUTATING = ("Create", "Update", "Delete")
METRIC_TYPE = re.compile(r'metric\.type\s*=\s*"([^"]+)"')
USER_METRIC = "logging.googleapis.com/user/"


REFERENCE = "https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.alertPolicies"
METRICS_LIST = "https://cloud.google.com/monitoring/api/metrics_gcp"
RULES = {
    "aligner": Rule(
        "monitoring.aligner",
        "Cloud Monitoring",
        "an aligner applies only to the metric kinds and value types the API reference lists "
        "for it (ALIGN_MEAN: numeric values; a distribution: ALIGN_DELTA, ALIGN_SUM, the "
        "percentiles...); aggregations apply in order, each on what the previous one gave",
        f"{REFERENCE}, Aggregation.Aligner",
    ),
    "reducer": Rule(
        "monitoring.reducer",
        "Cloud Monitoring",
        "a reducer applies only to the value types the API reference lists for it",
        f"{REFERENCE}, Aggregation.Reducer",
    ),
    "metric-known": Rule(
        "monitoring.metric-known",
        "Cloud Monitoring",
        "a metric type is one of Google's published metrics (with its kind, value type and "
        "monitored resource) or a metric of the project, else 'Cannot find metric(s)'; a new "
        "log-based metric can take minutes to be found",
        METRICS_LIST,
    ),
    "filter": Rule(
        "monitoring.filter",
        "Cloud Monitoring",
        "a condition's filter names one metric type and the resource type its time series "
        "belong to",
        f"{REFERENCE}, MetricThreshold.filter",
    ),
    "periods": Rule(
        "monitoring.periods",
        "Cloud Monitoring",
        "alignment periods of at least 60 s (at most 25 h in a policy), durations in whole "
        "minutes, GT or LT comparisons, missing-data handling only with a duration",
        f"{REFERENCE}, Aggregation.alignmentPeriod, MetricThreshold.duration",
    ),
}
GAUGE, DELTA, CUMULATIVE = "GAUGE", "DELTA", "CUMULATIVE"
BOOL, INT64, DOUBLE, STRING, DISTRIBUTION = "BOOL", "INT64", "DOUBLE", "STRING", "DISTRIBUTION"
# "Numeric" in the reference: INT64 and DOUBLE (MONEY, which it does not mention, is left out).
NUMERIC = frozenset({INT64, DOUBLE})
EVERY_TYPE = NUMERIC | {BOOL, STRING, DISTRIBUTION}
GAUGE_OR_DELTA = frozenset({GAUGE, DELTA})


@dataclasses.dataclass(frozen=True)
class Operation:
    """An aligner or reducer as the API reference documents it: the metric kinds and value
    types it is valid for, and the kind and value type of its result (None: the input's)."""

    kinds: frozenset[str]
    types: frozenset[str]
    kind_out: str | None = None
    type_out: str | None = None


def _percentiles(prefix: str, operation: Operation) -> dict[str, Operation]:
    return {f"{prefix}_{p}": operation for p in ("99", "95", "50", "05")}


# The enum Aligner of Aggregation (REFERENCE, section Aligner; the same per-value text is in the
# REST discovery document monitoring.v3.json, Aggregation.perSeriesAligner), in our words:
ALIGNERS = {
    # no alignment: the raw points, of any kind and type; refused with a cross-series reducer
    "ALIGN_NONE": Operation(frozenset({GAUGE, DELTA, CUMULATIVE}), EVERY_TYPE),
    # y1 - y0 over the period, for CUMULATIVE and DELTA metrics; a DELTA of the same type
    "ALIGN_DELTA": Operation(frozenset({CUMULATIVE, DELTA}), EVERY_TYPE, kind_out=DELTA),
    # delta over time, for numeric CUMULATIVE and DELTA metrics; a DOUBLE GAUGE
    "ALIGN_RATE": Operation(frozenset({CUMULATIVE, DELTA}), NUMERIC, GAUGE, DOUBLE),
    # interpolation at the period's end, numeric GAUGE metrics only; the type is kept
    "ALIGN_INTERPOLATE": Operation(frozenset({GAUGE}), NUMERIC),
    # the last point before the period's end, GAUGE metrics only; the type is kept
    "ALIGN_NEXT_OLDER": Operation(frozenset({GAUGE}), EVERY_TYPE),
    # smallest, largest value: numeric GAUGE and DELTA metrics; the type is kept
    "ALIGN_MIN": Operation(GAUGE_OR_DELTA, NUMERIC),
    "ALIGN_MAX": Operation(GAUGE_OR_DELTA, NUMERIC),
    # the mean: numeric GAUGE and DELTA metrics (not distributions); a DOUBLE
    "ALIGN_MEAN": Operation(GAUGE_OR_DELTA, NUMERIC, type_out=DOUBLE),
    # how many values: numeric or Boolean GAUGE and DELTA metrics; an INT64
    "ALIGN_COUNT": Operation(GAUGE_OR_DELTA, NUMERIC | {BOOL}, type_out=INT64),
    # the sum: numeric and distribution GAUGE and DELTA metrics; the type is kept
    "ALIGN_SUM": Operation(GAUGE_OR_DELTA, NUMERIC | {DISTRIBUTION}),
    # the standard deviation: numeric GAUGE and DELTA metrics; a DOUBLE
    "ALIGN_STDDEV": Operation(GAUGE_OR_DELTA, NUMERIC, type_out=DOUBLE),
    # counts and fraction of True values: Boolean GAUGE metrics only
    "ALIGN_COUNT_TRUE": Operation(frozenset({GAUGE}), frozenset({BOOL}), type_out=INT64),
    "ALIGN_COUNT_FALSE": Operation(frozenset({GAUGE}), frozenset({BOOL}), type_out=INT64),
    "ALIGN_FRACTION_TRUE": Operation(frozenset({GAUGE}), frozenset({BOOL}), type_out=DOUBLE),
    # a percentile of the period's points: distribution GAUGE and DELTA metrics; a DOUBLE GAUGE
    **_percentiles(
        "ALIGN_PERCENTILE", Operation(GAUGE_OR_DELTA, frozenset({DISTRIBUTION}), GAUGE, DOUBLE)
    ),
    # percentage change: numeric GAUGE and DELTA metrics; a DOUBLE GAUGE
    "ALIGN_PERCENT_CHANGE": Operation(GAUGE_OR_DELTA, NUMERIC, GAUGE, DOUBLE),
}
# The enum Reducer of Aggregation (REFERENCE, section Reducer; monitoring.v3.json,
# Aggregation.crossSeriesReducer): every reducer takes DELTA and GAUGE series (the aligned
# ones), of these value types:
REDUCERS = {
    "REDUCE_NONE": Operation(frozenset({GAUGE, DELTA, CUMULATIVE}), EVERY_TYPE),
    "REDUCE_MEAN": Operation(GAUGE_OR_DELTA, NUMERIC | {DISTRIBUTION}, type_out=DOUBLE),
    "REDUCE_MIN": Operation(GAUGE_OR_DELTA, NUMERIC),
    "REDUCE_MAX": Operation(GAUGE_OR_DELTA, NUMERIC),
    "REDUCE_SUM": Operation(GAUGE_OR_DELTA, NUMERIC | {DISTRIBUTION}),
    "REDUCE_STDDEV": Operation(GAUGE_OR_DELTA, NUMERIC | {DISTRIBUTION}, type_out=DOUBLE),
    "REDUCE_COUNT": Operation(GAUGE_OR_DELTA, EVERY_TYPE, type_out=INT64),
    "REDUCE_COUNT_TRUE": Operation(GAUGE_OR_DELTA, frozenset({BOOL}), type_out=INT64),
    "REDUCE_COUNT_FALSE": Operation(GAUGE_OR_DELTA, frozenset({BOOL}), type_out=INT64),
    "REDUCE_FRACTION_TRUE": Operation(GAUGE_OR_DELTA, frozenset({BOOL}), type_out=DOUBLE),
    **_percentiles(
        "REDUCE_PERCENTILE", Operation(GAUGE_OR_DELTA, NUMERIC | {DISTRIBUTION}, type_out=DOUBLE)
    ),
}


@dataclasses.dataclass(frozen=True)
class Metric:
    """A metric type as Google's metrics list gives it: kind, value type, the monitored
    resource type its time series belong to, and the list's section."""

    kind: str
    value_type: str
    resource: str
    listed: str


def _listed(section: str) -> str:
    return f"{METRICS_LIST}, section {section}"


# Google's built-in metrics that the catalog's policies and charts use (METRICS_LIST: each with
# its kind, value type and monitored resource). Any other built-in type is unknown here.
BUILT_IN = {
    "dataflow.googleapis.com/job/is_failed": Metric(GAUGE, INT64, "dataflow_job", "Dataflow"),
    "dataflow.googleapis.com/job/system_lag": Metric(GAUGE, INT64, "dataflow_job", "Dataflow"),
    "dataflow.googleapis.com/job/data_watermark_age": Metric(
        GAUGE, INT64, "dataflow_job", "Dataflow"
    ),
    "pubsub.googleapis.com/subscription/oldest_unacked_message_age": Metric(
        GAUGE, INT64, "pubsub_subscription", "Pub/Sub"
    ),
    "pubsub.googleapis.com/subscription/num_undelivered_messages": Metric(
        GAUGE, INT64, "pubsub_subscription", "Pub/Sub"
    ),
    "run.googleapis.com/request_count": Metric(DELTA, INT64, "cloud_run_revision", "Cloud Run"),
    "compute.googleapis.com/instance_group/size": Metric(
        GAUGE, INT64, "instance_group", "Compute Engine"
    ),
    "bigquery.googleapis.com/storage/uploaded_row_count": Metric(
        DELTA, INT64, "bigquery_dataset", "BigQuery"
    ),
}
RESOURCE_TYPE = re.compile(r'resource\.type\s*=\s*"([^"]+)"')
LABEL = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


def _seconds(duration) -> float:
    return duration.total_seconds() if duration is not None else 0.0


class Refused(Exception):
    """An RPC error: its gRPC status code and message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _page(request, items: list, field: str, response_type):
    start = int(request.page_token or 0)
    size = request.page_size or PAGE_SIZE
    rest = start + size < len(items)
    return response_type(
        **{field: items[start : start + size]}, next_page_token=str(start + size) if rest else ""
    )


def _masked(current, given, paths: list[str], allowed: set[str]):
    """``current`` with the top-level ``paths`` taken from ``given`` (all when none)."""
    paths = paths or sorted(allowed)
    unknown = [p for p in paths if p.split(".")[0] not in allowed]
    if unknown:
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"invalid update_mask path {unknown[0]}")
    updated = type(current)(current)
    for path in paths:
        field = path.split(".")[0]
        setattr(updated, field, getattr(given, field))
    return updated


class FakeGoogle:
    """The four services on one loopback port (``endpoint``), sharing one project's state."""

    def __init__(self, metric_delay: float = 0.0, project=None):
        """``project`` (``clickstream.fakes.project.FakeProject``): the APIs must be enabled."""
        self.metric_delay, self.project = metric_delay, project
        self.metrics: dict[str, logging_metrics.LogMetric] = {}  # by metric id
        self.metric_visible_at: dict[str, float] = {}  # metric type -> monotonic time
        self.channels: dict[str, monitoring.NotificationChannel] = {}
        self.policies: dict[str, monitoring.AlertPolicy] = {}
        self.dashboards: dict[str, dashboards.Dashboard] = {}
        self.calls: list[tuple[str, object]] = []
        self.refusals: list[tuple[str, grpc.StatusCode, str]] = []
        self.ids = itertools.count(1000)
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers(self._handlers())
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop(grace=None)

    def mutating_calls(self) -> list[tuple[str, object]]:
        return [(method, request) for method, request in self.calls if method.startswith(MUTATING)]

    # Plumbing: each method a function of the request, answered or refused

    def _handlers(self):
        metrics, channels = logging_metrics, monitoring
        # Per service, per method: the request's class and the response's (None: Empty).
        services: dict[str, dict[str, tuple[type[proto.Message], type[proto.Message] | None]]] = {
            "google.logging.v2.MetricsServiceV2": {
                "ListLogMetrics": (metrics.ListLogMetricsRequest, metrics.ListLogMetricsResponse),
                "GetLogMetric": (metrics.GetLogMetricRequest, metrics.LogMetric),
                "CreateLogMetric": (metrics.CreateLogMetricRequest, metrics.LogMetric),
                "UpdateLogMetric": (metrics.UpdateLogMetricRequest, metrics.LogMetric),
                "DeleteLogMetric": (metrics.DeleteLogMetricRequest, None),
            },
            "google.monitoring.v3.NotificationChannelService": {
                "ListNotificationChannels": (
                    channels.ListNotificationChannelsRequest,
                    channels.ListNotificationChannelsResponse,
                ),
                "CreateNotificationChannel": (
                    channels.CreateNotificationChannelRequest,
                    channels.NotificationChannel,
                ),
                "UpdateNotificationChannel": (
                    channels.UpdateNotificationChannelRequest,
                    channels.NotificationChannel,
                ),
                "DeleteNotificationChannel": (channels.DeleteNotificationChannelRequest, None),
            },
            "google.monitoring.v3.AlertPolicyService": {
                "ListAlertPolicies": (
                    monitoring.ListAlertPoliciesRequest,
                    monitoring.ListAlertPoliciesResponse,
                ),
                "CreateAlertPolicy": (monitoring.CreateAlertPolicyRequest, monitoring.AlertPolicy),
                "UpdateAlertPolicy": (monitoring.UpdateAlertPolicyRequest, monitoring.AlertPolicy),
                "DeleteAlertPolicy": (monitoring.DeleteAlertPolicyRequest, None),
            },
            "google.monitoring.dashboard.v1.DashboardsService": {
                "ListDashboards": (
                    dashboards.ListDashboardsRequest,
                    dashboards.ListDashboardsResponse,
                ),
                "CreateDashboard": (dashboards.CreateDashboardRequest, dashboards.Dashboard),
                "UpdateDashboard": (dashboards.UpdateDashboardRequest, dashboards.Dashboard),
                "DeleteDashboard": (dashboards.DeleteDashboardRequest, None),
            },
        }
        return [
            grpc.method_handlers_generic_handler(
                service,
                {
                    method: grpc.unary_unary_rpc_method_handler(
                        self._answer(method),
                        request_deserializer=request.deserialize,
                        response_serializer=(
                            response.serialize if response else empty_pb2.Empty.SerializeToString
                        ),
                    )
                    for method, (request, response) in methods.items()
                },
            )
            for service, methods in services.items()
        ]

    def _answer(self, method: str):
        implementation = getattr(self, "_" + re.sub(r"(?<!^)([A-Z])", r"_\1", method).lower())

        def handle(request, context):
            with self.lock:
                self.calls.append((method, request))
                try:
                    if self.project is not None:
                        logging = method.endswith(("LogMetric", "LogMetrics"))
                        service = "logging" if logging else "monitoring"
                        self.project.require(f"{service}.googleapis.com")
                    return implementation(request)
                except (Refused, Fault) as refused:
                    self.refusals.append((method, refused.code, refused.message))
                    error = refused
            context.abort(error.code, error.message)

        return handle

    # MetricsServiceV2

    def _metric(self, name: str) -> logging_metrics.LogMetric:
        found = self.metrics.get(name.rsplit("/", 1)[-1])
        if found is None:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"Metric {name} does not exist.")
        return found

    @staticmethod
    def _check_metric(metric: logging_metrics.LogMetric) -> None:
        descriptor = metric.metric_descriptor
        distribution = descriptor.value_type == descriptor.ValueType.DISTRIBUTION
        if distribution != bool(metric.value_extractor) or (
            distribution and not metric.bucket_options
        ):
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                "a DISTRIBUTION metric needs a value extractor and buckets; a counter has none",
            )
        keys = sorted(label.key for label in descriptor.labels)
        if keys != sorted(metric.label_extractors):
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT, "every label needs exactly one label extractor"
            )

    def _stored_metric(self, project: str, metric: logging_metrics.LogMetric):
        stored = logging_metrics.LogMetric(metric)
        metric_type = USER_METRIC + metric.name
        stored.metric_descriptor.type = metric_type
        stored.metric_descriptor.name = f"{project}/metricDescriptors/{metric_type}"
        stored.create_time = stored.update_time = _now()
        self.metrics[metric.name] = stored
        self.metric_visible_at[metric_type] = time.monotonic() + self.metric_delay
        return stored

    def _list_log_metrics(self, request):
        items = list(self.metrics.values())
        return _page(request, items, "metrics", logging_metrics.ListLogMetricsResponse)

    def _get_log_metric(self, request):
        return self._metric(request.metric_name)

    def _create_log_metric(self, request):
        if request.metric.name in self.metrics:
            raise Refused(grpc.StatusCode.ALREADY_EXISTS, f"Metric {request.metric.name} exists.")
        self._check_metric(request.metric)
        return self._stored_metric(request.parent, request.metric)

    def _update_log_metric(self, request):
        project = request.metric_name.split("/metrics/")[0]
        existing = self.metrics.get(request.metric_name.rsplit("/", 1)[-1])
        self._check_metric(request.metric)
        if existing is not None:  # (UpdateLogMetric creates a missing metric)
            old, new = existing.metric_descriptor, request.metric.metric_descriptor
            if (old.metric_kind, old.value_type, [label.key for label in old.labels]) != (
                new.metric_kind,
                new.value_type,
                [label.key for label in new.labels],
            ):
                raise Refused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "the metric descriptor's kind, value type and labels cannot change",
                )
            stored = logging_metrics.LogMetric(request.metric)
            stored.metric_descriptor.type = old.type
            stored.metric_descriptor.name = old.name
            stored.create_time, stored.update_time = existing.create_time, _now()
            self.metrics[stored.name] = stored
            return stored
        return self._stored_metric(project, request.metric)

    def _delete_log_metric(self, request):
        metric = self._metric(request.metric_name)
        del self.metrics[metric.name]
        self.metric_visible_at.pop(USER_METRIC + metric.name, None)
        return empty_pb2.Empty()

    # NotificationChannelService

    def _channel(self, name: str) -> monitoring.NotificationChannel:
        if name not in self.channels:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"Notification channel {name} not found.")
        return self.channels[name]

    @staticmethod
    def _check_channel(channel: monitoring.NotificationChannel) -> None:
        if channel.type_ != "email" or "@" not in channel.labels.get("email_address", ""):
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                "an email channel needs the label email_address",
            )

    def _list_notification_channels(self, request):
        items = [c for n, c in sorted(self.channels.items()) if n.startswith(request.name + "/")]
        response = monitoring.ListNotificationChannelsResponse
        return _page(request, items, "notification_channels", response)

    def _create_notification_channel(self, request):
        channel = monitoring.NotificationChannel(request.notification_channel)
        self._check_channel(channel)
        channel.name = f"{request.name}/notificationChannels/{next(self.ids)}"
        if "enabled" not in channel:
            channel.enabled = True  # type: ignore[assignment]  # proto-plus wraps it in a BoolValue
        self.channels[channel.name] = channel
        return channel

    def _update_notification_channel(self, request):
        given = request.notification_channel
        current = self._channel(given.name)
        allowed = {"display_name", "description", "labels", "user_labels", "enabled"}
        if "type_" in request.update_mask.paths or "type" in request.update_mask.paths:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "a channel's type cannot change")
        updated = _masked(current, given, list(request.update_mask.paths), allowed)
        self._check_channel(updated)
        self.channels[updated.name] = updated
        return updated

    def _delete_notification_channel(self, request):
        self._channel(request.name)
        users = [p.name for p in self.policies.values() if request.name in p.notification_channels]
        if users and not request.force:
            raise Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"channel {request.name} is used by {users[0]}; delete with force",
            )
        for name in users:
            self.policies[name].notification_channels.remove(request.name)
        del self.channels[request.name]
        return empty_pb2.Empty()

    # Google's rules for what a policy or chart asks of a metric

    def _metric_of(self, field: str, metric_filter: str, resource_required: bool) -> Metric:
        """The metric ``metric_filter`` selects, as Cloud Monitoring knows it."""
        types, resources = METRIC_TYPE.findall(metric_filter), RESOURCE_TYPE.findall(metric_filter)
        # MetricThreshold.filter and MetricAbsence.filter (REFERENCE): a policy's filter must name
        # the metric type and the resource type (a chart's, the metric type).
        if len(types) != 1 or (resource_required and len(resources) != 1):
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Field {field}.filter must name one metric type"
                + (" and one resource type" if resource_required else ""),
            )
        (metric_type,) = types
        metric = BUILT_IN.get(metric_type)
        if metric_type.startswith(USER_METRIC):
            stored = self.metrics.get(metric_type.removeprefix(USER_METRIC))
            visible = self.metric_visible_at.get(metric_type)
            if stored is not None and visible is not None and time.monotonic() >= visible:
                descriptor = stored.metric_descriptor
                kind = metric_pb2.MetricDescriptor.MetricKind.Name(descriptor.metric_kind)
                value_type = metric_pb2.MetricDescriptor.ValueType.Name(descriptor.value_type)
                metric = Metric(kind, value_type, "", "the project's log-based metrics")
        if metric is None:  # unknown, or a new log-based metric Monitoring has not seen yet
            raise Refused(
                grpc.StatusCode.NOT_FOUND,
                f'Cannot find metric(s) that match type = "{metric_type}". If a metric was '
                "created recently, it could take up to 10 minutes to become available. Please "
                "try again soon.",
            )
        # The metrics list gives each built-in metric's monitored resource type.
        if metric.resource and resources and resources != [metric.resource]:
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Field {field}.filter: {metric_type} is written for resource type "
                f"{metric.resource}, not {resources[0]} ({metric.listed})",
            )
        return metric

    @staticmethod
    def _applied(field: str, name: str, operation: Operation, kind: str, value_type: str):
        """The kind and value type after an aligner or reducer, refused where the reference
        does not document it for ``kind`` and ``value_type``."""
        if kind not in operation.kinds or value_type not in operation.types:
            what = "aligner" if name.startswith("ALIGN") else "reducer"
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f'Field {field} had an invalid value of "{name}": The {what} cannot be applied '
                f"to metrics with kind {kind} and value type {value_type}.",
            )
        return operation.kind_out or kind, operation.type_out or value_type

    def _check_aggregations(self, field: str, metric: Metric, aggregations, longest: float):
        """Walk the aggregations in order (MetricThreshold.aggregations: applied one after the
        other), each aligner on the series as the previous step left them."""
        kind, value_type = metric.kind, metric.value_type
        for index, aggregation in enumerate(aggregations):
            at = f"{field}[{index}]"
            aligner = aggregation.per_series_aligner.name
            reducer = aggregation.cross_series_reducer.name
            if aligner != "ALIGN_NONE":
                # Aggregation.alignment_period: required with an aligner other than ALIGN_NONE,
                # at least 60 s; at most 25 hours in an alert policy, 104 weeks in a chart.
                period = _seconds(aggregation.alignment_period)
                if not 60 <= period <= longest:
                    raise Refused(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"Field {at}.alignmentPeriod had an invalid value of {period:g}s: it "
                        f"must be from 60s to {longest:g}s",
                    )
            elif reducer != "REDUCE_NONE":
                # Aligner ALIGN_NONE: not valid when a cross-series reduction is asked for.
                raise Refused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Field {at}.crossSeriesReducer: a cross-series reducer needs an aligner",
                )
            kind, value_type = self._applied(
                f"{at}.perSeriesAligner", aligner, ALIGNERS[aligner], kind, value_type
            )
            kind, value_type = self._applied(
                f"{at}.crossSeriesReducer", reducer, REDUCERS[reducer], kind, value_type
            )

    def _check_threshold(
        self, field: str, threshold: monitoring.AlertPolicy.Condition.MetricThreshold
    ):
        metric = self._metric_of(field, threshold.filter, resource_required=True)
        # MetricThreshold.comparison: only COMPARISON_GT and COMPARISON_LT are supported.
        if threshold.comparison.name not in ("COMPARISON_GT", "COMPARISON_LT"):
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Field {field}.comparison: only COMPARISON_GT and COMPARISON_LT are supported",
            )
        # MetricThreshold.duration: whole minutes only (0, 60, 120 ... seconds).
        duration = _seconds(threshold.duration)
        if duration % 60:
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Field {field}.duration had an invalid value of {duration:g}s: whole minutes only",
            )
        # MetricThreshold.evaluation_missing_data: usable only with a duration of 60 s or more.
        if threshold.evaluation_missing_data and duration < 60:
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Field {field}.evaluationMissingData needs a duration of at least 60s",
            )
        self._check_aggregations(f"{field}.aggregations", metric, threshold.aggregations, 90_000)

    def _check_absence(self, field: str, absence: monitoring.AlertPolicy.Condition.MetricAbsence):
        metric = self._metric_of(field, absence.filter, resource_required=True)
        # MetricAbsence.duration: at least 120 s, in whole minutes.
        duration = _seconds(absence.duration)
        if duration < 120 or duration % 60:
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Field {field}.duration had an invalid value of {duration:g}s: at least 120s, "
                "in whole minutes",
            )
        self._check_aggregations(f"{field}.aggregations", metric, absence.aggregations, 90_000)

    # AlertPolicyService

    def _check_policy(self, policy: monitoring.AlertPolicy) -> None:
        # AlertPolicy.conditions: one to six.
        if not 1 <= len(policy.conditions) <= 6:
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT, "an alert policy has one to six conditions"
            )
        # AlertPolicy.user_labels: keys and values of lowercase letters, digits, underscores and
        # dashes, at most 63 characters; keys begin with a letter.
        for key, value in policy.user_labels.items():
            if not (LABEL.fullmatch(key) and LABEL_VALUE.fullmatch(value)):
                raise Refused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Field alert_policy.user_labels had an invalid label {key}={value}",
                )
        for index, condition in enumerate(policy.conditions):
            field = f"alert_policy.conditions[{index}]"
            which = type(condition).pb(condition).WhichOneof("condition")
            if which == "condition_threshold":
                self._check_threshold(f"{field}.conditionThreshold", condition.condition_threshold)
            elif which == "condition_absent":
                self._check_absence(f"{field}.conditionAbsent", condition.condition_absent)
            else:
                raise Refused(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{field}: this fake serves threshold and absence conditions only",
                )
        for channel in policy.notification_channels:
            if channel not in self.channels:
                raise Refused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Field alert_policy.notification_channels had an invalid value: {channel}",
                )

    def _name_conditions(self, policy: monitoring.AlertPolicy) -> None:
        for condition in policy.conditions:
            if not condition.name:
                condition.name = f"{policy.name}/conditions/{next(self.ids)}"

    def _list_alert_policies(self, request):
        items = [p for n, p in sorted(self.policies.items()) if n.startswith(request.name + "/")]
        return _page(request, items, "alert_policies", monitoring.ListAlertPoliciesResponse)

    def _create_alert_policy(self, request):
        policy = monitoring.AlertPolicy(request.alert_policy)
        self._check_policy(policy)
        policy.name = f"{request.name}/alertPolicies/{next(self.ids)}"
        self._name_conditions(policy)
        if "enabled" not in policy:
            policy.enabled = True  # type: ignore[assignment]  # proto-plus wraps it in a BoolValue
        record = {"mutate_time": _now()}  # proto-plus makes a MutationRecord of it
        policy.creation_record = policy.mutation_record = record  # type: ignore[assignment]
        self.policies[policy.name] = policy
        return policy

    def _update_alert_policy(self, request):
        given = request.alert_policy
        if given.name not in self.policies:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"Alert policy {given.name} not found.")
        allowed = {
            "display_name",
            "documentation",
            "user_labels",
            "conditions",
            "combiner",
            "enabled",
            "notification_channels",
            "alert_strategy",
            "severity",
        }
        current = self.policies[given.name]
        updated = _masked(current, given, list(request.update_mask.paths), allowed)
        self._check_policy(updated)
        self._name_conditions(updated)
        updated.mutation_record = {"mutate_time": _now()}
        self.policies[updated.name] = updated
        return updated

    def _delete_alert_policy(self, request):
        if request.name not in self.policies:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"Alert policy {request.name} not found.")
        del self.policies[request.name]
        return empty_pb2.Empty()

    # DashboardsService

    def _check_dashboard(self, dashboard: dashboards.Dashboard) -> None:
        for index, widget in enumerate(dashboard.grid_layout.widgets):
            chart = widget.alert_chart.name
            if "alert_chart" in widget and chart not in self.policies:
                raise Refused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Field alert_chart.name had an invalid value: {chart} does not exist",
                )
            for number, data_set in enumerate(widget.xy_chart.data_sets):
                query = data_set.time_series_query.time_series_filter
                field = f"dashboard.gridLayout.widgets[{index}].xyChart.dataSets[{number}]"
                metric = self._metric_of(field, query.filter, resource_required=False)
                steps = [query.aggregation]
                if "secondary_aggregation" in query:
                    steps.append(query.secondary_aggregation)
                self._check_aggregations(f"{field}.aggregation", metric, steps, 104 * 7 * 86400)

    def _list_dashboards(self, request):
        items = [d for n, d in sorted(self.dashboards.items()) if n.startswith(request.parent)]
        return _page(request, items, "dashboards", dashboards.ListDashboardsResponse)

    def _create_dashboard(self, request):
        dashboard = dashboards.Dashboard(request.dashboard)
        self._check_dashboard(dashboard)
        dashboard.name = f"{request.parent}/dashboards/{uuid.uuid4()}"
        dashboard.etag = uuid.uuid4().hex
        self.dashboards[dashboard.name] = dashboard
        return dashboard

    def _update_dashboard(self, request):
        given = dashboards.Dashboard(request.dashboard)
        current = self.dashboards.get(given.name)
        if current is None:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"Dashboard {given.name} not found.")
        if given.etag and given.etag != current.etag:
            raise Refused(
                grpc.StatusCode.ABORTED,
                f"Dashboard {given.name} was changed since it was read: etag {given.etag} is "
                f"not the current {current.etag}",
            )
        self._check_dashboard(given)
        given.etag = uuid.uuid4().hex
        self.dashboards[given.name] = given
        return given

    def _delete_dashboard(self, request):
        if request.name not in self.dashboards:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"Dashboard {request.name} not found.")
        del self.dashboards[request.name]
        return empty_pb2.Empty()
