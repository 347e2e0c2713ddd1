"""Docs generated from the template metadata: ``docs/templates/<name>.md`` and the catalog index
in the README. ``clickstream template docs`` writes them; a test fails when they are stale."""

import shlex
from pathlib import Path

from clickstream import pipelines
from clickstream.core import generated, names, shell, templates
from clickstream.core.generated import cell

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "clickstream template docs"
PLACES = ("PROJECT", "REGION", "BUCKET", "clickstream", "TAG")  # project, region, bucket, repo, tag


def template_page(name: str) -> str:
    """The markdown page of template ``name``."""
    meta = templates.metadata(name)
    lines = [
        f"# {meta['name']}",
        "",
        f"<!-- Generated from metadata/{name}.json by `clickstream template docs`; "
        "do not edit. -->",
        "",
        meta["description"],
        "",
        f"- Spec: [`pipelines/{name}.yaml`](../../pipelines/{name}.yaml)",
        f"- Metadata: [`metadata/{name}.json`](../../metadata/{name}.json)",
        f"- Mode: {'streaming' if meta.get('streaming') else 'batch'}",
        f"- Dataflow defaults, set by the build below: {dataflow_defaults(name)} "
        "([why](../capacity.md#dataflow-options-per-template))",
        "",
        "## Parameters",
        "",
        "| name | label | required | default | type | help | regex |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in meta["parameters"]:
        optional = p.get("isOptional", False)
        default = f"`{p['defaultValue']}`" if optional and p.get("defaultValue") else ""
        regexes = "<br>".join(f"`{cell(r)}`" for r in p.get("regexes", []))
        lines.append(
            f"| `{p['name']}` | {cell(p['label'])} | {'no' if optional else 'yes'} | {default} "
            f"| {p.get('paramType', 'TEXT')} | {cell(p['helpText'])} | {regexes} |"
        )
    example = templates.example_parameters(name)
    params = " ".join(f"--param {shlex.quote(f'{k}={v}')}" for k, v in example.items())
    local = " ".join(
        f"--param {shlex.quote(f'{k}={v}')}" for k, v in templates.examples(name)["local"].items()
    )
    package = templates.package_url("BUCKET")
    if meta.get("streaming"):
        local_run = [
            "It streams until stopped (Ctrl-C drains it: everything received is written); a "
            f"missing subscription is created on the topic `{names.TOPIC}` (publish to it with "
            "`clickstream simulate`).",
            "",
            "```bash",
            f"clickstream stream {name} {local}",
            "```",
        ]
    else:
        local_run = [
            "Local files go into the storage emulator first (`clickstream local upload FILES`). "
            "`template run` runs the spec in this environment; `template launch-local` runs it "
            "as the template's image would: a fresh environment built from the files "
            "templates/Dockerfile copies, its launcher given the parameters as Dataflow's "
            "launcher passes them (it prints how long the environment took to build and the "
            "pipeline to start).",
            "",
            "```bash",
            f"clickstream template run {name} {local}",
            f"clickstream template launch-local {name} {local}",
            "```",
        ]
    lines += [
        "",
        "## Run on Dataflow with gcloud",
        "",
        "```bash",
        *(shell.line(c) for c in templates.build_commands(name, *PLACES)),
        shell.line(templates.run_command(name, *PLACES, example)),
        "```",
        "",
        f"`clickstream template build {name} --project PROJECT --region REGION --bucket BUCKET"
        " --dry-run` prints these commands for your values (and the upload of the catalog's "
        "package, below); without `--dry-run` it runs them.",
        "",
        "## Run from the Dataflow job builder",
        "",
        "The job builder runs Beam YAML and installs Python transforms from the provider's "
        "`packages` with pip, which reads an https URL but not `gs://`. `template build` "
        "uploads the catalog's package beside the templates; `template export` writes the spec "
        "as one file, parameters filled in and checked, that names the package's https URL "
        "(the job's launcher must be able to read it: see [the catalog]"
        "(../catalog.md#the-dataflow-job-builder)):",
        "",
        "```bash",
        f"clickstream template export {name} --package {package} {params} --output {name}.yaml",
        "```",
        "",
        f"In the Google Cloud console: Dataflow, Job builder, Load, YAML: `{name}.yaml`, then "
        "Run job.",
        "",
        "## Run on the local stack",
        "",
        *local_run,
        "",
    ]
    return "\n".join(lines)


def dataflow_defaults(name: str) -> str:
    """The template's Dataflow options and streaming mode, in a few words."""
    meta, options = templates.metadata(name), templates.dataflow_options(name)
    words = [
        f"{options.machine_type} workers",
        f"{options.num_workers} at the start, at most {options.max_workers}",
    ]
    if meta.get("streaming"):
        engine = "on" if options.streaming_engine else "off"
        words += [f"Streaming Engine {engine}", f"{meta['defaultStreamingMode']} mode"]
    return ", ".join(words)


def catalog_index() -> str:
    """The README's table of templates."""
    lines = ["| template | mode | what it does |", "|---|---|---|"]
    for name in pipelines.names():
        meta = templates.metadata(name)
        summary = meta["description"].split(". ")[0].rstrip(".") + "."
        mode = "streaming" if meta.get("streaming") else "batch"
        lines.append(f"| [{name}](docs/templates/{name}.md) | {mode} | {cell(summary)} |")
    return "\n".join(lines)


def write(check: bool = False) -> list[str]:
    """Writes the generated docs (or, with ``check``, only compares); returns stale files."""
    pages = {ROOT / "docs" / "templates" / f"{n}.md": template_page(n) for n in pipelines.names()}
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    pages[readme] = generated.fill(text, {"catalog": catalog_index}, COMMAND)
    return generated.write(pages, ROOT, check)
