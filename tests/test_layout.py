"""The package's layout rules: no module over 400 lines, and arrows that point one way."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "async_nexus"
LIMIT = 400


def _modules() -> dict[str, Path]:
    """``dotted.name -> path`` of every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports, at run time or for type checking."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        targets.update(c for c in candidates if c in known and c != name)
    return targets


def test_no_module_is_over_the_limit() -> None:
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text().splitlines()) for path in _modules().values()
    }
    over = {name: lines for name, lines in sizes.items() if lines > LIMIT}
    assert not over, f"modules over {LIMIT} lines; split them along their jobs: {over}"


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
                circles.append(trail[trail.index(target):] + [target] if target in trail else [node, target])
            elif target not in state:
                visit(target, trail + [target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, f"import circles: {[' -> '.join(c) for c in circles]}"


def test_the_checks_see_the_package() -> None:
    modules = _modules()
    assert "async_nexus.dispatch" in modules and "async_nexus.nexus" in modules
    graph = _imports("async_nexus.nexus", modules["async_nexus.nexus"], set(modules))
    assert "async_nexus.intake" in graph
