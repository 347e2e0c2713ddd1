"""The generated parts of docs/orchestration.md, from the definitions: the files-processed
message and the deployment commands (``clickstream orchestrate docs`` writes them,
``--check`` fails when the page is stale)."""

import re
from pathlib import Path

from clickstream.core import landing, names
from clickstream.deploy import gcloud, settings
from clickstream.orchestration import deployment

PAGE = Path(__file__).resolve().parents[1] / "docs" / "orchestration.md"
EXAMPLE = settings.Settings("my-project", "europe-west1", bucket="my-landing-bucket", tag="TAG")
DIGEST = re.compile(r"(CLICKSTREAM_SOURCE)=[0-9a-f]+")  # the staged code's: changes with it
_BLOCK = re.compile(r"(<!-- generated: (\w+) -->\n).*?(<!-- end generated -->)", re.DOTALL)


def message() -> str:
    file = landing.LandedFile("my-landing-bucket", "landing/visits-2024-07-01.jsonl", "1719824400")
    counters = dict(zip(landing.COUNTERS, (181, 180, 1, 1019, 2, 180), strict=True))
    # and what the job counts besides, which the message does not carry: its counts reconcile
    counters |= {"events_in_loaded_visits": 1021, "page_view": 842, "add_item_to_cart": 142}
    counters |= {"purchase": 35}
    data, attributes = landing.notification(
        file,
        landing.PROCESSED,
        "2024-07-01_09_00_00-123",
        counters,
        "my-project.clickstream.dead_letter",
    )
    body = landing.read_notification(data)
    return "\n".join(
        [
            f"Topic `{names.FILES_PROCESSED_TOPIC}`, one message per run. Attributes: "
            + ", ".join(f"`{key}`" for key in attributes)
            + ". Data (JSON), for example:",
            "",
            "```json",
            data.decode(),
            "```",
            "",
            "`clickstream subscribe files` prints it as:",
            "",
            "```",
            landing.describe(body),
            "```",
        ]
    )


def commands() -> str:
    build = Path("build", "orchestration")
    steps = [
        *deployment.environment_steps(EXAMPLE),
        *deployment.dags_steps(EXAMPLE, deployment.stage_dags(build / "dags")),
        *deployment.trigger_steps(EXAMPLE, deployment.stage_function(build / "trigger-function")),
    ]
    lines = ["```bash", "# clickstream orchestrate deploy --project my-project ... --dry-run"]
    lines += [DIGEST.sub(r"\1=DIGEST", gcloud.line(step.command)) for step in steps]
    return "\n".join([*lines, "```"])


GENERATORS = {"message": message, "commands": commands}


def render(text: str) -> str:
    """``text`` with each generated block made anew."""
    return _BLOCK.sub(lambda m: f"{m[1]}{GENERATORS[m[2]]()}\n{m[3]}", text)


def write(check: bool = False) -> bool:
    """Write the page's generated blocks; with ``check``, only say whether they are stale."""
    text = PAGE.read_text(encoding="utf-8")
    fresh = render(text)
    if not check and fresh != text:
        PAGE.write_text(fresh, encoding="utf-8")
    return fresh != text
