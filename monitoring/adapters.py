"""The alerting resources' APIs as ``clickstream.gcp.plan`` adapters, through the Google Cloud
client libraries: Cloud Logging's ``MetricsServiceV2`` for log-based metrics (the generated
client: its ``LogMetric`` carries descriptors, extractors and buckets), Cloud Monitoring's
``NotificationChannelService`` and ``AlertPolicyService``, and ``DashboardsService``.

Log-based metrics are named by us. Channels, policies and dashboards are named by the server, so
each carries the label ``clickstream-resource`` with its declared name and is found again by it.
A policy created (or changed) right after its log-based metric is refused with "Cannot find
metric(s) that match ..." until the metric reaches Cloud Monitoring, which can take ten minutes
(hashicorp/terraform-provider-google#11102): those calls are retried with a bounded backoff.

``Clients`` talk to Google Cloud with Application Default Credentials, or, given an
``endpoint`` (``host:port``), to a service without TLS or credentials there: the tests' fake
services on loopback (``clickstream monitoring plan --endpoint``, hidden from ``--help``).
"""

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import grpc
import proto
from google.api_core import exceptions
from google.api_core import retry as retries
from google.cloud import monitoring_dashboard_v1, monitoring_v3
from google.cloud.logging_v2.services.metrics_service_v2 import MetricsServiceV2Client
from google.cloud.logging_v2.types import LogMetric

from clickstream.core import names
from clickstream.gcp import plan
from clickstream.monitoring import alerting

Message = TypeVar("Message", bound=proto.Message)


@dataclasses.dataclass(frozen=True)
class Propagation:
    """How apply waits for a new log-based metric to reach Cloud Monitoring: retries after
    ``initial`` seconds, doubling up to ``maximum``, for at most ``deadline`` seconds."""

    deadline: float = 900.0
    initial: float = 5.0
    maximum: float = 60.0

    @classmethod
    def within(cls, deadline: float) -> "Propagation":
        """Retries over ``deadline`` seconds: every 5 s at first, at most a minute apart (a
        twentieth and a fifth of a shorter deadline)."""
        return cls(deadline, min(cls.initial, deadline / 20), min(cls.maximum, deadline / 5))


def metric_not_found_yet(error: Exception) -> bool:
    """Whether Cloud Monitoring refused a policy because its metric has not reached it yet."""
    return isinstance(error, exceptions.NotFound) and "Cannot find metric" in str(error.message)


class Clients:
    """The four client libraries, on Google Cloud or on ``endpoint`` (tests' fakes)."""

    def __init__(self, endpoint: str | None = None):
        classes = (
            MetricsServiceV2Client,
            monitoring_v3.NotificationChannelServiceClient,
            monitoring_v3.AlertPolicyServiceClient,
            monitoring_dashboard_v1.DashboardsServiceClient,
        )
        self.channel = grpc.insecure_channel(endpoint) if endpoint else None
        made = [self._client(cls) for cls in classes]
        self.metrics, self.channels, self.policies, self.dashboards = made

    def _client(self, cls):
        if self.channel is None:
            return cls()
        return cls(transport=cls.get_transport_class("grpc")(channel=self.channel))

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()


def _message(cls: type[Message], fields: Mapping[str, Any]) -> Message:
    return cast(Message, cls.from_json(json.dumps(fields)))  # proto-plus says proto.Message


class LogMetrics:
    """Log-based metrics, by name."""

    def __init__(self, client: MetricsServiceV2Client, project: str):
        self.client, self.project = client, project

    def _path(self, resource: plan.Resource) -> str:
        return f"projects/{self.project}/metrics/{resource.name}"

    def read(self, resource: plan.Resource) -> dict | None:
        try:
            return plan.fields_of(self.client.get_log_metric(metric_name=self._path(resource)))
        except exceptions.NotFound:
            return None

    def create(self, resource: plan.Resource) -> dict:
        metric = _message(LogMetric, resource.fields)
        parent = f"projects/{self.project}"
        return plan.fields_of(self.client.create_log_metric(parent=parent, metric=metric))

    def update(self, resource: plan.Resource, current: dict, fields: tuple[str, ...]) -> None:
        # UpdateLogMetric takes the whole metric; what differs is only in ``fields``.
        metric = _message(LogMetric, resource.fields)
        self.client.update_log_metric(metric_name=self._path(resource), metric=metric)

    def delete(self, resource: plan.Resource, current: dict) -> None:
        self.client.delete_log_metric(metric_name=self._path(resource))


class Labelled:
    """A Cloud Monitoring kind whose names the server assigns, through ``client``'s methods of
    ``noun`` (``create_alert_policy``, ...): found by its label (the field ``labels``), created
    under the project (the request's ``parent_key``), updated with a field mask of the changed
    top-level fields or, with ``etag``, whole if nobody changed it since it was read."""

    def __init__(
        self,
        client,
        project: str,
        message: type[proto.Message],
        noun: str,
        plural: str,
        parent_key: str = "name",
        labels: str = "user_labels",
        etag: bool = False,
        retry: retries.Retry | None = None,
    ):
        self.client, self.project, self.message = client, project, message
        self.noun, self.plural, self.parent_key = noun, plural, parent_key
        self.labels, self.etag, self.retry = labels, etag, retry
        self.parent = f"projects/{project}"

    def _call(self, verb: str, **request):
        """``client.<verb>_<noun>(request)``, retried as configured when it writes."""
        extra = {"retry": self.retry} if self.retry and verb in ("create", "update") else {}
        return getattr(self.client, f"{verb}_{self.noun}")(request=request, **extra)

    def read(self, resource: plan.Resource) -> dict | None:
        listed = getattr(self.client, f"list_{self.plural}")(request={self.parent_key: self.parent})
        found = [
            item
            for item in listed
            if getattr(item, self.labels).get(names.RESOURCE_LABEL) == resource.name
        ]
        if len(found) > 1:
            raise plan.PlanError(
                f"{len(found)} {self.plural} of {self.parent} carry the label "
                f"{names.RESOURCE_LABEL}={resource.name} ({', '.join(i.name for i in found)}): "
                "delete all but one"
            )
        return plan.fields_of(found[0]) if found else None

    def create(self, resource: plan.Resource) -> dict:
        body = _message(self.message, resource.fields)
        return plan.fields_of(
            self._call("create", **{self.parent_key: self.parent, self.noun: body})
        )

    def update(self, resource: plan.Resource, current: dict, fields: tuple[str, ...]) -> None:
        changed = {**resource.fields, "name": current["name"]}
        if self.etag:
            body = _message(self.message, {**changed, "etag": current["etag"]})
            self._call("update", **{self.noun: body})
            return
        mask = {"paths": plan.top_level(fields)}
        self._call("update", **{self.noun: _message(self.message, changed), "update_mask": mask})

    def delete(self, resource: plan.Resource, current: dict) -> None:
        # A channel in use by a policy is deleted all the same: the policy is updated next.
        force = {"force": True} if self.noun == "notification_channel" else {}
        self._call("delete", name=current["name"], **force)


def adapters(
    clients: Clients,
    project: str,
    propagation: Propagation = Propagation(),
    waiting: Callable[[Exception], None] = lambda error: None,
) -> dict[str, plan.Adapter]:
    """An adapter per kind of ``clickstream.monitoring.alerting``; ``waiting`` hears each
    "metric not found yet" refusal before its retry."""
    retry = retries.Retry(
        predicate=metric_not_found_yet,
        initial=propagation.initial,
        maximum=propagation.maximum,
        multiplier=2.0,
        timeout=propagation.deadline,
        on_error=waiting,
    )
    channel, policy = monitoring_v3.NotificationChannel, monitoring_v3.AlertPolicy
    return {
        alerting.LOG_METRIC: LogMetrics(clients.metrics, project),
        alerting.CHANNEL: Labelled(
            clients.channels, project, channel, "notification_channel", "notification_channels"
        ),
        alerting.POLICY: Labelled(
            clients.policies, project, policy, "alert_policy", "alert_policies", retry=retry
        ),
        alerting.DASHBOARD: Labelled(
            clients.dashboards,
            project,
            monitoring_dashboard_v1.Dashboard,
            "dashboard",
            "dashboards",
            parent_key="parent",
            labels="labels",
            etag=True,
        ),
    }
