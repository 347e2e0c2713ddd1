"""The architecture, enforced: layers import only downwards, packages of one layer do not import
each other, the low layers stay free of Beam and Google clients, and no module imports itself
back through others. Read from the source tree with ``ast`` (lazy imports inside functions
count too), so it holds for code no test runs."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

# Lowest first. A package may import its own modules and any package of a lower layer.
LAYERS = (
    ("core", "metadata"),  # the contract: no Beam, no Google client
    ("gcp",),  # Google Cloud through its client libraries: no Beam
    ("transforms",),  # Beam
    ("pipelines", "simulator", "subscribers", "dashboard"),  # companions of the specs
    ("deploy", "local", "fakes", "monitoring", "governance"),  # operations
    ("orchestration",),  # Composer: the DAG, its trigger, their deployment and local run
    ("project",),  # the whole project: every area planned, applied, verified, rehearsed
    ("cli",),
)
FORBIDDEN = {  # third-party roots a package must not import, even lazily
    "core": ("apache_beam", "google", "grpc"),
    "metadata": ("apache_beam", "google", "grpc"),
    "gcp": ("apache_beam",),
    "simulator": ("apache_beam",),
    "subscribers": ("apache_beam",),
    "dashboard": ("apache_beam",),
    "monitoring": ("apache_beam",),  # the drill runs its pipeline in a process of its own
    "orchestration": ("apache_beam",),  # the DAG runs in Composer, the trigger in Cloud Run
    "project": ("apache_beam",),
    "fakes": ("apache_beam",),
}


def _setup_folders() -> tuple[str, ...]:
    """``FOLDERS`` of setup.py: the folders packaged as clickstream.<folder>."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    (folders,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "FOLDERS"
    ]
    return tuple(ast.literal_eval(folders))


FOLDERS = _setup_folders()
LAYER_OF = {package: index for index, layer in enumerate(LAYERS) for package in layer}


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name (folder X is clickstream.X)."""
    found = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(["clickstream", *parts])] = path
    return found


def imports(path: Path) -> set[str]:
    """The absolute module names ``path`` imports, anywhere in it."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


MODULES = modules()
GRAPH = {
    name: {imported for imported in imports(path) if imported in MODULES and imported != name}
    for name, path in MODULES.items()
}


def package_of(module: str) -> str:
    return module.split(".")[1]


def test_every_packaged_folder_has_a_layer():
    assert sorted(FOLDERS) == sorted(LAYER_OF)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    own = package_of(module)
    for imported in imports(MODULES[module]):
        root = imported.split(".")[0]
        assert root not in FORBIDDEN.get(own, ()), f"{module} imports {imported}"
        assert root not in FOLDERS, f"{module} imports {imported}: use clickstream.{imported}"
        if imported.startswith("clickstream.") and imported.count(".") >= 1:
            other = package_of(imported)
            if other == own:
                continue
            assert LAYER_OF[other] < LAYER_OF[own], (
                f"{module} (layer {LAYER_OF[own]}) imports {imported} "
                f"(layer {LAYER_OF[other]}): layers import only downwards"
            )


@pytest.mark.parametrize("module", sorted(m for m in MODULES if package_of(m) == "fakes"))
def test_the_fakes_import_nothing_of_the_catalog(module):
    """Google's services as Google documents them: written from its documentation, not from
    the code they check."""
    for imported in imports(MODULES[module]):
        if imported.startswith("clickstream."):
            assert package_of(imported) == "fakes", f"{module} imports {imported}"


def test_no_import_cycles():
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            cycle = [*trail[trail.index(module) :], module]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for imported in sorted(GRAPH[module]):
            visit(imported, [*trail, module])
        done.add(module)

    for module in sorted(GRAPH):
        visit(module, [])


def test_the_core_imports_nothing_heavy_at_run_time():
    """Importing the core loads neither Beam nor a Google client (a fresh interpreter)."""
    probe = (  # the interpreter's own start-up (.pth files) may load namespace packages first
        "import sys; before = set(sys.modules); "
        "import clickstream.core.visit, clickstream.core.contract, clickstream.core.names, "
        "clickstream.core.jsonlines, clickstream.core.shell; "
        "print(sorted(m for m in set(sys.modules) - before "
        "if m.split('.')[0] in ('apache_beam', 'google', 'grpc')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
