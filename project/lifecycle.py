"""A whole project's deployment through the one engine (``clickstream.gcp.plan``): its plan in
dependency order, shown by area; apply; a read-only verify that says what is missing, drifted or
extra; and destroy, the deletions in reverse order.

- apply refuses to replace what holds data (a bucket, the dataset, a table, a subscription's
  backlog) unless told to, and stops at the first failure, saying which change;
- verify changes nothing: the plan's reads, plus, for IAM, the members others gave our roles;
- destroy deletes what the catalog made, last first; buckets and the dataset go only empty,
  or with ``delete_data``; the APIs stay enabled (other deployments may use them).
"""

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

from clickstream.deploy import gcloud
from clickstream.deploy.settings import Settings
from clickstream.gcp import iam, plan, platform, pubsub, storage, warehouse_plan
from clickstream.project import areas, clients

HOLDS_DATA = (  # kinds whose replacement or deletion loses data
    storage.BUCKET,
    warehouse_plan.DATASET,
    warehouse_plan.TABLE,
    pubsub.SUBSCRIPTION,
)
KEPT_ON_DESTROY = (platform.API,)


class DeploymentError(RuntimeError):
    """The deployment cannot go on: the message says why, in one line."""


@dataclasses.dataclass
class Deployment:
    """The declaration of ``settings`` (its ``areas``) and the adapters to read and change it."""

    settings: Settings
    number: str
    declaration: areas.Declaration
    api: dict

    @classmethod
    def of(
        cls,
        settings: Settings,
        build: Path,
        only: Iterable[str] = areas.AREAS,
        runner: gcloud.Runner = gcloud.shell_runner,
    ) -> "Deployment":
        number = settings.project_number or platform.project_number(
            clients.projects_client(), settings.project
        )
        declaration = areas.declare(settings, number, build, only)
        api = clients.adapters(settings.project, declaration.steps, runner)
        return cls(settings, number, declaration, api)

    def planned(self) -> list[plan.Change]:
        """The plan: the change each declared resource needs."""
        return plan.plan(self.declaration.resources, self.api)

    def render(self, changes: list[plan.Change]) -> str:
        """The plan by area, then its summary."""
        lines, area = [], None
        for change in changes:
            here = self.declaration.area_of(change.resource)
            if here != area:
                lines.append(f"# {here}")
                area = here
            lines += plan.render([change], limit=None).splitlines()[:-1]
        return "\n".join([*lines, plan.render(changes).splitlines()[-1]])

    def apply(
        self,
        changes: list[plan.Change],
        allow_replace: bool = False,
        performed: Callable[[plan.Change], None] | None = None,
    ) -> list[plan.Change]:
        losing = [
            c.resource.label
            for c in changes
            if c.action == plan.REPLACE and c.resource.kind in HOLDS_DATA
        ]
        if losing and not allow_replace:
            raise DeploymentError(
                f"{losing[0]} would be deleted and created again, losing what it holds: apply "
                "with --allow-replace to do it"
            )
        return plan.apply(changes, self.api, performed)

    def destroy_plan(self) -> list[plan.Change]:
        """What destroy deletes: every declared resource that exists, last declared first."""
        found = [
            plan.Change(plan.REPLACE, c.resource, (), c.current)
            for c in self.planned()
            if c.action != plan.CREATE and c.resource.kind not in KEPT_ON_DESTROY
        ]
        return list(reversed(found))

    def destroy(
        self,
        changes: list[plan.Change],
        delete_data: bool = False,
        performed: Callable[[plan.Change], None] | None = None,
    ) -> None:
        """Delete ``changes`` (``destroy_plan``'s) in order. Without ``delete_data`` nothing is
        deleted if any of them holds data (said, all of them); with it, buckets and datasets are
        emptied first (neither API deletes one that is not empty)."""
        if not delete_data:
            holding = [f for c in changes if (f := self._holds(c.resource))]
            if holding:
                raise DeploymentError(
                    f"{'; '.join(holding)}: nothing deleted (destroy with --delete-data)"
                )
        for change in changes:
            resource = change.resource
            if delete_data:
                self._empty(resource)
            self.api[resource.kind].delete(resource, change.current or {})
            if performed:
                performed(change)

    def _empty(self, resource: plan.Resource) -> None:
        if resource.kind == storage.BUCKET:
            gcs = self.api[storage.BUCKET].client
            gcs.bucket(resource.name).delete_blobs(list(gcs.list_blobs(resource.name)))
        if resource.kind == warehouse_plan.DATASET:
            bq = self.api[warehouse_plan.DATASET].client
            for table in bq.list_tables(resource.name):
                bq.delete_table(table, not_found_ok=True)

    def _holds(self, resource: plan.Resource) -> str | None:
        """What a bucket or a table holds (None: nothing); a dataset holds its tables,
        which destroy deletes first."""
        if resource.kind == storage.BUCKET:
            gcs = self.api[storage.BUCKET].client
            if next(iter(gcs.list_blobs(resource.name, max_results=1)), None) is not None:
                return f"bucket {resource.name} holds objects"
        if resource.kind == warehouse_plan.TABLE:
            table = self.api[warehouse_plan.TABLE].client.get_table(resource.name)
            if table.num_rows or table.streaming_buffer:
                return f"table {resource.name} holds rows"
        return None

    def verify(self) -> "Report":
        """What is missing, drifted or extra (nothing is changed)."""
        changes = self.planned()
        missing = [c for c in changes if c.action == plan.CREATE]
        drifted = [c for c in changes if c.action in (plan.UPDATE, plan.REPLACE)]
        extra = []
        for change in changes:
            if change.resource.kind == iam.KIND and change.action != plan.CREATE:
                extra += [
                    f"{change.resource.name}: {role} also held by {member}"
                    for role, member in self.api[iam.KIND].extras(change.resource)
                ]
        return Report(changes, missing, drifted, extra)


@dataclasses.dataclass(frozen=True)
class Report:
    changes: list[plan.Change]
    missing: list[plan.Change]
    drifted: list[plan.Change]
    extra: list[str]

    @property
    def clean(self) -> bool:
        return not (self.missing or self.drifted or self.extra)

    def render(self) -> str:
        lines = [f"missing  {c.resource.label}" for c in self.missing]
        for change in self.drifted:
            lines.append(f"drifted  {change.resource.label}")
            for field in change.fields:
                declared = plan.short(plan.value(change.resource.fields, field))
                found = plan.short(plan.value(change.current or {}, field))
                lines.append(f"    {field}: {found} (declared {declared})")
        lines += [f"extra    {line}" for line in self.extra]
        total = len(self.changes)
        verdict = "as declared" if self.clean else "NOT as declared"
        counts = (
            f"{total - len(self.missing) - len(self.drifted)} of {total} as declared, "
            f"{len(self.missing)} missing, {len(self.drifted)} drifted, {len(self.extra)} extra"
        )
        return "\n".join([*lines, f"Verify: {counts}: the project is {verdict}."])
