"""Packaging: each top-level folder of the catalog is a subpackage of the ``clickstream``
namespace (``transforms/`` is ``clickstream.transforms``), so installing the project puts no
generic top-level name (``metadata``, ``transforms``) beside other distributions'.

Only the folders present are packaged: the flex-template image's build context holds the runtime
folders alone (``templates/Dockerfile``), so its package is exactly what launches and runs the
pipelines. Everything else is in ``pyproject.toml``.
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

present = [folder for folder in FOLDERS if (Path(__file__).parent / folder).is_dir()]
setup(
    packages=[f"clickstream.{folder}" for folder in present],
    package_dir={f"clickstream.{folder}": folder for folder in present},
    package_data={f"clickstream.{f}": PACKAGE_DATA[f] for f in present if f in PACKAGE_DATA},
)
