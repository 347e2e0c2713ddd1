"""The documented rules the Monitoring fake enforces (``clickstream.fakes.monitoring``), through
the real client library: an aligner or reducer that does not fit the metric's kind and value
type, metric types outside Google's metrics list, alignment periods, durations, comparisons; and
the denial-of-service policy as it was declared before (ALIGN_MEAN on a DELTA DISTRIBUTION)."""

import copy
import json

import pytest
from google.api_core import exceptions
from google.cloud import monitoring_v3
from google.cloud.logging_v2.types import LogMetric

from clickstream.fakes.monitoring import ALIGNERS, BUILT_IN, FakeGoogle
from clickstream.monitoring import adapters, alerting

PROJECT = "my-project"
DOS = alerting.Alerting(PROJECT, "oncall@example.com")


@pytest.fixture
def clients():
    """The client libraries on the fake, with the DoS log-based metrics created."""
    with FakeGoogle() as google:
        made = adapters.Clients(google.endpoint)
        for metric in alerting.METRICS:
            fields = json.dumps(DOS.log_metric(metric).fields)
            made.metrics.create_log_metric(
                parent=f"projects/{PROJECT}", metric=LogMetric.from_json(fields)
            )
        yield made
        made.close()


def create(clients, condition: dict) -> monitoring_v3.AlertPolicy:
    policy = {
        "display_name": "p",
        "combiner": "OR",
        "conditions": [{"display_name": "c", "condition_threshold": condition}],
    }
    return clients.policies.create_alert_policy(
        name=f"projects/{PROJECT}",
        alert_policy=monitoring_v3.AlertPolicy.from_json(json.dumps(policy)),
    )


def threshold(metric: str, resource: str, *aggregations: dict, **fields) -> dict:
    return {
        "filter": f'metric.type = "{metric}" AND resource.type = "{resource}"',
        "aggregations": list(aggregations),
        "comparison": "COMPARISON_GT",
        "threshold_value": 1,
        "duration": "0s",
        **fields,
    }


def step(aligner: str, reducer: str = "REDUCE_NONE", period: str = "60s") -> dict:
    return {
        "alignment_period": period,
        "per_series_aligner": aligner,
        "cross_series_reducer": reducer,
    }


def dos_condition() -> dict:
    return copy.deepcopy(DOS.policy().fields["conditions"][0]["condition_threshold"])


def test_the_dos_policy_as_it_was_is_refused_and_as_it_is_accepted(clients):
    old = dos_condition()
    old["aggregations"] = [step("ALIGN_MEAN", "REDUCE_MAX")]
    with pytest.raises(exceptions.InvalidArgument) as refused:
        create(clients, old)
    assert 'invalid value of "ALIGN_MEAN": The aligner cannot be applied to metrics with kind ' in (
        refused.value.message
    )
    assert refused.value.message.endswith("kind DELTA and value type DISTRIBUTION.")
    assert create(clients, dos_condition()).name


@pytest.mark.parametrize(
    ("metric", "aggregations", "says"),
    [
        # Percentiles are for distributions; a GAUGE INT64 has none.
        (
            "pubsub.googleapis.com/subscription/oldest_unacked_message_age",
            [step("ALIGN_PERCENTILE_99")],
            'of "ALIGN_PERCENTILE_99": The aligner cannot be applied to metrics with kind GAUGE '
            "and value type INT64",
        ),
        # ALIGN_DELTA is for CUMULATIVE and DELTA metrics only.
        (
            "dataflow.googleapis.com/job/system_lag",
            [step("ALIGN_DELTA")],
            '"ALIGN_DELTA": The aligner cannot be applied to metrics with kind GAUGE',
        ),
        # After ALIGN_SUM a distribution is still one; REDUCE_MAX takes numbers only.
        (
            "logging.googleapis.com/user/clickstream_dos_page_views",
            [step("ALIGN_SUM", "REDUCE_MAX")],
            '"REDUCE_MAX": The reducer cannot be applied to metrics with kind DELTA and value '
            "type DISTRIBUTION",
        ),
        # A cross-series reducer needs an aligner.
        (
            "run.googleapis.com/request_count",
            [step("ALIGN_NONE", "REDUCE_SUM")],
            "needs an aligner",
        ),
        # Alignment periods of alert policies: 60 s to 25 hours.
        (
            "run.googleapis.com/request_count",
            [step("ALIGN_SUM", period="10s")],
            "alignmentPeriod had an invalid value of 10s",
        ),
    ],
)
def test_an_aggregation_that_does_not_fit_the_metric_is_refused(
    clients, metric, aggregations, says
):
    resource = BUILT_IN[metric].resource if metric in BUILT_IN else "global"
    with pytest.raises(exceptions.InvalidArgument, match=says):
        create(clients, threshold(metric, resource, *aggregations))


def test_the_aligners_follow_the_reference_for_each_kind_and_value_type(clients):
    """A GAUGE INT64 (system lag) takes ALIGN_MAX and ALIGN_MEAN, not the Boolean or
    distribution aligners; a DELTA INT64 (Cloud Run requests) takes ALIGN_RATE and ALIGN_SUM."""
    lag = ("dataflow.googleapis.com/job/system_lag", "dataflow_job")
    requests = ("run.googleapis.com/request_count", "cloud_run_revision")
    accepted, refused = [], []
    for (metric, resource), aligner in [
        (lag, name) for name in ALIGNERS if name != "ALIGN_NONE"
    ] + [(requests, "ALIGN_RATE"), (requests, "ALIGN_SUM"), (requests, "ALIGN_INTERPOLATE")]:
        try:
            create(clients, threshold(metric, resource, step(aligner)))
            accepted.append((metric.rsplit("/", 1)[-1], aligner))
        except exceptions.InvalidArgument:
            refused.append((metric.rsplit("/", 1)[-1], aligner))
    assert sorted(accepted) == sorted(
        [("system_lag", a) for a in ("ALIGN_INTERPOLATE", "ALIGN_NEXT_OLDER", "ALIGN_MIN")]
        + [("system_lag", a) for a in ("ALIGN_MAX", "ALIGN_MEAN", "ALIGN_COUNT", "ALIGN_SUM")]
        + [("system_lag", a) for a in ("ALIGN_STDDEV", "ALIGN_PERCENT_CHANGE")]
        + [("request_count", "ALIGN_RATE"), ("request_count", "ALIGN_SUM")]
    )
    assert ("request_count", "ALIGN_INTERPOLATE") in refused  # GAUGE only


@pytest.mark.parametrize(
    ("condition", "error", "says"),
    [
        (
            threshold("compute.googleapis.com/instance/not_a_metric", "gce_instance"),
            exceptions.NotFound,
            'Cannot find metric\\(s\\) that match type = "compute.googleapis.com/instance/not_',
        ),
        (
            threshold("logging.googleapis.com/user/nobody_made_it", "global"),
            exceptions.NotFound,
            "Cannot find metric",
        ),
        (
            threshold("dataflow.googleapis.com/job/is_failed", "gce_instance", step("ALIGN_MAX")),
            exceptions.InvalidArgument,
            "written for resource type dataflow_job, not gce_instance",
        ),
        (
            {
                **threshold("dataflow.googleapis.com/job/is_failed", "dataflow_job"),
                "filter": 'metric.type = "dataflow.googleapis.com/job/is_failed"',
            },
            exceptions.InvalidArgument,
            "must name one metric type and one resource type",
        ),
        (
            threshold(
                "dataflow.googleapis.com/job/is_failed",
                "dataflow_job",
                comparison="COMPARISON_GE",
            ),
            exceptions.InvalidArgument,
            "only COMPARISON_GT and COMPARISON_LT",
        ),
        (
            threshold("dataflow.googleapis.com/job/is_failed", "dataflow_job", duration="90s"),
            exceptions.InvalidArgument,
            "whole minutes only",
        ),
        (
            threshold(
                "dataflow.googleapis.com/job/is_failed",
                "dataflow_job",
                evaluation_missing_data="EVALUATION_MISSING_DATA_INACTIVE",
            ),
            exceptions.InvalidArgument,
            "evaluationMissingData needs a duration of at least 60s",
        ),
    ],
)
def test_a_condition_against_the_documented_rules_is_refused(clients, condition, error, says):
    with pytest.raises(error, match=says):
        create(clients, condition)
