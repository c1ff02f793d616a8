"""Importing an object named ``package.module:attribute``: how the command lines are given code.

The runner's target (``python -m async_nexus run``) and the dead-letters command's codec
(``--codec``) are named this way.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any


class NotImported(Exception):
    """The object could not be imported: the message says why, and how to name it."""


def import_object(
    name: str,
    *,
    what: str,
    shape: str = "package.module:attribute",
    form: str,
    app_dir: str | None = ".",
    offer: Callable[[Any], str] = lambda holder: "",
) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute (which may be dotted).

    ``app_dir`` is put first on :data:`sys.path`, as ``python -m`` does for the current
    directory, so that a module next to the program imports also when the command was started
    as a script. The messages call ``name`` ``what`` (``"target"``) and end with ``form``, a
    sentence on how to write it; a malformed name is said not to be of the form ``shape``, and
    a missing attribute is followed by what ``offer(holder)`` proposes instead.

    :raises NotImported: ``name`` is malformed, its module is not found, importing it failed,
        or the attribute does not exist.
    """
    module_name, colon, attribute = name.partition(":")
    if not colon or not module_name or not attribute:
        raise NotImported(f"{what} {name!r} is not of the form {shape}; {form}")
    if app_dir is not None:
        directory = os.path.abspath(app_dir)
        if directory not in sys.path:
            sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            where = f" (searched from {os.path.abspath(app_dir)})" if app_dir is not None else ""
            raise NotImported(
                f"cannot import module {module_name!r} of {what} {name!r}: no module named "
                f"{exc.name!r}{where}; check the spelling, run from the directory that holds the "
                f"package or pass --app-dir, and {form}"
            ) from None
        raise NotImported(
            f"importing module {module_name!r} of {what} {name!r} failed: {exc}; the module "
            "itself imports something that is not installed"
        ) from exc
    except Exception as exc:
        raise NotImported(
            f"importing module {module_name!r} of {what} {name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    walked = module_name
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise NotImported(
                f"{walked!r} has no attribute {part!r} ({what} {name!r}); {offer(obj)}{form}"
            ) from None
        walked = f"{walked}:{part}" if walked == module_name else f"{walked}.{part}"
    return obj
