"""Keep the API reference complete: every public name documented, every public module listed.

Two jobs, both driven by the ``__all__`` of ``async_nexus`` and of each of its submodules:

* ``source-read``: where ``api.rst`` (the index of the API reference) has the comment
  ``.. public-api: remaining modules``, add an ``automodule`` section for every public submodule
  that no page of the docs (``api/*.rst`` and the rest) documents by hand, so a new module (a
  transport, the runner, a tracing module) appears without anyone editing the pages.
* ``env-updated``: warn — an error under ``sphinx-build -W`` — for every public name that
  has no docstring, or that no directive of the build documents. Public methods and properties
  of public classes count too.

A third, smaller one: ``missing-reference`` makes a link to a name the package re-exports
(``:class:`~async_nexus.AsyncEventNexus```) point to where its module's page documents it.

Optional dependencies (redis, pyzmq, nats-py, opentelemetry, uvloop) may be missing where the docs are
built; the modules that need them are imported under autodoc's mocks, as autodoc itself does.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from sphinx.application import Sphinx
from sphinx.ext.autodoc.mock import mock  # type: ignore[attr-defined]
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

logger = logging.getLogger(__name__)

PACKAGE = "async_nexus"
MARKER = ".. public-api: remaining modules"
_AUTOMODULE = re.compile(r"^\.\. automodule::\s*(\S+)", re.MULTILINE)


def public_modules(app: Sphinx) -> list[ModuleType]:
    """The package and every submodule whose name has no leading underscore, imported."""
    with mock(app.config.autodoc_mock_imports):
        package = importlib.import_module(PACKAGE)
        modules = [package]
        for info in pkgutil.walk_packages(package.__path__, PACKAGE + "."):
            if any(part.startswith("_") for part in info.name.split(".")):
                continue  # __main__ runs a program when imported; private modules are private
            modules.append(importlib.import_module(info.name))
    return modules


def _title(module: ModuleType) -> str:
    doc = inspect.getdoc(module) or ""
    first = doc.split("\n", 1)[0].strip().rstrip(".")
    return f"``{module.__name__}``" + (f" — {first}" if first else "")


def documented_by_hand(app: Sphinx) -> set[str]:
    """The modules some page of the docs has an ``automodule`` directive for.

    The pages are read from disk, not from the build, so the answer does not depend on the
    order in which Sphinx reads them (the API reference is split over ``api/*.rst``).
    """
    listed: set[str] = set()
    for page in Path(app.srcdir).rglob("*.rst"):
        if any(part.startswith(("_", ".")) for part in page.relative_to(app.srcdir).parts):
            continue  # _build, _static, _ext: not pages
        listed.update(_AUTOMODULE.findall(page.read_text(encoding="utf-8")))
    return listed


def add_remaining_modules(app: Sphinx, docname: str, source: list[str]) -> None:
    """Append an automodule section for each public module no page covers by hand."""
    text = source[0]
    if MARKER not in text:
        return
    listed = documented_by_hand(app) | set(_AUTOMODULE.findall(text))
    sections = []
    for module in public_modules(app):
        if module.__name__ in listed or module.__name__ == PACKAGE or not getattr(module, "__all__", None):
            continue
        title = _title(module)
        sections.append(f"{title}\n{'-' * len(title)}\n\n.. automodule:: {module.__name__}\n   :members:\n")
    source[0] = text.replace(MARKER, "\n".join(sections))


def _attr_docs(module_name: str) -> dict[tuple[str, str], list[str]]:
    try:
        return ModuleAnalyzer.for_module(module_name).find_attr_docs()
    except Exception:  # a module without source: no ``#:`` comments to find
        return {}


def _home(modules: list[ModuleType], module: ModuleType, name: str, obj: Any) -> str:
    """Where a public name is documented: its defining module if that exports it."""
    defined_in = getattr(obj, "__module__", None)
    for candidate in modules:
        if candidate.__name__ == defined_in and name in getattr(candidate, "__all__", ()):
            return candidate.__name__
    # Data re-exported from a submodule (aliases, constants) lives in that submodule; the
    # package only re-exports, so it is never the home of anything another module exports.
    for candidate in modules:
        if candidate is module or candidate.__name__ == PACKAGE:
            continue
        if name in getattr(candidate, "__all__", ()):
            if getattr(candidate, name, None) is obj:
                return candidate.__name__
    return module.__name__


def _is_routine_like(value: Any) -> bool:
    return inspect.isroutine(value) or isinstance(value, (property, classmethod, staticmethod))


def _doc_of(value: Any) -> str | None:
    if isinstance(value, (classmethod, staticmethod)):
        value = value.__func__
    return inspect.getdoc(value)


def missing_documentation(app: Sphinx) -> list[str]:
    """Each public name without a docstring or without an entry in the built docs, explained."""
    domain = app.env.get_domain("py")
    objects = set(domain.objects)  # type: ignore[attr-defined]
    documented_modules = set(domain.modules)  # type: ignore[attr-defined]
    problems: list[str] = []
    modules = public_modules(app)
    seen: set[str] = set()
    for module in modules:
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                if obj.__name__ not in documented_modules:
                    problems.append(f"module {obj.__name__} is public but has no automodule")
                continue
            home = _home(modules, module, name, obj)
            full = f"{home}.{name}"
            if full in seen:
                continue
            seen.add(full)
            if inspect.isclass(obj) or inspect.isroutine(obj):
                if not (obj.__doc__ or "").strip():
                    problems.append(f"{full} has no docstring")
                elif full not in objects:
                    problems.append(
                        f"{full} is public (in {module.__name__}.__all__) but no page documents it"
                    )
            elif full not in objects:
                # autodoc renders data only when it has a '#:' comment (or a hand-written directive)
                problems.append(
                    f"{full} is public (in {module.__name__}.__all__) but undocumented: put a '#:' "
                    f"comment above its assignment in {home}"
                )
            if inspect.isclass(obj):
                problems.extend(_missing_members(obj, full, home, objects))
    return problems


def _missing_members(cls: type, full: str, home: str, objects: set[str]) -> list[str]:
    problems: list[str] = []
    attr_docs = _attr_docs(home)
    for member, value in vars(cls).items():
        if member.startswith("_") or isinstance(value, enum.Enum):
            continue  # enum members and aliases of them are explained by their enum
        where = f"{full}.{member}"
        if _is_routine_like(value):
            if not _doc_of(getattr(cls, member, value)):
                problems.append(f"{where} has no docstring")
            elif where not in objects:
                problems.append(f"{where} has a docstring but no page documents it")
        elif inspect.isclass(value) or where in objects:
            continue
        elif inspect.ismemberdescriptor(value) or member in _fields(cls):
            # a slot or dataclass field: the class docstring's ":param name:" explains it
            if not re.search(rf"\b{re.escape(member)}\b", cls.__doc__ or ""):
                problems.append(f"{where} is a field the docstring of {full} does not mention")
        elif (cls.__qualname__, member) not in attr_docs:
            problems.append(f"{where} has no '#:' doc comment above its assignment")
    return problems


def _fields(cls: type) -> set[str]:
    return set(getattr(cls, "__dataclass_fields__", ()))


def check(app: Sphinx, env: Any) -> list[str]:
    """Warn (an error with -W) for every undocumented public name."""
    for problem in missing_documentation(app):
        logger.warning("public API not documented: %s", problem, type="public_api")
    return []  # no documents to re-write


def canonical_name(target: str) -> str | None:
    """Where a name the package re-exports is documented: ``async_nexus.Event.id`` is
    ``async_nexus.events.Event.id``. None when ``target`` is not such a name."""
    parts = target.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    obj: Any = importlib.import_module(PACKAGE)
    for i, part in enumerate(parts[1:], start=1):
        obj = getattr(obj, part, None)
        if obj is None or inspect.ismodule(obj):
            if obj is None:
                return None
            continue
        home = getattr(obj, "__module__", None)
        if (inspect.isclass(obj) or inspect.isroutine(obj)) and home and home != ".".join(parts[:i]):
            return ".".join([home, obj.__qualname__, *parts[i + 1 :]])
        return None
    return None


def resolve_reexported(app: Sphinx, env: Any, node: Any, contnode: Any) -> Any:
    """Make ``:class:`~async_nexus.Event``` link to the page of the module that defines it."""
    if node.get("refdomain") != "py":
        return None
    canonical = canonical_name(node.get("reftarget", ""))
    if canonical is None:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], canonical, node, contnode)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the event handlers."""
    app.connect("source-read", add_remaining_modules)
    app.connect("env-updated", check)
    app.connect("missing-reference", resolve_reexported)
    return {"version": "1", "parallel_read_safe": True}
