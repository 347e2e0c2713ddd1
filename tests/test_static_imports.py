"""Every ``clickstream.*`` import in the tree points at a file, found the way editors and type
checkers find it: from the repository root, through the ``clickstream/`` link tree that
``make setup`` makes (``setup.link_namespace``), with nothing imported, so without the editable
install's import hook (docs/architecture.md)."""

import ast
from pathlib import Path

from conftest import ROOT
from test_layers import FOLDERS

NAMESPACE = ROOT / "clickstream"
NOT_SOURCE = {"build", "clickstream"}  # the link tree itself; build output


def sources() -> list[Path]:
    """Every Python file of the repository (no environments, caches, or build output)."""
    found = []
    for top in sorted(ROOT.iterdir()):
        if top.name.startswith(".") or top.name in NOT_SOURCE or top.name.endswith(".egg-info"):
            continue
        found += [top] if top.suffix == ".py" else sorted(top.rglob("*.py"))
    return found


def resolve(module: str) -> Path | None:
    """The file of ``module`` under the root: a package's ``__init__.py``, a module's ``.py``,
    or a namespace package's folder; None if there is none."""
    path = ROOT.joinpath(*module.split("."))
    for candidate in (path / "__init__.py", path.with_name(path.name + ".py")):
        if candidate.is_file():
            return candidate
    return path if path.is_dir() else None


def defined(path: Path) -> set[str]:
    """The names a module binds at its top level (inside if and try blocks too)."""
    names: set[str] = set()
    body = [] if path.is_dir() else list(ast.parse(path.read_text(), str(path)).body)
    while body:
        node = body.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.If | ast.Try | ast.With):
            body += [*node.body, *getattr(node, "orelse", ()), *getattr(node, "finalbody", ())]
            for handler in getattr(node, "handlers", ()):
                body += handler.body
    return names


def unresolved(tree: ast.AST) -> list[str]:
    """The ``clickstream`` imports of ``tree`` that point at no file (nor, for ``from X import
    name``, at a name that X binds)."""
    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            missing += [a.name for a in node.names if _ours(a.name) and not resolve(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _ours(node.module or ""):
            module = node.module or ""
            found = resolve(module)
            if found is None:
                missing.append(module)
                continue
            missing += [
                f"{module}.{a.name}"
                for a in node.names
                if a.name != "*"
                and not resolve(f"{module}.{a.name}")
                and a.name not in defined(found)
            ]
    return missing


def _ours(module: str) -> bool:
    return module == "clickstream" or module.startswith("clickstream.")


def test_the_link_tree_maps_each_packaged_folder():
    links = {path.name: path for path in NAMESPACE.iterdir()}
    assert sorted(links) == sorted(FOLDERS), "run `make setup`: setup.py's folders changed"
    for folder, link in links.items():
        assert link.is_symlink() and link.resolve() == ROOT / folder, link


def test_every_clickstream_import_in_the_tree_points_at_a_file():
    files = sources()
    assert {ROOT / "tests" / "conftest.py", ROOT / "gcp" / "warehouse.py"} <= set(files)
    missing = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        for name in unresolved(ast.parse(path.read_text(), str(path)))
    ]
    assert not missing, "imports that point nowhere:\n" + "\n".join(missing)


def test_an_import_that_points_nowhere_is_found():
    code = (
        "import clickstream.gcp.warehouse, clickstream.gcp.nowhere\n"
        "from clickstream.core import visit, names, no_such_module\n"
        "from clickstream.core.visit import parse_visit, no_such_name\n"
        "from clickstream.nowhere import anything\n"
    )
    assert unresolved(ast.parse(code)) == [
        "clickstream.gcp.nowhere",
        "clickstream.core.no_such_module",
        "clickstream.core.visit.no_such_name",
        "clickstream.nowhere",
    ]
