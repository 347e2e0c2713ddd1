"""The lineage graph of a batch migration run, from the events the code recorded: the local
stack's lineage file (``gcp/lineage.py``) or the Data Lineage API. Printed as text (sources ->
process -> targets) or as a Mermaid flowchart."""

import dataclasses
import json

from clickstream.gcp import lineage


@dataclasses.dataclass(frozen=True)
class Run:
    """A run of a process with its lineage events, in the API's JSON form."""

    process: dict
    run: dict
    events: list[dict]

    @property
    def links(self) -> list[tuple[str, str]]:
        """(source, target) fully qualified names, in event order, without repeats."""
        found: dict[tuple[str, str], None] = {}
        for event in self.events:
            for link in event.get("links", []):
                pair = (link["source"]["fullyQualifiedName"], link["target"]["fullyQualifiedName"])
                found[pair] = None
        return list(found)


def runs_from_calls(calls: list[lineage.Call]) -> list[Run]:
    """The runs the calls record, oldest first. A call made twice (a retry) counts once."""
    processes, runs, events = {}, {}, {}
    for call in calls:
        if call.method == "CreateProcess":
            processes[call.request["process"]["name"]] = call.request["process"]
        elif call.method == "CreateRun":
            runs[call.request["run"]["name"]] = call.request["run"]
        elif call.method == "CreateLineageEvent":
            events[call.request["lineageEvent"]["name"]] = call.request["lineageEvent"]
    found = [
        Run(
            processes.get(name.split("/runs/")[0], {"name": name.split("/runs/")[0]}),
            run,
            [e for e_name, e in events.items() if e_name.startswith(f"{name}/lineageEvents/")],
        )
        for name, run in runs.items()
    ]
    return sorted(found, key=lambda r: r.run["startTime"])


def runs_from_api(client, process: str) -> list[Run]:
    """The runs of ``process`` (a resource name) in the Data Lineage API, oldest first."""
    found = _as_json(client.get_process(name=process))
    runs = [
        Run(
            found,
            _as_json(run),
            [_as_json(event) for event in client.list_lineage_events(parent=run.name)],
        )
        for run in client.list_runs(parent=process)
    ]
    return sorted(runs, key=lambda r: r.run["startTime"])


def _as_json(message) -> dict:
    return json.loads(type(message).to_json(message, use_integers_for_enums=False))


def pick(runs: list[Run], run_id: str | None = None) -> Run:
    """The run named ``run_id`` (its id or display name), else the latest; KeyError if none."""
    if run_id is None and runs:
        return runs[-1]
    for run in runs:
        if run_id in (run.run["name"].rsplit("/", 1)[-1], run.run.get("displayName")):
            return run
    known = ", ".join(r.run.get("displayName", r.run["name"]) for r in runs) or "none"
    raise KeyError(f"no run {run_id!r} (runs: {known})")


def text(run: Run) -> str:
    """The run's graph as text: its sources, the process, its targets."""
    links = run.links
    sources = list(dict.fromkeys(s for s, _ in links))
    targets = list(dict.fromkeys(t for _, t in links))
    attributes = ", ".join(f"{k} {_number(v)}" for k, v in run.run.get("attributes", {}).items())
    lines = [
        f"run {run.run.get('displayName', run.run['name'])}: {run.run.get('state', 'UNKNOWN')}, "
        f"{run.run.get('startTime', '?')} to {run.run.get('endTime', '?')}",
        f"  {attributes}" if attributes else "",
        f"sources ({len(sources)})",
        *(f"  {source}" for source in sources),
        "    |",
        f"    v  {run.process.get('displayName', '')} ({run.process['name']})",
        "    |",
        f"targets ({len(targets)})",
    ]
    for target in targets:
        count = sum(t == target for _, t in links)
        lines.append(f"  {target}  <- {count} of {len(sources)} sources")
    if not links:
        lines.append(
            "  (no lineage events: the run failed, or its inputs had no Cloud Storage name)"
        )
    return "\n".join(line for line in lines if line)


def mermaid(run: Run) -> str:
    """The run's graph as a Mermaid flowchart: sources -> process -> targets."""
    links = run.links
    sources = list(dict.fromkeys(s for s, _ in links))
    targets = list(dict.fromkeys(t for _, t in links))
    lines = ["flowchart LR", f'  process{{{{"{_quote(run.process.get("displayName", ""))}"}}}}']
    lines += [f'  source{i}["{_quote(s)}"] --> process' for i, s in enumerate(sources)]
    lines += [f'  process --> target{i}["{_quote(t)}"]' for i, t in enumerate(targets)]
    return "\n".join(lines)


def _number(value):
    """An attribute's value; the API keeps numbers as doubles (5.0): whole ones shown as such."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _quote(text: str) -> str:
    """Text inside a Mermaid node label."""
    return text.replace('"', "#quot;")
