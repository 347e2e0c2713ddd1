"""The generated parts of the project's pages (``clickstream docs`` writes them, ``--check``
fails when one is stale): who may do what (docs/access.md, from ``clickstream.deploy.access``),
the rules of Google the fakes enforce (docs/google-rules.md, from ``clickstream.fakes``), and
the areas of a deployment (docs/deploy.md, from ``clickstream.project.areas``)."""

from pathlib import Path

from clickstream.core import generated
from clickstream.deploy import access
from clickstream.fakes import (
    bigquery,
    dataplex,
    eventarc,
    iam,
    lineage,
    monitoring,
    platform,
    project,
    pubsub,
    rules,
    storage,
)
from clickstream.project import areas

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "clickstream docs"
FAKES = (project, platform, iam, pubsub, storage, bigquery, eventarc, monitoring, dataplex, lineage)


def _identity(identity: access.Identity) -> list[str]:
    who = identity.account and f"`{identity.account}@PROJECT.iam.gserviceaccount.com`"
    who = who or (identity.agent and f"`{identity.agent.format(number='NUMBER')}`") or "you"
    lines = [
        f"### {identity.key}: {who}",
        "",
        identity.description + ".",
        "",
        "| to | call | permission | role | on |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {generated.cell(c.doing)} | `{c.method}` | `{c.permission}` | `{c.role}` | {c.scope} |"
        for c in identity.calls
    ]
    return [*lines, ""]


def identities() -> str:
    return "\n".join(line for i in access.GRANTED for line in _identity(i)).rstrip()


def deployer() -> str:
    roles = sorted({call.role for call in access.DEPLOYER.calls})
    lines = _identity(access.DEPLOYER)
    lines += ["Together: " + ", ".join(f"`{role}`" for role in roles) + "."]
    return "\n".join(lines)


def google_rules() -> str:
    lines = ["| rule | service | what Google does | where Google says so |", "|---|---|---|---|"]
    lines += [
        f"| `{r.key}` | {r.service} | {generated.cell(r.gist)} | {generated.cell(r.source)} |"
        for r in rules.collect(*FAKES)
    ]
    return "\n".join(lines)


def area_table() -> str:
    lines = ["| area | APIs enabled for it |", "|---|---|"]
    for area in areas.AREAS:
        apis = ", ".join(f"`{api}`" for api in areas.APIS.get(area, ())) or "(all the others')"
        lines.append(f"| {area} | {apis} |")
    return "\n".join(lines)


PAGES = {
    "docs/access.md": {"identities": identities, "deployer": deployer},
    "docs/google-rules.md": {"rules": google_rules},
    "docs/deploy.md": {"areas": area_table},
}


def write(check: bool = False) -> list[str]:
    """Write the generated sections; with ``check`` only say which pages are stale."""
    pages = {}
    for page, sections in PAGES.items():
        path = ROOT / page
        pages[path] = generated.fill(path.read_text(encoding="utf-8"), sections, COMMAND)
    return generated.write(pages, ROOT, check)
