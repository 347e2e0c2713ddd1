"""Names and defaults shared by every path, defined once."""

DATASET = "clickstream"  # the analyst dataset
TOPIC = "visits"  # the topic visits are published to
PULL_SUBSCRIPTION = "visits-pull"
PUSH_SUBSCRIPTION = "visits-push"
LOCAL_PROJECT = "clickstream-local"  # the local stack's project (and its bucket's name)
DOS_LOG = "clickstream-dos"  # the Cloud Logging log of the denial-of-service entries
COUNTER_NAMESPACE = "clickstream"  # Beam metrics of the catalog's transforms
LANDING_PREFIX = "landing/"  # where visit files land in the bucket (the batch migration's input)
RAW_ARCHIVE_PREFIX = "raw/"  # where raw_to_gcs archives the streamed messages in the bucket
LAKE = "clickstream"  # the Dataplex lake
MIGRATION_PROCESS = "clickstream-batch-migration"  # the batch migration's lineage process
# The local stack's stand-in for the Data Lineage API: the JSON-lines file lineage is written to.
LINEAGE_FILE_ENV = "CLICKSTREAM_LINEAGE_FILE"
FILE_LANDED_DAG = "clickstream_file_landed"  # the Airflow DAG that migrates one landed file
MIGRATION_TEMPLATE = "batch_migration"  # the flex template the DAG launches per landed file
IMAGE_REPOSITORY = "clickstream"  # the Artifact Registry repository of the templates' images
IMAGE_TAG = "latest"  # the tag `clickstream template build` gives the images by default
COMPOSER_ENVIRONMENT = "clickstream"  # the Cloud Composer environment that runs the DAG
PUSH_FUNCTION = "clickstream-push"  # the push subscriber's Cloud Run function (and service)
TRIGGER_FUNCTION = "clickstream-file-landed"  # the function that starts a DAG run per file
# The service accounts (ids) of the catalog's runtime identities (deploy/access.py).
DATAFLOW_ACCOUNT = "clickstream-dataflow"  # the Dataflow workers (and flex-template launchers)
COMPOSER_ACCOUNT = "clickstream-composer"  # the Composer environment
TRIGGER_ACCOUNT = "clickstream-trigger"  # the storage trigger (receives events, calls Airflow)
PUSH_ACCOUNT = "clickstream-push"  # the push subscriber's runtime
INVOKER_ACCOUNT = "clickstream-push-invoker"  # the identity in the push subscription's token
PULL_ACCOUNT = "clickstream-pull"  # the pull subscriber's VMs
FILES_PROCESSED_TOPIC = "files-processed"  # the DAG announces each processed (or failed) file
FILES_PROCESSED_SUBSCRIPTION = "files-processed-notify"  # `clickstream subscribe files` reads it
PULL_GROUP = "clickstream-pull"  # the pull subscriber's managed instance group


def dead_letter_topic(topic: str) -> str:
    """Where Pub/Sub moves a message of ``topic`` after too many failed deliveries; it has a
    subscription of the same name, so that what lands there is kept (a topic alone drops it)."""
    return f"{topic}-dead-letter"


def topic_path(project: str, topic: str) -> str:
    """``topic`` as projects/P/topics/T (a full path is kept as given)."""
    return topic if topic.startswith("projects/") else f"projects/{project}/topics/{topic}"


def subscription_path(project: str, subscription: str) -> str:
    """``subscription`` as projects/P/subscriptions/S (a full path is kept as given)."""
    if subscription.startswith("projects/"):
        return subscription
    return f"projects/{project}/subscriptions/{subscription}"


# The denial-of-service drill's alerting (clickstream.monitoring)
DOS_PAGE_VIEWS_METRIC = "clickstream_dos_page_views"  # log-based metric: page views per window
DOS_FLAGGED_WINDOWS_METRIC = "clickstream_dos_windows_over_threshold"  # log-based counter
RESOURCE_LABEL = "clickstream-resource"  # finds again the resources whose names Google assigns
INCIDENTS_FILE = "dos-incidents.jsonl"  # the local alert evaluator's, in the stack's state dir
DRILL_MAILBOX = "dos-mailbox"  # the drill's local mail server's Maildir, in the state dir
# Each event type and its table; the migration counts events per type under the type's name.
EVENT_TABLES = {
    "page_view": "page_views",
    "add_item_to_cart": "cart_adds",
    "purchase": "purchases",
}
# The whole-project deployment's areas, in dependency order (``clickstream.project.areas``).
DEPLOYMENT_AREAS = (
    "apis",
    "identities",
    "storage",
    "bigquery",
    "templates",
    "pubsub",
    "subscribers",
    "monitoring",
    "governance",
    "orchestration",
)
