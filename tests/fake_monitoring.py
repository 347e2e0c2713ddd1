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
"""

import itertools
import re
import threading
import time
import uuid
from concurrent import futures

import grpc
from google.cloud import monitoring_dashboard_v1 as dashboards
from google.cloud import monitoring_v3 as monitoring
from google.cloud.logging_v2.types import logging_metrics
from google.protobuf import empty_pb2, timestamp_pb2

PAGE_SIZE = 2
MUTATING = ("Create", "Update", "Delete")
METRIC_TYPE = re.compile(r'metric\.type\s*=\s*"([^"]+)"')
USER_METRIC = "logging.googleapis.com/user/"


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

    def __init__(self, metric_delay: float = 0.0):
        self.metric_delay = metric_delay
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
        services = {
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
                    return implementation(request)
                except Refused as refused:
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
            channel.enabled = True
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

    # AlertPolicyService

    def _check_policy(self, policy: monitoring.AlertPolicy) -> None:
        for condition in policy.conditions:
            for metric_type in METRIC_TYPE.findall(condition.condition_threshold.filter):
                visible = self.metric_visible_at.get(metric_type)
                if metric_type.startswith(USER_METRIC) and (
                    visible is None or time.monotonic() < visible
                ):
                    raise Refused(
                        grpc.StatusCode.NOT_FOUND,
                        f'Cannot find metric(s) that match type = "{metric_type}". If a metric '
                        "was created recently, it could take up to 10 minutes to become "
                        "available. Please try again soon.",
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
            policy.enabled = True
        policy.creation_record = policy.mutation_record = {"mutate_time": _now()}
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
        for widget in dashboard.grid_layout.widgets:
            chart = widget.alert_chart.name
            if "alert_chart" in widget and chart not in self.policies:
                raise Refused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Field alert_chart.name had an invalid value: {chart} does not exist",
                )

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
