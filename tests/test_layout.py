"""The package's layout rules: units keep their private parts, and arrows point one way.

A *unit* is a subpackage (``async_nexus._core``, ``async_nexus.journal``, ...) or, at the top
of the package, a module. An underscore module or name is private to its unit: nothing
outside the unit imports it, and nothing outside it touches an underscore attribute that
only the unit defines. The nexus's parts (``async_nexus._core``) are reached only through
:class:`~async_nexus.AsyncEventNexus`. There is no line limit: a module is as long as its
one job needs.
"""

from __future__ import annotations

import ast
from pathlib import Path

from async_nexus import AsyncEventNexus, EventFactory

PACKAGE = Path(__file__).resolve().parent.parent / "async_nexus"

#: Who may import the nexus's private machinery, besides the machinery itself.
CORE_USERS = {"async_nexus.nexus"}


def _modules() -> dict[str, Path]:
    """``dotted.name -> path`` of every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _import_nodes(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """``(module, imported names)`` of every import in ``name``, made absolute."""
    package = _package_of(name, path)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, [alias.name for alias in node.names]))
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports, at run time or for type checking."""
    targets: set[str] = set()
    for base, names in _import_nodes(name, path):
        candidates = [base] + [f"{base}.{n}" for n in names]
        targets.update(c for c in candidates if c in known and c != name)
    return targets


def _unit(name: str) -> str:
    """The unit ``name`` belongs to: its top subpackage, or itself at the top."""
    parts = name.split(".")
    if len(parts) <= 2:
        return name  # the package itself, or a top-level module
    if parts[1] == "transports" and len(parts) >= 3:
        return ".".join(parts[:3])  # each transport is a unit of its own
    return ".".join(parts[:2])


def _owner(module: str) -> str | None:
    """The package a private module is private to, or None if ``module`` is not private."""
    parts = module.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:index])
    return None


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_no_import_circle() -> None:
    modules = _modules()
    known = set(modules)
    # A package imports its own submodules to re-export them: that arrow is not a circle.
    graph = {}
    for name, path in modules.items():
        own = name + "." if path.name == "__init__.py" else "\0"
        graph[name] = {t for t in _imports(name, path, known) if not t.startswith(own)}
    circles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                circles.append(trail[trail.index(target) :] + [target] if target in trail else [node, target])
            elif target not in state:
                visit(target, trail + [target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, f"import circles: {[' -> '.join(c) for c in circles]}"


def test_private_modules_are_imported_only_inside_their_unit() -> None:
    modules = _modules()
    known = set(modules)
    wrong = []
    for name, path in modules.items():
        for target in _imports(name, path, known):
            owner = _owner(target)
            if owner is not None and not _inside(name, owner):
                wrong.append(f"{name} imports {target}, private to {owner}")
            if _inside(target, "async_nexus._core") and not _inside(name, "async_nexus._core"):
                if name not in CORE_USERS:
                    wrong.append(f"{name} imports {target}: the core is reached through AsyncEventNexus")
    assert not wrong, wrong


def test_private_names_are_imported_only_inside_their_unit() -> None:
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        for base, names in _import_nodes(name, path):
            if not base.startswith("async_nexus") or _unit(base) == _unit(name):
                continue
            for imported in names:
                if imported.startswith("_") and not imported.startswith("__"):
                    wrong.append(f"{name} imports {imported} from {base}")
    assert not wrong, wrong


def _defined_private_attributes(tree: ast.AST) -> set[str]:
    """The underscore attributes a module defines: assigned on self, slots, class members."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
                    if target.id == "__slots__" and isinstance(node.value, (ast.Tuple, ast.List)):
                        names.update(
                            e.value
                            for e in node.value.elts
                            if isinstance(e, ast.Constant) and isinstance(e.value, str)
                        )
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_private_attributes_are_touched_only_inside_their_unit() -> None:
    """An approximation: ``thing._name`` is allowed where the unit itself defines ``_name``."""
    modules = _modules()
    trees = {name: ast.parse(path.read_text(), str(path)) for name, path in modules.items()}
    defined: dict[str, set[str]] = {}
    for name, tree in trees.items():
        defined.setdefault(_unit(name), set()).update(_defined_private_attributes(tree))
    wrong = []
    for name, tree in trees.items():
        own = defined[_unit(name)]
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            attr = node.attr
            if not attr.startswith("_") or attr.startswith("__") or attr in own:
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls", "sys", "os"):
                continue
            wrong.append(f"{name}:{node.lineno} touches .{attr}, private to another unit")
    assert not wrong, wrong


def test_the_nexus_is_one_object_that_holds_its_parts() -> None:
    assert AsyncEventNexus.__mro__ == (AsyncEventNexus, EventFactory, object)


def test_the_checks_see_the_package() -> None:
    modules = _modules()
    assert "async_nexus._core.dispatch" in modules and "async_nexus.nexus" in modules
    graph = _imports("async_nexus.nexus", modules["async_nexus.nexus"], set(modules))
    assert "async_nexus._core.admission" in graph
    assert _owner("async_nexus._core.dispatch") == "async_nexus"
    assert _owner("async_nexus.journal._groups") == "async_nexus.journal"
    assert _owner("async_nexus.nexus") is None
    assert _unit("async_nexus.transports.redis._receiver") == "async_nexus.transports.redis"
