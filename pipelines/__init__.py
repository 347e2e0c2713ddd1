"""The catalog's Beam YAML specs, shipped with the package so every install can run them, with
the provider listing they all include (``providers.yaml``)."""

from importlib import resources
from pathlib import Path

PROVIDERS = "providers.yaml"  # the catalog's transforms, declared once, included by every spec


def _folder() -> Path:
    return Path(str(resources.files(__name__)))


def spec_path(name: str) -> Path:
    """The file of the spec ``name`` (e.g. ``batch_migration``)."""
    path = _folder() / f"{name}.yaml"
    if name == PROVIDERS.removesuffix(".yaml") or not path.is_file():
        raise FileNotFoundError(f"no pipeline spec {name!r}; specs are {', '.join(names())}")
    return path


def names() -> list[str]:
    """The specs, by name."""
    return sorted(path.stem for path in _folder().glob("*.yaml") if path.name != PROVIDERS)


def providers_path() -> Path:
    return _folder() / PROVIDERS
