"""The generated parts of ``docs/governance.md``, from the definitions: the mesh diagram, who may
do what where, the aspect types and every table's aspect values, the lineage graph of an example
run and the plan for a fresh project. ``clickstream governance docs`` writes them between their
markers; a test fails when they are stale."""

import datetime
from pathlib import Path

from clickstream.core import contract, generated, names
from clickstream.gcp import lineage, plan
from clickstream.governance import aspects, lineage_graph, mesh

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "governance.md"
COMMAND = "clickstream governance docs"
EXAMPLE = mesh.Mesh(  # placeholders, as in the other pages
    "PROJECT",
    "REGION",
    bucket="BUCKET",
    members={
        "analysts": ("group:analysts@example.com",),
        "engineers": ("group:data-engineers@example.com",),
        "pipelines": ("serviceAccount:clickstream-pipelines@PROJECT.iam.gserviceaccount.com",),
    },
)


def mesh_diagram(example: mesh.Mesh = EXAMPLE) -> str:
    """The lake, its zones and assets, the audiences' roles, and the migration between zones."""
    definition = contract.governance()
    zones = definition["zones"]
    lines = [
        "```mermaid",
        "flowchart LR",
        f'  subgraph lake["lake {example.lake}: {definition["lake"]["displayName"]}"]',
    ]
    for zone, spec in zones.items():
        if spec["type"] == "RAW":
            patterns = f"{names.LANDING_PREFIX}**, {names.RAW_ARCHIVE_PREFIX}**"
            where = f"gs://{example.bucket}<br>discovery: JSON lines in {patterns}"
        else:
            where = f"BigQuery {example.project}.{example.dataset}"
        lines += [
            f'    subgraph {zone}["zone {zone} ({spec["type"]}): {spec["displayName"]}"]',
            f'      {zone}_asset[("asset {spec["asset"]["id"]}<br>{where}")]',
            "    end",
        ]
    lines.append("  end")
    for audience, spec in definition["audiences"].items():
        lines.append(f'  {audience}(["{audience}"])')
        for place, roles in spec["grants"].items():
            for role in roles:
                lines.append(f'  {audience} -- "{role.rsplit(".", 1)[-1]}" --> {place}')
    lines += [
        '  raw_asset == "batch migration: one lineage run per migration" ==> curated_asset',
        "```",
    ]
    return "\n".join(lines)


def access_table() -> str:
    """Each audience's roles on the lake and each zone."""
    definition = contract.governance()
    places = ["lake", *definition["zones"]]
    lines = [
        "| audience | who | " + " | ".join(places) + " | flag |",
        "|---" * (len(places) + 3) + "|",
    ]
    for audience, spec in definition["audiences"].items():
        cells = [", ".join(spec["grants"].get(place, [])) or "-" for place in places]
        lines.append(
            f"| {audience} | {generated.cell(spec['description'])} | " + " | ".join(cells) + " | "
            f"`--{audience} MEMBER` |"
        )
    return "\n".join(lines)


def aspect_tables() -> str:
    """The aspect types' fields, then every table's aspect values."""
    lines = []
    for type_id, fields in (
        (aspects.TABLE_TYPE, aspects.TABLE_FIELDS),
        (aspects.COLUMN_TYPE, aspects.COLUMN_FIELDS),
    ):
        lines += [
            f"Aspect type `{type_id}`: {aspects.aspect_types()[type_id]['description']}",
            "",
            "| field | type | description |",
            "|---|---|---|",
            *(f"| `{name}` | {kind} | {description} |" for name, kind, _, description in fields),
            "",
        ]
    names_ = [name for name, *_ in aspects.TABLE_FIELDS if name != "description"]
    lines += [
        f"`{aspects.TABLE_TYPE}` aspects (the description is each table's, "
        "from `metadata/tables/`):",
        "",
        "| table | " + " | ".join(names_) + " |",
        "|---" * (len(names_) + 1) + "|",
    ]
    for table in aspects.TABLES:
        values = aspects.table_aspect(table)
        cells = (generated.cell(values.get(n, "-")) for n in names_)
        lines.append(f"| `{table}` | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"`{aspects.COLUMN_TYPE}` aspects:",
        "",
        "| table | column | classification | reason |",
        "|---|---|---|---|",
    ]
    for table in aspects.TABLES:
        for column, values in aspects.column_aspects(table).items():
            lines.append(
                f"| `{table}` | `{column}` | {values['classification']} | {values['reason']} |"
            )
    return "\n".join(lines)


def example_lineage(example: mesh.Mesh = EXAMPLE) -> lineage_graph.Run:
    """The lineage of a migration of two landed files, as ``record_migration`` builds it."""
    started = datetime.datetime(2024, 9, 1, 6, 0, tzinfo=datetime.UTC)
    files = [
        f"gs://{example.bucket}/{names.LANDING_PREFIX}visits-2024-08-{day}.jsonl"
        for day in (28, 29)
    ]
    tables = lineage.migration_tables(example.project, example.dataset)
    process = lineage.migration_process(example.project, example.dataset_location, None)
    links = [
        (source, lineage.bigquery_fqn(t))
        for t in tables
        for f in files
        if (source := lineage.storage_fqn(f))  # all of them: the files are in gs://
    ]
    end = started + datetime.timedelta(minutes=2)
    calls = lineage.run_calls(process, "migration-20240901T060000000000Z", links, started, end)
    return lineage_graph.runs_from_calls(calls)[0]


def lineage_section() -> str:
    run = example_lineage()
    return "\n".join(
        [
            "```mermaid",
            lineage_graph.mermaid(run),
            "```",
            "",
            "```text",
            lineage_graph.text(run),
            "```",
        ]
    )


def plan_section() -> str:
    changes = mesh.fresh_plan(EXAMPLE)
    summary = f"{len(changes)} resources, every one created"
    return "\n".join(
        [
            f"<details><summary>{summary}</summary>",
            "",
            "```text",
            plan.render(changes),
            "```",
            "",
            "</details>",
        ]
    )


SECTIONS = {
    "mesh": mesh_diagram,
    "access": access_table,
    "aspects": aspect_tables,
    "lineage": lineage_section,
    "plan": plan_section,
}


def write(check: bool = False) -> list[str]:
    """Write the generated sections (or, with ``check``, only compare); the stale files."""
    fresh = generated.fill(PAGE.read_text(encoding="utf-8"), SECTIONS, COMMAND)
    return generated.write({PAGE: fresh}, ROOT, check)
