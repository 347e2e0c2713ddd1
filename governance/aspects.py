"""The curated tables' metadata in Dataplex Universal Catalog: two aspect types (the successors of
Data Catalog's tag templates) and, for every table, the aspects (tags) attached to its BigQuery
entry, their values taken from ``metadata/``: the table definitions (description, primary key,
partitioning, clustering) and the governance definition (owner, freshness, lab task, classified
columns).

- ``clickstream-table``: one aspect per table, on the table's entry;
- ``clickstream-column``: one aspect per classified column, on the entry at the column's path
  (``Schema.<column>``), like a column-level tag.
"""

from clickstream.core import contract

LOCATION = "global"  # aspect types usable on entries of any location
TABLE_TYPE = "clickstream-table"
COLUMN_TYPE = "clickstream-column"
TABLES = contract.TABLES + contract.AGGREGATES  # every curated table

# (field, type, display name, description) of each aspect type: the tag template's fields.
TABLE_FIELDS = (
    ("description", "string", "Description", "What a row is, its key, how to join it."),
    ("owner", "string", "Owner", "Who answers for the table's content."),
    ("primary_key", "array", "Primary key", "The columns that identify a row."),
    ("partitioning", "string", "Partitioning", "How the table is partitioned: filter on it."),
    ("clustering", "array", "Clustering", "The columns rows are clustered by."),
    ("freshness", "string", "Freshness", "How soon new data arrives, and by which path."),
    ("lab_task", "string", "Lab task", "The challenge lab task the table serves."),
    ("classified_columns", "array", "Classified columns", "Columns with personal data, if any."),
)
OPTIONAL = ("classified_columns",)  # left out when empty: an empty list may not round-trip
COLUMN_FIELDS = (
    ("classification", "enum", "Classification", "What kind of personal data the column holds."),
    ("reason", "string", "Reason", "Why the column is classified so."),
)


def _template(name: str, fields: tuple) -> dict:
    """An aspect type's metadata template (a record of the fields), in the API's JSON form."""
    record = []
    for index, (field, kind, display_name, description) in enumerate(fields, start=1):
        entry = {
            "index": index,
            "name": field,
            "type_": kind,
            "annotations": {"display_name": display_name, "description": description},
            "constraints": {"required": field not in OPTIONAL},
        }
        if kind == "array":
            entry["array_items"] = {"name": "column", "type_": "string"}
        if kind == "enum":
            classes = contract.governance()["classifications"]
            entry["enum_values"] = [
                {"index": i, "name": value} for i, value in enumerate(classes, start=1)
            ]
        record.append(entry)
    return {"name": name.replace("-", "_"), "type_": "record", "record_fields": record}


def aspect_types() -> dict[str, dict]:
    """Each aspect type's id and fields, in the API's JSON form."""
    classes = "; ".join(f"{k}: {v}" for k, v in contract.governance()["classifications"].items())
    return {
        TABLE_TYPE: {
            "display_name": "Clickstream table",
            "description": "Ownership, keys, layout, freshness and personal data of a curated "
            "clickstream table.",
            "metadata_template": _template(TABLE_TYPE, TABLE_FIELDS),
        },
        COLUMN_TYPE: {
            "display_name": "Clickstream column classification",
            "description": f"Personal data in a column of a curated clickstream table ({classes}).",
            "metadata_template": _template(COLUMN_TYPE, COLUMN_FIELDS),
        },
    }


def partitioning(definition: dict) -> str:
    """A table definition's partitioning in words, e.g. ``DAY by visit_start``."""
    spec = definition.get("timePartitioning")
    if not spec:
        return "none"
    return f"{spec['type']} by {spec.get('field', 'ingestion time (_PARTITIONTIME)')}"


def table_aspect(table: str) -> dict:
    """The values of the ``clickstream-table`` aspect of ``table``."""
    definition, facts = contract.table(table), contract.governance()["tables"][table]
    values = {
        "description": definition["description"],
        "owner": facts["owner"],
        "primary_key": contract.primary_key(table),
        "partitioning": partitioning(definition),
        "clustering": definition["clustering"]["fields"],
        "freshness": facts["freshness"],
        "lab_task": facts["labTask"],
        "classified_columns": list(facts["columns"]),
    }
    return {key: value for key, value in values.items() if value or key not in OPTIONAL}


def column_aspects(table: str) -> dict[str, dict]:
    """The values of the ``clickstream-column`` aspect of each classified column of ``table``."""
    return {
        column: {"classification": classification, "reason": reason}
        for column, (classification, reason) in contract.governance()["tables"][table][
            "columns"
        ].items()
    }


def aspects(project: str, table: str) -> dict[str, dict]:
    """The aspects of ``table``'s entry by key (``project.location.type``, with ``@Schema.column``
    for a column's), in the JSON form of ``Entry.aspects``."""
    prefix = f"{project}.{LOCATION}"
    found = {f"{prefix}.{TABLE_TYPE}": {"data": table_aspect(table)}}
    for column, values in column_aspects(table).items():
        found[f"{prefix}.{COLUMN_TYPE}@Schema.{column}"] = {"data": values}
    return found
