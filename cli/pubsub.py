"""``clickstream pubsub``: the catalog's topics, subscriptions, dead-letter topics and (on Google
Cloud) their IAM, planned and applied from one definition (``clickstream.deploy.pubsub``): on the
local stack's emulator, or on Google Cloud as the ``pubsub`` area of the project's plan
(``clickstream plan --only pubsub``, with the same settings)."""

import argparse


def _local(args: argparse.Namespace) -> None:
    from clickstream.cli.local import use_local_stack
    from clickstream.deploy import pubsub as deployment
    from clickstream.gcp import plan, pubsub

    project = use_local_stack()
    print("Pub/Sub of the local stack:")
    with pubsub.local_api() as api:
        changes = plan.plan(deployment.local_resources(project), api)
        print(plan.render(changes, limit=None))
        if args.action == "plan":
            return
        done = plan.apply(changes, api, lambda change: print(plan.performed(change)))
    print(f"Applied {len(done)} changes." if done else "Nothing to apply.")


def _plan_or_apply(args: argparse.Namespace) -> None:
    from clickstream.cli import project
    from clickstream.deploy import settings

    if args.project is None and args.settings is None and not settings.DEFAULT_FILE.is_file():
        return _local(args)
    args.only = ["pubsub"]
    print("Pub/Sub on Google Cloud:")
    (project._apply if args.action == "apply" else project._plan)(args)


def register(commands) -> None:
    """Adds ``pubsub`` to the ``clickstream`` command."""
    from clickstream.cli import project

    pubsub = commands.add_parser(
        "pubsub",
        help="the catalog's topics and subscriptions: plan, apply",
        description="Topics (visits, files-processed), their dead-letter topics with a "
        "subscription keeping what lands there, and the subscriptions of the push and pull "
        "subscribers and of `subscribe files`, with their delivery policies, none expiring; on "
        "Google Cloud also the streaming templates' subscriptions, retry policies, the push "
        "subscription's endpoint and OIDC token, and IAM (from docs/access.md, merged into each "
        "policy). plan shows create / update (fields) / replace / unchanged; apply makes "
        "exactly those changes, so a second apply changes nothing. Without --project (or "
        "settings): the local stack. On Google Cloud it is the pubsub area of `clickstream "
        "plan`: its service accounts come first (`clickstream apply --only identities`).",
    )
    actions = pubsub.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (
        ("plan", "show what apply would change"),
        ("apply", "make the plan's changes"),
    ):
        parser = actions.add_parser(action, help=text, description=text)
        project._common(parser)
        parser.set_defaults(only=["pubsub"])
        if action == "apply":
            parser.add_argument(
                "--allow-replace",
                action="store_true",
                help="delete and create again a subscription whose topic changed (its "
                "messages are lost)",
            )
        parser.set_defaults(run=_plan_or_apply)
