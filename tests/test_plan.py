"""The plan/apply engine on its own, with an in-memory API: what each action means, what a plan
prints, and that applying a plan leaves nothing to do. (The monitoring and governance tests
drive it through the real client libraries against fake Google services.)"""

from clickstream.gcp import plan


class MemoryApi:
    """An API keeping resources in a dict, counting the calls that change something."""

    def __init__(self, existing=None):
        self.resources = dict(existing or {})
        self.calls: list[tuple[str, str, tuple]] = []

    def read(self, resource):
        found = self.resources.get(resource.name)
        return None if found is None else {**found, "server_field": "set by the server"}

    def create(self, resource):
        self.calls.append(("create", resource.name, ()))
        self.resources[resource.name] = dict(resource.fields)

    def update(self, resource, current, fields):
        self.calls.append(("update", resource.name, fields))
        self.resources[resource.name] = dict(resource.fields)

    def delete(self, resource, current):
        self.calls.append(("delete", resource.name, ()))
        del self.resources[resource.name]


def resources(threshold=100, kind="counter"):
    return [
        plan.Resource("metric", "views", {"kind": kind, "labels": {"a": "1"}}, ("kind",)),
        plan.Resource("policy", "alert", {"threshold": threshold, "channels": ["mail"]}),
    ]


def test_a_fresh_project_gets_everything_created_then_nothing_changes():
    api = MemoryApi()
    adapters = {"metric": api, "policy": api}
    changes = plan.plan(resources(), adapters)
    assert [c.action for c in changes] == ["create", "create"]
    assert plan.render(changes).splitlines() == [
        "  + create    metric views",
        '      kind: "counter"',
        '      labels.a: "1"',
        "  + create    policy alert",
        "      threshold: 100",
        '      channels: ["mail"]',
        "Plan: 2 to create, 0 to update, 0 to replace, 0 unchanged.",
    ]
    plan.apply(changes, adapters)
    api.calls.clear()
    again = plan.plan(resources(), adapters)
    assert [c.action for c in again] == ["unchanged", "unchanged"]
    assert plan.apply(again, adapters) == [] and api.calls == []


def test_a_changed_field_is_an_update_of_that_field_and_a_frozen_one_a_replace():
    api = MemoryApi()
    adapters = {"metric": api, "policy": api}
    plan.apply(plan.plan(resources(), adapters), adapters)
    api.calls.clear()
    changes = plan.plan(resources(threshold=200, kind="gauge"), adapters)
    assert [(c.action, c.fields) for c in changes] == [
        ("replace", ("kind",)),
        ("update", ("threshold",)),
    ]
    assert "cannot change in place" in plan.render(changes)
    plan.apply(changes, adapters)
    assert api.calls == [
        ("delete", "views", ()),
        ("create", "views", ()),
        ("update", "alert", ("threshold",)),
    ]


def test_differences_compare_only_what_is_declared():
    declared = {"a": 1, "b": {"c": [1, 2]}, "d": None}
    assert plan.differences(declared, {"a": 1, "b": {"c": [1, 2], "x": 9}, "e": 3}) == []
    assert plan.differences(declared, {"a": 2, "b": {"c": [2, 1]}}) == ["a", "b.c"]
    assert plan.top_level(["b.c", "a", "b.d"]) == ["a", "b"]


def test_what_needs_a_replaced_resource_is_replaced_with_it_dependents_deleted_first():
    api = MemoryApi()
    adapters = {"metric": api, "policy": api}
    declared = [
        plan.Resource("metric", "views", {"kind": "counter"}, ("kind",)),
        plan.Resource("policy", "alert", {"threshold": 1}, after=("metric views",)),
    ]
    plan.apply(plan.plan(declared, adapters), adapters)
    api.calls.clear()
    declared[0] = plan.Resource("metric", "views", {"kind": "gauge"}, ("kind",))
    changes = plan.plan(declared, adapters)
    assert [(c.action, c.fields, c.because) for c in changes] == [
        ("replace", ("kind",), ""),
        ("replace", (), "metric views"),
    ]
    assert "      (replaced with metric views)" in plan.render(changes).splitlines()
    plan.apply(changes, adapters)
    assert api.calls == [
        ("delete", "alert", ()),
        ("delete", "views", ()),
        ("create", "views", ()),
        ("create", "alert", ()),
    ]


class CheckingApi(MemoryApi):
    """An API that can check a change without making it (validate_only)."""

    def validate(self, change):
        self.calls.append(("validate", change.resource.name, ()))
        return "threshold too high" if change.resource.fields.get("threshold", 0) > 500 else None


def test_validate_asks_the_apis_that_can_check_and_changes_nothing():
    checking, plain = CheckingApi(), MemoryApi()
    adapters = {"metric": plain, "policy": checking}
    declared = [
        plan.Resource("metric", "views", {"kind": "counter"}),
        plan.Resource("policy", "alert", {"threshold": 900}),
        plan.Resource("policy", "page", {"threshold": 5}, after=("metric views",)),
        plan.Resource("policy", "mail", {"threshold": 5}),
    ]
    verdicts = plan.validate(plan.plan(declared, adapters), adapters)
    assert [(c.resource.name, verdict) for c, verdict in verdicts] == [
        ("views", "not checked: the metric API has no validate_only"),
        ("alert", "refused: threshold too high"),
        ("page", "not checked: needs metric views first"),
        ("mail", "ok"),
    ]
    assert plain.resources == checking.resources == {}


def test_render_shows_keys_that_hold_dots_and_list_items():
    declared = {"b": {"roles/x.y": ["u"]}, "c": [{"d": 1}, {"d": 2}]}
    current = {"b": {"roles/x.y": ["u"]}, "c": [{"d": 1}, {"d": 3}]}
    resource = plan.Resource("policy", "p", declared)
    lines = plan.render([plan.Change("create", resource)]).splitlines()
    assert '      b.roles/x.y: ["u"]' in lines
    assert plan.render([plan.Change("update", resource, ("c.1.d",), current)]).splitlines()[1] == (
        "      c.1.d: 2"
    )
