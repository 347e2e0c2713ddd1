"""The Dataplex mesh, planned and applied through the real ``google-cloud-dataplex`` clients
against a fake Dataplex on loopback (``clickstream.fakes.dataplex``): a fresh project's plan,
idempotent apply, updates, replacements, IAM merges, late entries, ``validate_only``; the
definitions in ``metadata/``; the command line's bad input."""

import grpc
import pytest
from google.api_core import exceptions

from clickstream.cli import main
from clickstream.core import contract
from clickstream.fakes.dataplex import FakeDataplex
from clickstream.fakes.server import Fault
from clickstream.gcp import iam, plan
from clickstream.governance import aspects, dataplex, docs, mesh

MEMBERS = {
    "analysts": ("group:analysts@example.com",),
    "engineers": ("group:data-engineers@example.com",),
    "pipelines": ("serviceAccount:pipelines@my-project.iam.gserviceaccount.com",),
}
MESH = mesh.Mesh("my-project", "europe-west1", dataset_location="us", members=MEMBERS)
CURATED = MESH.zone_name("curated")


@pytest.fixture
def fake():
    service = FakeDataplex()
    for table in aspects.TABLES:  # Dataplex lists every BigQuery table of the dataset
        service.add_table(MESH.entry_name(table), contract.column_names(table))
    yield service
    service.stop()


def adapters(fake, wait_seconds=5.0):
    return dataplex.adapters(*fake.clients(), wait_seconds=wait_seconds, poll_seconds=0.01)


def applied(fake, declared=MESH):
    """Apply the mesh; the adapters."""
    used = adapters(fake)
    plan.apply(plan.plan(mesh.resources(declared), used), used)
    return used


def test_a_fresh_project_gets_every_resource_created():
    service = FakeDataplex()  # no table listed yet: a plan needs none
    try:
        changes = plan.plan(mesh.resources(MESH), adapters(service))
        assert service.mutations() == []
    finally:
        service.stop()
    assert [(c.action, c.resource.kind, c.resource.name.split("/")[-1]) for c in changes] == [
        ("create", "aspect-type", "clickstream-table"),
        ("create", "aspect-type", "clickstream-column"),
        ("create", "lake", "clickstream"),
        ("create", "iam-policy", "clickstream"),
        ("create", "zone", "raw"),
        ("create", "iam-policy", "raw"),
        ("create", "asset", "landing-bucket"),
        ("create", "zone", "curated"),
        ("create", "iam-policy", "curated"),
        ("create", "asset", "analyst-dataset"),
        *(("create", "entry-aspects", table) for table in aspects.TABLES),
    ]
    rendered = plan.render(changes)
    assert rendered == plan.render(mesh.fresh_plan(MESH))  # the offline preview says the same
    for line in (
        "  + create    lake projects/my-project/locations/europe-west1/lakes/clickstream",
        '      type_: "RAW"',
        '      discovery_spec.include_patterns: ["landing/**", "raw/**"]',
        '      discovery_spec.json_options.encoding: "UTF-8"',
        '      resource_spec.location_type: "MULTI_REGION"',  # the curated zone: dataset in US
        '      resource_spec.name: "projects/my-project/buckets/my-project"',
        '      resource_spec.name: "projects/my-project/datasets/clickstream"',
        '      bindings.roles/dataplex.dataReader: ["group:analysts@example.com"]',
        "      aspects.my-project.global.clickstream-column@Schema.geolocation.data.classification:"
        ' "PERSONAL"',
        "Plan: 17 to create, 0 to update, 0 to replace, 0 unchanged.",
    ):
        assert line in rendered.splitlines()


def test_apply_then_plan_is_unchanged_and_applying_again_calls_nothing_that_changes(fake):
    applied(fake)
    fake.server.calls.clear()
    again = plan.plan(mesh.resources(MESH), adapters(fake))
    assert {c.action for c in again} == {"unchanged"}
    assert plan.apply(again, adapters(fake)) == []
    assert fake.mutations() == []
    lake = fake.resources[MESH.lake_name]
    assert (lake.display_name, lake.labels["managed-by"]) == ("Clickstream", "clickstream")
    raw = fake.resources[MESH.zone_name("raw")]
    assert (raw.type_.name, raw.discovery_spec.json_options.encoding) == ("RAW", "UTF-8")
    asset = fake.resources[MESH.asset_name("raw")]  # the API names the project by number
    assert asset.resource_spec.name == "projects/123456789012/buckets/my-project"


def test_every_curated_table_gets_its_aspects_with_values_from_metadata(fake):
    applied(fake)
    facts = contract.governance()["tables"]
    for table in contract.TABLES + contract.AGGREGATES:
        entry = fake.entries[MESH.entry_name(table)]
        data = entry.aspects["my-project.global.clickstream-table"].data
        assert data["description"] == contract.table(table)["description"]
        assert list(data["primary_key"]) == contract.primary_key(table)
        assert data["owner"] == facts[table]["owner"]
        assert data["freshness"] == facts[table]["freshness"]
        assert data["lab_task"] == facts[table]["labTask"]
        assert list(data.get("classified_columns", [])) == list(facts[table]["columns"])
        for column, (classification, reason) in facts[table]["columns"].items():
            key = f"my-project.global.clickstream-column@Schema.{column}"
            assert entry.aspects[key].path == f"Schema.{column}"
            assert dict(entry.aspects[key].data) == {
                "classification": classification,
                "reason": reason,
            }
        assert "dataplex-types.global.schema" in entry.aspects  # Dataplex's own: left alone
    visits = fake.entries[MESH.entry_name("visits")].aspects
    assert visits["my-project.global.clickstream-table"].data["partitioning"] == (
        "DAY by visit_start"
    )
    assert visits["my-project.global.clickstream-column@Schema.geolocation"].data[
        "classification"
    ] == ("PERSONAL")


def test_deleting_our_aspects_removes_them_and_keeps_everyone_elses(fake):
    used = applied(fake)
    declared = next(r for r in mesh.resources(MESH) if r.kind == "entry-aspects")
    entry = fake.entries[declared.name]
    assert set(declared.fields["aspects"]) <= set(entry.aspects)
    used["entry-aspects"].delete(declared, {})
    left = fake.entries[declared.name].aspects
    assert not set(declared.fields["aspects"]) & set(left)  # ours are gone
    assert "dataplex-types.global.schema" in left  # Dataplex's own schema aspect is kept
    assert used["entry-aspects"].read(declared) is None


def test_the_governance_definition_covers_every_table_with_real_columns():
    definition = contract.governance()
    assert sorted(definition["tables"]) == sorted(aspects.TABLES)
    for table, facts in definition["tables"].items():
        assert set(facts["columns"]) <= set(contract.column_names(table)), table
        for classification, reason in facts["columns"].values():
            assert classification in definition["classifications"] and reason
    places = {"lake", *definition["zones"]}
    for audience in definition["audiences"].values():
        assert set(audience["grants"]) <= places
        assert all(
            r.startswith("roles/dataplex.") for rs in audience["grants"].values() for r in rs
        )


def test_an_apply_stopped_in_the_middle_is_finished_by_the_next(fake):
    fake.server.faults["DataplexService/CreateAsset"] = Fault(
        grpc.StatusCode.UNAVAILABLE, "the service is unavailable"
    )
    with pytest.raises(exceptions.ServiceUnavailable):
        applied(fake)
    changes = plan.plan(mesh.resources(MESH), adapters(fake))
    created = [c.resource.kind for c in changes if c.action == "create"]
    assert created == ["asset", "zone", "iam-policy", "asset", *["entry-aspects"] * 7]
    plan.apply(changes, adapters(fake))
    assert {c.action for c in plan.plan(mesh.resources(MESH), adapters(fake))} == {"unchanged"}


def test_a_field_changed_by_hand_is_updated_alone_keeping_labels_set_by_others(fake):
    applied(fake)
    lake = fake.resources[MESH.lake_name]
    lake.description = "edited in the console"
    lake.labels["cost-center"] = "42"
    fake.server.calls.clear()
    changes = plan.plan(mesh.resources(MESH), adapters(fake))
    changed = [(c.action, c.resource.kind, c.fields) for c in changes if c.action != "unchanged"]
    assert changed == [("update", "lake", ("description",))]
    assert "      description: " in plan.render(changes)
    plan.apply(changes, adapters(fake))
    assert fake.mutations() == ["DataplexService/UpdateLake"]
    lake = fake.resources[MESH.lake_name]
    assert lake.description == contract.governance()["lake"]["description"]
    assert lake.labels["cost-center"] == "42"


def test_a_zone_that_must_be_replaced_takes_its_asset_and_policy_with_it(fake):
    applied(fake)
    fake.resources[CURATED].type_ = "RAW"  # a zone's type cannot change in place
    fake.server.calls.clear()
    changes = plan.plan(mesh.resources(MESH), adapters(fake))
    replaced = [(c.resource.label, c.fields, c.because) for c in changes if c.action == "replace"]
    assert replaced == [
        (f"zone {CURATED}", ("type_",), ""),
        (f"iam-policy {CURATED}", (), f"zone {CURATED}"),
        (f"asset {MESH.asset_name('curated')}", (), f"zone {CURATED}"),
    ]
    assert "(cannot change in place)" in plan.render(changes)
    plan.apply(changes, adapters(fake))
    assert fake.mutations() == [
        "DataplexService/DeleteAsset",  # dependents first
        "IAMPolicy/SetIamPolicy",
        "DataplexService/DeleteZone",
        "DataplexService/CreateZone",
        "IAMPolicy/SetIamPolicy",
        "DataplexService/CreateAsset",
    ]
    assert {c.action for c in plan.plan(mesh.resources(MESH), adapters(fake))} == {"unchanged"}


def test_iam_roles_are_merged_keeping_foreign_bindings_through_a_concurrent_change(fake):
    applied(fake, mesh.Mesh("my-project", "europe-west1", dataset_location="us"))  # no members
    fake.grant(CURATED, "roles/dataplex.dataReader", "user:auditor@example.com")
    fake.grant(CURATED, "roles/dataplex.viewer", "group:everyone@example.com")
    # Someone grants a role between our read and our write: our etag is stale, the write is
    # refused (ABORTED) and the code reads again.
    fake.before_set_policy[CURATED] = lambda: fake.grant(
        CURATED, "roles/owner", "user:admin@example.com"
    )
    fake.server.calls.clear()
    applied(fake)
    bindings = {b.role: set(b.members) for b in fake.policies[CURATED].bindings}
    assert bindings == {
        "roles/dataplex.dataReader": {"user:auditor@example.com", "group:analysts@example.com"},
        "roles/dataplex.viewer": {"group:everyone@example.com"},
        "roles/owner": {"user:admin@example.com"},
        "roles/dataplex.dataOwner": {"group:data-engineers@example.com"},
        "roles/dataplex.dataWriter": {
            "serviceAccount:pipelines@my-project.iam.gserviceaccount.com"
        },
    }
    assert fake.mutations().count("IAMPolicy/SetIamPolicy") == 4  # lake, raw, curated twice
    fake.server.calls.clear()
    assert {c.action for c in plan.plan(mesh.resources(MESH), adapters(fake))} == {"unchanged"}
    assert fake.mutations() == []


def test_a_policy_changed_on_every_attempt_is_given_up_with_the_error(fake):
    applied(fake, mesh.Mesh("my-project", "europe-west1", dataset_location="us"))
    policies = iam.Policies(fake.clients()[0])
    resource = plan.Resource(iam.KIND, CURATED, {"bindings": {"roles/x": ["user:a@b.c"]}})

    def interfere():
        fake.grant(CURATED, "roles/owner", "user:admin@example.com")
        fake.before_set_policy[CURATED] = interfere  # and again, every time

    fake.before_set_policy[CURATED] = interfere
    with pytest.raises(exceptions.Aborted):
        policies.create(resource)
    assert fake.server.calls.count("IAMPolicy/SetIamPolicy") == iam.POLICY_ATTEMPTS


def test_aspects_wait_for_a_table_dataplex_lists_late_and_say_when_it_never_comes():
    service = FakeDataplex()
    try:
        for table in aspects.TABLES:
            service.add_table(MESH.entry_name(table), contract.column_names(table), hidden_for=3)
        applied(service)  # each entry is missing for three reads, then there
        data = service.entries[MESH.entry_name("visits")].aspects
        assert "my-project.global.clickstream-table" in data
        del service.entries[MESH.entry_name("page_views")]
        missing = plan.Resource(
            "entry-aspects",
            MESH.entry_name("page_views"),
            {"aspects": aspects.aspects("my-project", "page_views")},
        )
        with pytest.raises(exceptions.NotFound, match="does the table exist"):
            adapters(service, wait_seconds=0.1)["entry-aspects"].create(missing)
    finally:
        service.stop()


def test_validate_only_checks_without_changing_anything(fake):
    used = adapters(fake)
    verdicts = plan.validate(plan.plan(mesh.resources(MESH), used), used)
    by_kind = {}
    for change, verdict in verdicts:
        by_kind.setdefault(change.resource.kind, set()).add(verdict.split(":")[0])
    assert by_kind == {
        "aspect-type": {"ok"},
        "lake": {"ok"},
        "iam-policy": {"not checked"},
        "zone": {"not checked"},  # needs the lake the plan creates
        "asset": {"not checked"},
        "entry-aspects": {"not checked"},
    }
    assert fake.resources == {}
    bad = mesh.Mesh("my-project", "europe-west1", lake="Bad_Lake")  # not checked by mesh.check
    verdicts = plan.validate(plan.plan(mesh.resources(bad), used), used)
    lake = next(v for c, v in verdicts if c.resource.kind == "lake")
    assert lake.startswith("refused: INVALID_ARGUMENT") and "Bad_Lake" in lake


def test_validate_only_checks_an_update(fake):
    applied(fake)
    fake.resources[MESH.lake_name].display_name = "renamed"
    used = adapters(fake)
    verdicts = plan.validate(plan.plan(mesh.resources(MESH), used), used)
    assert [(c.resource.kind, v) for c, v in verdicts] == [("lake", "ok")]
    assert fake.resources[MESH.lake_name].display_name == "renamed"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["apply"], "Dataplex has no local emulator"),
        (["plan", "--project", "my-project"], "--location is required"),
        (["plan", "--project", "My_Project", "--location", "europe-west1"], "project 'My_Project'"),
        (["apply", "--project", "my-project", "--location", "europe"], "location 'europe'"),
        (
            ["apply", "--project", "my-project", "--location", "us-east1", "--analysts", "bob"],
            "bob",
        ),
        (
            ["plan", "--project", "my-project", "--location", "us-east1", "--lake", "x_"],
            "lake 'x_'",
        ),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(arguments, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        main.main(["governance", *arguments])
    assert str(stopped.value).startswith("error: ") and message in str(stopped.value)
    assert "\n" not in str(stopped.value)
    assert capsys.readouterr().out == ""  # nothing planned, nothing applied


def test_plan_without_a_project_previews_a_fresh_project(capsys):
    main.main(["governance", "plan", "--location", "europe-west1", "--engineers", "group:e@x.io"])
    out = capsys.readouterr().out
    assert out.startswith("Preview (no --project)")
    assert "  + create    lake projects/PROJECT/locations/europe-west1/lakes/clickstream" in out
    assert out.rstrip().endswith("Plan: 16 to create, 0 to update, 0 to replace, 0 unchanged.")


def test_generated_docs_are_fresh():
    assert docs.write(check=True) == [], "run `clickstream governance docs`"
