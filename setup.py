"""Packaging: each top-level folder of the catalog is a subpackage of the ``clickstream``
namespace (``transforms/`` is ``clickstream.transforms``), so installing the project puts no
generic top-level name (``metadata``, ``transforms``) beside other distributions'.

Only the folders present are packaged: the flex-template image's build context holds the runtime
folders alone (``templates/Dockerfile``), so its package is exactly what launches and runs the
pipelines. Everything else is in ``pyproject.toml``.

The same mapping on disk, for tools that read files instead of importing them (editors, type
checkers): ``python -c 'import setup; setup.link_namespace()'`` (``make setup`` runs it) makes
``clickstream/`` at the root, one link a folder (``clickstream/gcp -> ../gcp``).
"""

from pathlib import Path

from setuptools import setup

FOLDERS = (  # top-level folders that are packages, lowest layer first (tests/test_layers.py)
    "core",
    "metadata",
    "gcp",
    "transforms",
    "pipelines",
    "simulator",
    "subscribers",
    "dashboard",
    "deploy",
    "local",
    "fakes",
    "monitoring",
    "governance",
    "orchestration",
    "project",
    "cli",
)
PACKAGE_DATA = {
    "metadata": ["*.json", "tables/*.json", "views/*.sql"],
    "pipelines": ["*.yaml"],
    "dashboard": ["assets/*"],
    "orchestration": ["dags/*.py", "dags/.airflowignore", "airflow*"],
}

ROOT = Path(__file__).resolve().parent
present = [folder for folder in FOLDERS if (ROOT / folder).is_dir()]


def link_namespace() -> None:
    """``clickstream/``: a relative link to each folder present, and nothing else linked."""
    namespace = ROOT / "clickstream"
    namespace.mkdir(exist_ok=True)
    for link in namespace.iterdir():
        if link.is_symlink():
            link.unlink()
    for folder in present:
        (namespace / folder).symlink_to(Path("..") / folder, target_is_directory=True)


if __name__ == "__main__":  # as setuptools runs it; `import setup` only reads the folders
    setup(
        packages=[f"clickstream.{folder}" for folder in present],
        package_dir={f"clickstream.{folder}": folder for folder in present},
        package_data={f"clickstream.{f}": PACKAGE_DATA[f] for f in present if f in PACKAGE_DATA},
    )
