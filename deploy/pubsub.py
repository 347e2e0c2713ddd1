"""The catalog's Pub/Sub as one plan: the visits topic with the push and pull subscribers'
subscriptions, the files-processed topic with the subscription ``clickstream subscribe files``
reads, their dead-letter topics, and, on Google Cloud, who may do what with them.

The same declarations (``clickstream.gcp.pubsub.resources``) go to the local stack's emulator
and to Google Cloud; Google Cloud adds what the emulator cannot hold: retry policies, the push
subscription's endpoint (the function's URL) with its OIDC token, and IAM, merged into each
resource's policy (``clickstream.gcp.iam``):

- the Pub/Sub service agent publishes to each dead-letter topic and subscribes to each
  subscription that dead-letters (to move messages there);
- the pull subscriber's account subscribes to ``visits-pull``, and nothing else.

The service accounts must exist first (``clickstream subscribe deploy accounts``): a push token's
identity and an IAM member must. Locally the push endpoint is set by ``clickstream subscribe
push`` while it serves, so the declaration leaves it empty.
"""

from clickstream.core import names
from clickstream.deploy import subscribers
from clickstream.gcp import plan, pubsub

AGENT_ROLES = {"topic": "roles/pubsub.publisher", "subscription": "roles/pubsub.subscriber"}


def subscriptions(
    topic: str = names.TOPIC, target: subscribers.Target | None = None
) -> list[pubsub.Subscription]:
    """The catalog's subscriptions; with ``target`` (Google Cloud) the push subscription
    delivers to the function with the invoker's token."""
    endpoint = target.function_url if target else None
    identity = target.account(subscribers.INVOKER_ACCOUNT) if target else None
    return [
        pubsub.Subscription(names.PUSH_SUBSCRIPTION, topic, "push", endpoint, identity),
        pubsub.Subscription(names.PULL_SUBSCRIPTION, topic, "pull"),
        pubsub.Subscription(names.FILES_PROCESSED_SUBSCRIPTION, names.FILES_PROCESSED_TOPIC),
    ]


def grants(target: subscribers.Target, project_number: str) -> dict[str, dict[str, list[str]]]:
    """Resource path -> role -> members: the service agent's and the pull subscriber's."""
    agent = subscribers.pubsub_agent(project_number)
    found: dict[str, dict[str, list[str]]] = {}
    for subscription in subscriptions(target.topic, target):
        if not pubsub.POLICIES[subscription.consumer].dead_letter:
            continue
        dead = pubsub.dead_letter_topic_path(target.project, subscription.topic)
        path = names.subscription_path(target.project, subscription.name)
        found[dead] = {AGENT_ROLES["topic"]: [agent]}
        found[path] = {AGENT_ROLES["subscription"]: [agent]}
    pull = names.subscription_path(target.project, names.PULL_SUBSCRIPTION)
    reader = f"serviceAccount:{target.account(subscribers.PULL_ACCOUNT)}"
    found[pull][AGENT_ROLES["subscription"]].append(reader)
    return found


def local_resources(project: str, topic: str = names.TOPIC) -> list[plan.Resource]:
    """The declarations on the local stack."""
    return pubsub.resources(project, subscriptions(topic))


def cloud_resources(target: subscribers.Target, project_number: str) -> list[plan.Resource]:
    """The declarations on Google Cloud, IAM included."""
    return pubsub.resources(
        target.project,
        subscriptions(target.topic, target),
        cloud=True,
        grants=grants(target, project_number),
    )


def project_number(project: str) -> str:
    """The project's number (the Pub/Sub service agent is named after it), from Resource
    Manager."""
    from google.cloud import resourcemanager_v3

    found = resourcemanager_v3.ProjectsClient().get_project(name=f"projects/{project}")
    return found.name.rsplit("/", 1)[-1]
