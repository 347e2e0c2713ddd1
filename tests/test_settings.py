"""The deployment's settings, held once: the example file loads, flags win over the file, and
anything wrong is refused in one line naming the setting."""

from pathlib import Path

import pytest

from clickstream.cli import main as cli
from clickstream.deploy import settings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / "clickstream.example.toml"


def test_the_example_loads_and_flags_win():
    loaded = settings.load(EXAMPLE)
    assert (loaded.project, loaded.region, loaded.email) == (
        "my-project",
        "europe-west1",
        "oncall@example.com",
    )
    assert (loaded.bucket, loaded.ops_bucket, loaded.dataset_location) == (
        "my-project",
        "my-project-ops",
        "europe-west1",
    )
    assert settings.load(EXAMPLE, {"region": "us-central1", "bucket": None}).region == "us-central1"


@pytest.mark.parametrize(
    "text, says",
    [
        ('project = "my-project"\n', "region not set"),
        ('project = "my-project"\nregion = "europe-west1"\nregoin = "x"\n',
         "unknown setting 'regoin'"),
        ('project = "My_Project"\nregion = "europe-west1"\n', "project 'My_Project' is not valid"),
        ('project = "my-project"\nregion = "europe-west1"\nops_bucket = "my-project"\n',
         "bucket and ops_bucket must differ"),
        ('project = "my-project"\nregion = "europe-west1"\nemail = "nobody"\n', "email 'nobody'"),
        ("project = \n", "is not TOML"),
    ],
)  # fmt: skip
def test_bad_settings_are_one_line(tmp_path, capsys, text, says):
    file = tmp_path / "clickstream.toml"
    file.write_text(text)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["plan", "--settings", str(file)])
    message = str(stopped.value.code)
    assert message.startswith("error: ") and says in message and "\n" not in message


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(settings.SettingsError, match="no settings file"):
        settings.load(tmp_path / "absent.toml")
