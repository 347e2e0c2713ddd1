"""The catalog's Beam YAML specs, shipped with the package so every install can run them."""

from importlib import resources
from pathlib import Path


def spec_path(name: str) -> Path:
    """The file of the spec ``name`` (e.g. ``batch_migration``)."""
    path = Path(str(resources.files(__name__).joinpath(f"{name}.yaml")))
    if not path.is_file():
        raise FileNotFoundError(f"no pipeline spec {name!r}; specs are {', '.join(names())}")
    return path


def names() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml")
        for p in resources.files(__name__).iterdir()
        if p.name.endswith(".yaml")
    )
