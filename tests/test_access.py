"""Least privilege, written down and held: every call of every identity has its permission in
its role, as Google's IAM reference lists the role (``fakes/roles.json``); the deployment's
grants are exactly the table's, no call without its grant and no grant without a call; the
generated pages are fresh."""

import pytest

from clickstream.deploy import access, settings
from clickstream.fakes import project as projects
from clickstream.gcp import iam
from clickstream.project import areas, docs

SETTINGS = settings.Settings(
    "my-project", "europe-west1", "oncall@example.com", members={"analysts": ("group:a@b.com",)}
)
NUMBER = "123456789012"
ROLES = projects.role_permissions()


@pytest.mark.parametrize(
    "identity, call",
    [(i, c) for i in (*access.IDENTITIES, access.DEPLOYER) for c in i.calls],
    ids=lambda item: item.key if isinstance(item, access.Identity) else item.doing,
)
def test_every_call_has_its_permission_in_its_role(identity, call):
    assert call.role in ROLES, f"{call.role}: not in fakes/roles.json (Google's role data)"
    assert call.permission in ROLES[call.role], (
        f"{identity.key} calls {call.method} ({call.permission}), which {call.role} lacks"
    )


def test_every_scope_resolves():
    scopes = {call.scope for identity in access.IDENTITIES for call in identity.calls}
    for scope in scopes:
        assert access.resources(scope, SETTINGS), scope


def test_every_runtime_identity_is_granted_and_the_deployer_is_not():
    keys = {identity.key for identity in access.GRANTED}
    assert keys == {
        "dataflow-workers",
        "composer",
        "trigger",
        "push",
        "push-invoker",
        "pull",
        "pubsub-agent",
        "storage-agent",
    }
    with pytest.raises(ValueError):
        access.DEPLOYER.member(SETTINGS, NUMBER)


def planned_grants(declaration: areas.Declaration) -> set[access.Grant]:
    return {
        access.Grant(resource.name, role, member)
        for resource in declaration.resources
        if resource.kind == iam.KIND
        for role, members in resource.fields["bindings"].items()
        for member in members
    }


def test_the_deployment_grants_exactly_what_the_calls_need(gcloud, tmp_path):
    """Both ways: every grant the table derives is in the plan (no call without its
    permission), and the plan grants nothing else (no grant without a call)."""
    declared = areas.declare(SETTINGS, NUMBER, tmp_path)
    planned, needed = planned_grants(declared), set(access.grants(SETTINGS, NUMBER))
    assert needed - planned == set(), "calls without their grant"
    governance = {  # the audiences' roles on the mesh: people, not runtime identities
        g for g in planned if "/lakes/" in g.resource and not g.member.startswith("serviceAccount:")
    }
    assert planned - needed - governance == set(), "grants without a call"
    assert governance  # the analysts' (docs/governance.md)


def test_the_grants_follow_the_settings():
    other = settings.Settings("other-project", "us-central1", bucket="landing-x")
    grants = access.grants(other, "987")
    assert {g.resource for g in grants} >= {
        "projects/other-project",
        "projects/_/buckets/landing-x",
    }
    assert not any("my-project" in g.resource or "my-project" in g.member for g in grants)


def test_the_generated_pages_are_fresh():
    assert docs.write(check=True) == [], "run `clickstream docs`"
