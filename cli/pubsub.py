"""``clickstream pubsub``: the catalog's topics, subscriptions, dead-letter topics and (on Google
Cloud) their IAM, planned and applied from one definition (``clickstream.deploy.pubsub``), on
the local stack's emulator or on Google Cloud."""

import argparse

from clickstream.core import names

NO_CREDENTIALS = (
    "error: no Google Cloud credentials: run `gcloud auth application-default login` or set "
    "GOOGLE_APPLICATION_CREDENTIALS"
)


def _declared(args: argparse.Namespace):
    """(project, the declarations) of the arguments; one line and exit when they are not valid."""
    from google.auth import exceptions as auth_exceptions

    from clickstream.cli.local import use_local_stack
    from clickstream.deploy import pubsub as deployment
    from clickstream.deploy import subscribers

    if args.project is None:
        project = use_local_stack()
        return project, deployment.local_resources(project, args.topic)
    if not args.region:
        raise SystemExit("error: --region is required with --project (the push function's)")
    target = subscribers.Target(args.project, args.region, topic=args.topic)
    try:
        number = args.project_number or deployment.project_number(args.project)
    except auth_exceptions.DefaultCredentialsError:
        raise SystemExit(NO_CREDENTIALS) from None
    return args.project, deployment.cloud_resources(target, number)


def _plan_or_apply(args: argparse.Namespace) -> None:
    import grpc
    from google.api_core import exceptions
    from google.auth import exceptions as auth_exceptions
    from google.cloud import pubsub_v1

    from clickstream.gcp import plan, pubsub

    project, declared = _declared(args)
    where = "the local stack" if args.project is None else f"project {project}"
    print(f"Pub/Sub of {where}:")
    channel = grpc.insecure_channel(args.iam_endpoint) if args.iam_endpoint else None
    try:
        publisher = pubsub_v1.PublisherClient()
        policies = None
        if channel is not None:
            transport = pubsub_v1.PublisherClient.get_transport_class("grpc")(channel=channel)
            policies = pubsub_v1.PublisherClient(transport=transport)
        with pubsub_v1.SubscriberClient() as subscriber:
            api = pubsub.adapters(publisher, subscriber, policies)
            changes = plan.plan(declared, api)
            print(plan.render(changes, limit=None))
            if args.action == "plan":
                return
            replaced = [c.resource.label for c in changes if c.action == plan.REPLACE]
            if replaced and not args.allow_replace:
                raise SystemExit(
                    f"error: {replaced[0]} would be deleted and created again, losing its "
                    "messages: apply with --allow-replace to do it"
                )
            done = plan.apply(changes, api, lambda change: print(plan.performed(change)))
            print(f"Applied {len(done)} changes." if done else "Nothing to apply.")
    except auth_exceptions.DefaultCredentialsError:
        raise SystemExit(NO_CREDENTIALS) from None
    except (exceptions.GoogleAPICallError, plan.PlanError) as error:
        raise SystemExit(f"error: {str(error).splitlines()[0]}") from None
    finally:
        if channel is not None:
            channel.close()


def register(commands) -> None:
    """Adds ``pubsub`` to the ``clickstream`` command."""
    pubsub = commands.add_parser(
        "pubsub",
        help="the catalog's topics and subscriptions: plan, apply",
        description="Topics (visits, files-processed), their dead-letter topics with a "
        "subscription keeping what lands there, and the subscriptions of the push and pull "
        "subscribers and of `subscribe files`, with their delivery policies; on Google Cloud "
        "also retry policies, the push subscription's endpoint and OIDC token, and IAM (the "
        "Pub/Sub service agent's and the pull subscriber's roles, merged into each policy). "
        "plan shows create / update (fields) / replace / unchanged; apply makes exactly "
        "those changes, so a second apply changes nothing. Without --project: the local stack. "
        "On Google Cloud the service accounts come first: `clickstream subscribe deploy "
        "accounts`.",
    )
    actions = pubsub.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (
        ("plan", "show what apply would change"),
        ("apply", "make the plan's changes"),
    ):
        parser = actions.add_parser(action, help=text, description=text)
        parser.add_argument("--project", help="Google Cloud project (default: the local stack)")
        parser.add_argument("--region", help="with --project: the push function's region")
        parser.add_argument("--topic", default=names.TOPIC, help="the visits topic")
        parser.add_argument(
            "--project-number",
            help="with --project: its number, which names the Pub/Sub service agent "
            "(default: asked of Resource Manager)",
        )
        parser.add_argument("--iam-endpoint", help=argparse.SUPPRESS)  # tests: a fake IAM
        if action == "apply":
            parser.add_argument(
                "--allow-replace",
                action="store_true",
                help="delete and create again a subscription whose topic changed (its "
                "messages are lost)",
            )
        parser.set_defaults(run=_plan_or_apply)
