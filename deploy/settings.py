"""The project-wide choices of a deployment, held once: a TOML file (``clickstream.toml``; an
example is ``deploy/clickstream.example.toml``) or flags, which win over the file. Every area's
deployment reads its values from here, so the project, region, buckets, dataset and addresses
are written in one place."""

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clickstream.core import names

DEFAULT_FILE = Path("clickstream.toml")
PROJECT_ID = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")
BUCKET = re.compile(r"[a-z0-9][-_.a-z0-9]{1,61}[a-z0-9]")
DATASET = re.compile(r"[A-Za-z0-9_]{1,1024}")
EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
MEMBER = re.compile(r"(user|group|serviceAccount|domain):\S+")


class SettingsError(ValueError):
    """A setting is missing or not valid: the message names it."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where and how the catalog is deployed (see the example file for each one's meaning)."""

    project: str
    region: str
    email: str = ""  # where alerts go (the monitoring area needs it)
    project_number: str = ""  # names the service agents; empty: asked of Resource Manager
    bucket: str = ""  # landing files and the raw archive; empty: named after the project
    ops_bucket: str = ""  # template files, packages, code, Dataflow's temp; empty: <project>-ops
    dataset: str = names.DATASET
    dataset_location: str = ""  # BigQuery location; empty: the region
    repository: str = names.IMAGE_REPOSITORY
    tag: str = ""  # the images' tag; empty: the digest of the image's build context
    composer_environment: str = names.COMPOSER_ENVIRONMENT
    composer_image: str = "composer-3-airflow-2"  # Composer's image version (alias)
    members: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "bucket", self.bucket or self.project)
        object.__setattr__(self, "ops_bucket", self.ops_bucket or f"{self.project}-ops")
        object.__setattr__(self, "dataset_location", self.dataset_location or self.region)
        checks = [
            ("project", self.project, PROJECT_ID),
            ("region", self.region, REGION),
            ("bucket", self.bucket, BUCKET),
            ("ops_bucket", self.ops_bucket, BUCKET),
            ("dataset", self.dataset, DATASET),
        ]
        if self.email:
            checks.append(("email", self.email, EMAIL))
        if self.project_number:
            checks.append(("project_number", self.project_number, re.compile(r"[0-9]{6,20}")))
        checks += [(f"members.{a}", m, MEMBER) for a, ms in self.members.items() for m in ms]
        for what, value, pattern in checks:
            if not pattern.fullmatch(value):
                raise SettingsError(f"{what} {value!r} is not valid (expected {pattern.pattern})")
        if self.bucket == self.ops_bucket:
            raise SettingsError("bucket and ops_bucket must differ (landing data is governed)")
        if not re.fullmatch(
            r"composer-[0-9][-.a-z0-9]*-airflow-[0-9][-.a-z0-9]*", self.composer_image
        ):
            raise SettingsError(f"composer_image {self.composer_image!r} is not a Composer image")

    def account(self, name: str) -> str:
        """The email of the service account ``name`` of this project."""
        return f"{name}@{self.project}.iam.gserviceaccount.com"


FIELDS = {field.name for field in dataclasses.fields(Settings)}


def load(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from ``path`` (default ``clickstream.toml`` when it exists), with ``overrides``
    (flags given, None left out) over them. Raises SettingsError naming what is wrong."""
    given: dict[str, Any] = {}
    file = path or (DEFAULT_FILE if DEFAULT_FILE.is_file() else None)
    if file is not None:
        try:
            given = tomllib.loads(Path(file).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"no settings file {file}") from None
        except tomllib.TOMLDecodeError as error:
            raise SettingsError(f"{file} is not TOML: {error}") from None
    given.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = sorted(set(given) - FIELDS)
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]!r}; settings are {', '.join(FIELDS)}")
    missing = [key for key in ("project", "region") if not given.get(key)]
    if missing:
        raise SettingsError(
            f"{', '.join(missing)} not set: give them in {file or DEFAULT_FILE} or as flags"
        )
    members = {key: tuple(value) for key, value in dict(given.get("members", {})).items()}
    return Settings(**{**given, "members": members})
