"""The analyst dataset as ``clickstream.gcp.plan`` resources, through the BigQuery client: the
dataset, every table of ``metadata/tables`` and every analyst view, declared in the REST API's
form (``bigquery.v2`` ``Dataset`` and ``Table``).

- ``dataset``: location (cannot change), description, labels;
- ``table``: description, schema, partitioning, clustering, primary key (partitioning and
  clustering cannot change in place: a replacement, which would drop the table's rows, so apply
  refuses it unless told);
- ``view``: the view's SQL and description, updated in place.
"""

from typing import Any

from google.api_core import exceptions
from google.cloud import bigquery

from clickstream.core import contract
from clickstream.gcp import bigquery_tables, plan, views

DATASET, TABLE, VIEW = "dataset", "table", "view"  # the kinds
LABELS = {"managed-by": "clickstream"}
_TABLE_FIELDS = ("description", "schema", "timePartitioning", "clustering", "tableConstraints")


def resources(project: str, dataset: str, location: str) -> list[plan.Resource]:
    """The dataset, its tables, then its views (which read the tables)."""
    name = f"{project}.{dataset}"
    declared = [
        plan.Resource(
            DATASET,
            name,
            {
                "location": location,
                "description": "Clickstream analyst tables and views (the clickstream catalog).",
                "labels": dict(LABELS),
            },
            immutable=("location",),
        )
    ]
    after = (declared[0].label,)
    for table in (*contract.TABLES, *contract.AGGREGATES):
        ref = bigquery.TableReference(bigquery.DatasetReference(project, dataset), table)
        body = bigquery_tables.table_resource(ref, table).to_api_repr()
        fields = {key: body[key] for key in _TABLE_FIELDS if body.get(key)}
        immutable = ("timePartitioning", "clustering")
        declared.append(plan.Resource(TABLE, str(ref), fields, immutable, after))
    tables = tuple(r.label for r in declared[1:])
    for view in views.analyst_views():
        fields = {
            "description": view.description,
            "view": {"query": view.query(project, dataset), "useLegacySql": False},
        }
        declared.append(plan.Resource(VIEW, f"{name}.{view.name}", fields, after=tables))
    return declared


class Datasets:
    def __init__(self, client: bigquery.Client):
        self.client = client

    def read(self, resource: plan.Resource) -> dict[str, Any] | None:
        try:
            found = self.client.get_dataset(resource.name)
        except exceptions.NotFound:
            return None
        body = found.to_api_repr()
        body["location"] = (found.location or "").lower()
        return body

    def create(self, resource: plan.Resource) -> None:
        dataset = bigquery.Dataset(resource.name)
        dataset.location = resource.fields["location"]
        dataset.description = resource.fields["description"]
        dataset.labels = dict(resource.fields["labels"])
        self.client.create_dataset(dataset)

    def update(
        self, resource: plan.Resource, current: dict[str, Any], fields: tuple[str, ...]
    ) -> None:
        dataset = self.client.get_dataset(resource.name)
        dataset.description = resource.fields["description"]
        dataset.labels = dict(resource.fields["labels"])
        self.client.update_dataset(dataset, ["description", "labels"])

    def delete(self, resource: plan.Resource, current: dict[str, Any]) -> None:
        self.client.delete_dataset(resource.name)  # refused while it holds tables


class Tables:
    """Tables and views (``table`` and ``view``: the same API, a view has ``view.query``)."""

    def __init__(self, client: bigquery.Client):
        self.client = client

    def read(self, resource: plan.Resource) -> dict[str, Any] | None:
        try:
            return self.client.get_table(resource.name).to_api_repr()
        except exceptions.NotFound:
            return None

    def _table(self, resource: plan.Resource) -> bigquery.Table:
        project, dataset, table = resource.name.split(".")
        reference = {"projectId": project, "datasetId": dataset, "tableId": table}
        return bigquery.Table.from_api_repr({"tableReference": reference, **resource.fields})

    def create(self, resource: plan.Resource) -> None:
        self.client.create_table(self._table(resource))

    def update(
        self, resource: plan.Resource, current: dict[str, Any], fields: tuple[str, ...]
    ) -> None:
        table = self._table(resource)
        names = {
            "description": "description",
            "schema": "schema",
            "view": "view_query",
            "tableConstraints": "table_constraints",
        }
        self.client.update_table(table, sorted({names[f] for f in plan.top_level(fields)}))

    def delete(self, resource: plan.Resource, current: dict[str, Any]) -> None:
        self.client.delete_table(resource.name)
