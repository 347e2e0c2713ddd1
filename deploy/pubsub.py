"""The catalog's Pub/Sub: the visits topic with the push and pull subscribers' subscriptions and,
on Google Cloud, one subscription per streaming template; the files-processed topic with the
subscription ``clickstream subscribe files`` reads; their dead-letter topics.

The same declarations (``clickstream.gcp.pubsub.resources``) go to the local stack's emulator
and to Google Cloud; Google Cloud adds what the emulator cannot hold: retry policies, the push
subscription's endpoint (the function's URL) with its OIDC token, the streaming templates'
subscriptions, and IAM: the grants ``clickstream.deploy.access`` derives for these topics and
subscriptions, merged into each resource's policy (``clickstream.gcp.iam``). Locally the push
endpoint is set by ``clickstream subscribe push`` while it serves, so the declaration leaves it
empty.
"""

import dataclasses

from clickstream import pipelines
from clickstream.core import names, templates
from clickstream.deploy.settings import Settings
from clickstream.gcp import plan, pubsub


def function_url(settings: Settings, function: str) -> str:
    """A Cloud Run function's URL, known before it exists: push endpoint and token audience."""
    return f"https://{settings.region}-{settings.project}.cloudfunctions.net/{function}"


def streaming_templates() -> list[str]:
    """The catalog's streaming templates: each reads a subscription of its own."""
    return [name for name in pipelines.names() if templates.metadata(name).get("streaming")]


def template_subscription(template: str) -> str:
    """The subscription a streaming template reads on Google Cloud (raw_to_gcs: raw-to-gcs)."""
    return template.replace("_", "-")


def subscriptions(
    settings: Settings | None = None, streaming: bool = False
) -> list[pubsub.Subscription]:
    """The catalog's subscriptions; with ``settings`` (Google Cloud) the push subscription
    delivers to the function with the invoker's token, and (also with ``streaming``) each
    streaming template has one."""
    endpoint = function_url(settings, names.PUSH_FUNCTION) if settings else None
    identity = settings.account(names.INVOKER_ACCOUNT) if settings else None
    found = [
        pubsub.Subscription(names.PUSH_SUBSCRIPTION, names.TOPIC, "push", endpoint, identity),
        pubsub.Subscription(names.PULL_SUBSCRIPTION, names.TOPIC, "pull"),
        pubsub.Subscription(names.FILES_PROCESSED_SUBSCRIPTION, names.FILES_PROCESSED_TOPIC),
    ]
    if settings or streaming:
        found += [
            pubsub.Subscription(template_subscription(t), names.TOPIC, "dataflow")
            for t in streaming_templates()
        ]
    return found


@dataclasses.dataclass(frozen=True)
class Declared:
    """The paths of what the catalog declares on Google Cloud, by the part each plays."""

    dataflow_subscriptions: list[str]
    dead_letter_topics: list[str]
    dead_lettering: list[str]  # subscriptions with a dead-letter topic


def declared(settings: Settings) -> Declared:
    project, chosen = settings.project, subscriptions(settings)
    lettered = [s for s in chosen if pubsub.POLICIES[s.consumer].dead_letter]
    return Declared(
        [names.subscription_path(project, s.name) for s in chosen if s.consumer == "dataflow"],
        sorted(
            {
                pubsub.dead_letter_topic_path(project, names.topic_path(project, s.topic))
                for s in lettered
            }
        ),
        [names.subscription_path(project, s.name) for s in lettered],
    )


def local_resources(project: str) -> list[plan.Resource]:
    """The declarations on the local stack."""
    return pubsub.resources(project, subscriptions())


def cloud_resources(
    settings: Settings, grants: dict[str, dict[str, list[str]]]
) -> list[plan.Resource]:
    """The declarations on Google Cloud with ``grants`` (resource -> role -> members) on those
    of its topics and subscriptions they name."""
    return pubsub.resources(settings.project, subscriptions(settings), cloud=True, grants=grants)
