"""``clickstream template``: list, run locally, build on Google Cloud, document the catalog."""

import argparse
import json
import subprocess
from pathlib import Path

from clickstream import pipelines
from clickstream.cli.local import use_local_stack
from clickstream.core import names, shell, templates

# clickstream.pipelines.catalog imports Beam (seconds); the handlers import it when they run.


LOCAL_BATCH_RUNNER = (
    "--runner=FnApiRunner"  # Beam's local batch runner (DirectRunner fetches Prism)
)


def parameters_of(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs of ``--param`` as a dict."""
    given = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --param takes KEY=VALUE, not {pair!r}")
        given[key] = value
    return given


def _list(args: argparse.Namespace) -> None:
    for name in pipelines.names():
        meta = templates.metadata(name)
        kind = "streaming" if meta.get("streaming") else "batch"
        print(f"{name:<24}{kind:<11}{meta['name']}")


def _run(args: argparse.Namespace) -> None:
    from clickstream.pipelines import catalog

    try:
        variables = templates.variables(args.name, parameters_of(args.param))
    except (templates.ParameterError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    if templates.metadata(args.name).get("streaming"):
        raise SystemExit(
            f"error: {args.name} is a streaming template: `clickstream stream {args.name}`"
        )
    use_local_stack()
    print(
        f"running {args.name} on the local stack with "
        + ", ".join(f"{k}={v!r}" for k, v in variables.items())
    )
    counters = catalog.run_and_wait(args.name, variables, args.beam_args)
    print(f"\n{args.name} finished")
    for key in sorted(counters):
        print(f"  {key:<32}{counters[key]:>10,}")
    if args.counters:
        Path(args.counters).write_text(json.dumps(counters, sort_keys=True) + "\n")


def _build(args: argparse.Namespace) -> None:

    chosen = pipelines.names() if args.all else [args.name]
    if not chosen[0]:
        raise SystemExit("error: name a template or pass --all")
    where = (args.project, args.region, args.bucket, args.repository, args.tag)
    _upload_package(args)
    for name in chosen:
        try:
            templates.metadata(name)
        except FileNotFoundError as error:
            raise SystemExit(f"error: {error}") from None
        print(f"# {name}: build the image, then the template file")
        for command in templates.build_commands(name, *where):
            print(shell.line(command))
            if not args.dry_run:
                subprocess.run(command, check=True)
        print(f"# {name}: run it (example parameters; see docs/templates/{name}.md)")
        example = templates.example_parameters(name)
        print(shell.line(templates.run_command(name, *where, example)) + "\n")


def _launch_local(args: argparse.Namespace) -> None:
    from clickstream.deploy import image
    from clickstream.local import emulators

    try:
        if templates.metadata(args.name).get("streaming"):
            raise SystemExit(
                f"error: {args.name} is a streaming template: `clickstream stream {args.name}`"
            )
        # Dataflow checks the parameters given against the metadata and passes only those to
        # the launcher (a metadata default pre-fills the console's form, nothing more).
        parameters = parameters_of(args.param)
        templates.variables(args.name, parameters)
    except (templates.ParameterError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    use_local_stack()
    workspace = Path(args.workspace)
    print(f"building the image's environment in {workspace} from templates/Dockerfile")
    environment = image.build_environment(workspace, reuse=not args.rebuild)
    for step, seconds in environment.seconds.items():
        print(f"  {seconds:7.1f} s  {step}")
    if not environment.seconds:
        print("  (unchanged: reused; --rebuild builds it again)")
    print(f"launching {args.name} with " + " ".join(f"--{k}={v}" for k, v in parameters.items()))
    beam_args = args.beam_args or [LOCAL_BATCH_RUNNER]
    launched = image.launch(environment, args.name, parameters, beam_args, emulators.emulator_env())
    if launched.returncode:
        raise SystemExit(
            f"{launched.output[-4000:]}\nerror: the launcher exited {launched.returncode}"
        )
    if launched.startup_seconds is not None:
        print(
            f"  {launched.startup_seconds:7.1f} s  launcher start-up: imports, spec, pipeline built"
        )
    print(f"  {launched.seconds:7.1f} s  launcher in all (the local runner runs the job in it)")


def _upload_package(args: argparse.Namespace) -> None:
    """Build the catalog's sdist and upload it beside the templates, for the job builder."""
    from clickstream.deploy import image

    package = image.build_package(Path("build", "package")).relative_to(Path.cwd())
    command = templates.package_upload_command(package, args.bucket)
    print(
        "# the catalog's package, for the Dataflow job builder: "
        f"`clickstream template export --package {templates.package_url(args.bucket)}`"
    )
    print(shell.line(command))
    if not args.dry_run:
        subprocess.run(command, check=True)


def _export(args: argparse.Namespace) -> None:
    from clickstream.pipelines import catalog

    try:
        templates.check_package(args.package)
        exported = catalog.export(args.name, parameters_of(args.param), args.package)
    except (templates.ParameterError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    if args.output == "-":
        print(exported, end="")
        return
    Path(args.output).write_text(exported, encoding="utf-8")
    print(f"wrote {args.output}: load it in the Dataflow job builder (Load YAML)")


def _docs(args: argparse.Namespace) -> None:
    from clickstream.deploy import capacity_docs
    from clickstream.pipelines import template_docs

    stale = template_docs.write(check=args.check) + capacity_docs.write(check=args.check)
    if args.check and stale:
        raise SystemExit(
            "error: generated docs are stale: "
            + ", ".join(stale)
            + "; run `clickstream template docs`"
        )
    print("template docs " + ("are up to date" if args.check else "written"))


def add_parameter_arguments(parser: argparse.ArgumentParser) -> None:
    """``--param KEY=VALUE`` (repeated) and the Beam arguments after ``--``; read them with
    ``parameters_of(args.param)`` and ``args.beam_args``."""
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a template parameter (repeat for each)",
    )
    parser.add_argument("beam_args", nargs="*", help=argparse.SUPPRESS)


def register(commands) -> None:
    """Adds ``template`` and its actions to the ``clickstream`` command."""
    template = commands.add_parser(
        "template",
        help="the flex-template catalog: list, run, launch-local, export, build, docs",
        description="Every spec in pipelines/ is a Dataflow flex template, its parameters in "
        "metadata/<name>.json.",
    )
    actions = template.add_subparsers(dest="action", required=True, metavar="ACTION")

    actions.add_parser("list", help="the templates of the catalog").set_defaults(run=_list)

    run = actions.add_parser(
        "run",
        help="run a template on the local stack (the local twin of gcloud ... flex-template run)",
        description="Checks the parameters against the template's metadata (name, required, "
        "regexes) before anything runs, then runs the spec on Beam's local runner against "
        "the local stack. The same --param values work unchanged in `gcloud dataflow "
        "flex-template run --parameters`. gs:// paths are served by the storage emulator "
        "(stage local files with `clickstream local upload`). Arguments after `--` go to Beam.",
    )
    run.add_argument("name", help="template (spec) name, e.g. batch_migration")
    run.add_argument("--counters", metavar="FILE", help="also write the counters to FILE (JSON)")
    add_parameter_arguments(run)
    run.set_defaults(run=_run)

    build = actions.add_parser(
        "build",
        help="build templates on Google Cloud (Cloud Build + flex-template build)",
        description="Runs, or with --dry-run prints, for each template: `gcloud builds submit` "
        "of templates/Dockerfile (image REGION-docker.pkg.dev/PROJECT/REPOSITORY/"
        "clickstream-NAME:TAG) and `gcloud dataflow flex-template build` of "
        "gs://BUCKET/templates/NAME.json with metadata/NAME.json and the template's Dataflow "
        "options (metadata/dataflow_options.json) as its defaults; then prints an example "
        "`gcloud dataflow flex-template run`. First it builds the catalog's package (sdist) "
        "and uploads it to gs://BUCKET/templates/ for the job builder (`template export`).",
    )
    build.add_argument("name", nargs="?", default="", help="template name (or --all)")
    build.add_argument("--all", action="store_true", help="every template of the catalog")
    build.add_argument("--project", required=True)
    build.add_argument("--region", required=True, help="e.g. europe-west1")
    build.add_argument("--bucket", required=True, help="bucket for template files (no gs://)")
    build.add_argument(
        "--repository", default=names.IMAGE_REPOSITORY, help="Artifact Registry repository"
    )
    build.add_argument("--tag", default=names.IMAGE_TAG, help="image tag")
    build.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    build.set_defaults(run=_build)

    launch = actions.add_parser(
        "launch-local",
        help="run a batch template as its flex-template image would, on the local stack",
        description="The launcher twin: builds the image's Python environment from the "
        "files templates/Dockerfile copies (a fresh virtual environment, the pinned "
        "templates/requirements.txt, the catalog installed from its own build context, pip "
        "check), then runs the image's launcher (templates/main.py) with the image's "
        "environment variables and the parameters as Dataflow's launcher passes them "
        "(--name=value, those given, checked against the metadata; unknown ones refused), "
        "against the local stack. Prints how long the environment took to build and the "
        "pipeline to start. Arguments after `--` go to Beam (default "
        f"{LOCAL_BATCH_RUNNER}).",
    )
    launch.add_argument("name", help="batch template, e.g. batch_migration")
    launch.add_argument("--workspace", default="build/image", help="where the environment is built")
    launch.add_argument(
        "--rebuild", action="store_true", help="build the environment even if unchanged"
    )
    add_parameter_arguments(launch)
    launch.set_defaults(run=_launch_local)

    export = actions.add_parser(
        "export",
        help="write a template as one Beam YAML file for the Dataflow job builder",
        description="Renders the spec with the given parameters (checked against the "
        "metadata, defaults filled in), leaves out its tests and inlines the provider listing "
        "with the catalog's package in `packages`, so the Dataflow job builder (Load YAML) can "
        "run it: Beam installs the transforms from that package with pip, which reads https "
        "URLs, package requirements and local paths, not gs://. `template build` uploads the "
        "package to gs://BUCKET/templates/ and prints its https URL.",
    )
    export.add_argument("name", help="template name, e.g. batch_migration")
    export.add_argument(
        "--package",
        required=True,
        help="the catalog's sdist as pip installs it: its https URL "
        "(https://storage.googleapis.com/BUCKET/templates/clickstream_catalog-VERSION.tar.gz), "
        "a requirement from a package repository, or a local path; not gs://",
    )
    export.add_argument("--output", default="-", help="file to write (default: standard output)")
    add_parameter_arguments(export)
    export.set_defaults(run=_export)

    docs = actions.add_parser(
        "docs",
        help="generate docs/templates/*.md, the README's catalog and docs/capacity.md",
        description="Writes the template pages and the README's catalog from the metadata, and "
        "the capacity model's tables in docs/capacity.md from benchmarks/capacity.json, "
        "deploy/bigquery_pricing.json and metadata/dataflow_options.json.",
    )
    docs.add_argument("--check", action="store_true", help="fail if the committed docs are stale")
    docs.set_defaults(run=_docs)
