"""The runner's target: importing ``package.module:factory`` and turning it into a nexus.

Also the runner's usage errors, which every other part of the runner raises or reports.
:mod:`async_nexus.runner` re-exports everything public here.
"""

from __future__ import annotations

import inspect
from typing import Any

from .._imports import NotImported, import_object
from ..nexus import AsyncEventNexus

__all__ = ["UsageError", "TargetError", "load_target", "build_nexus", "build_nexuses"]

_TARGET_FORM = (
    "write the target as package.module:factory (for example myapp.events:build_nexus), where "
    "factory is an AsyncEventNexus, or a function or async function returning one (or several in a "
    "list, tuple or dict)"
)


class UsageError(Exception):
    """The runner cannot do what it was asked: the message says why and what to do instead.

    :func:`main` prints it and exits with :data:`EXIT_USAGE`.
    """


class TargetError(UsageError):
    """The target could not be imported, or it did not give an :class:`~async_nexus.AsyncEventNexus`.

    The message says what was missing and how to write the target.
    """


# -- the target ---------------------------------------------------------------------------


def load_target(target: str, *, app_dir: str | None = ".") -> Any:
    """Import ``"package.module:attribute"`` and return the attribute.

    The attribute may be dotted (``module:holder.nexus``). ``app_dir`` is put first on
    :data:`sys.path`, as ``python -m`` does for the current directory, so a target next to the
    program imports also when the runner was started as the ``async-nexus`` script.

    :raises TargetError: the target is malformed, its module is not found, importing it
        failed, or the attribute does not exist.
    """
    try:
        return import_object(
            target,
            what="target",
            shape="package.module:factory",
            form=_TARGET_FORM,
            app_dir=app_dir,
            offer=_candidates,
        )
    except NotImported as exc:
        raise TargetError(str(exc)) from exc.__cause__


def _candidates(holder: Any) -> str:
    home = getattr(holder, "__name__", None)
    names = sorted(
        name
        for name, value in vars(holder).items()
        if not name.startswith("_")
        and (isinstance(value, AsyncEventNexus) or (inspect.isfunction(value) and value.__module__ == home))
    )
    if not names:
        return ""
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f"it defines: {shown}; "


async def build_nexus(obj: Any, *, name: str = "the target") -> AsyncEventNexus:
    """Turn what :func:`load_target` returned into a nexus.

    ``obj`` is a nexus (returned as is), or a function called with no arguments that
    returns one; if it is an ``async`` function, or returns an awaitable, that is awaited
    here, inside the loop that will run the nexus. :func:`build_nexuses` also takes
    targets that give several.

    :raises TargetError: ``obj`` is neither, needs arguments, or gave something else.
    """
    nexuses = await build_nexuses(obj, name=name)
    if len(nexuses) != 1:
        raise TargetError(f"{name} gave {len(nexuses)} nexuses; build them with build_nexuses()")
    return next(iter(nexuses.values()))


async def build_nexuses(obj: Any, *, name: str = "the target") -> dict[str, AsyncEventNexus]:
    """Turn what :func:`load_target` returned into the nexuses to run, by name, in order.

    ``obj`` is what :func:`build_nexus` takes, or it gives several nexuses: a list or tuple
    (named ``"1"``, ``"2"``, … by position) or a dict of names to nexuses. The runner runs
    them as a :class:`~async_nexus.NexusGroup`, in that order.

    :raises TargetError: ``obj`` is none of these, needs arguments, or gave something else.
    """
    if not isinstance(obj, (AsyncEventNexus, list, tuple, dict)):
        obj = await _call(obj, name)
    if isinstance(obj, AsyncEventNexus):
        return {"1": obj}
    if isinstance(obj, dict):
        named = list(obj.items())
    elif isinstance(obj, (list, tuple)):
        named = [(str(position), item) for position, item in enumerate(obj, 1)]
    else:
        raise TargetError(f"{name} returned {_describe(obj)}; {_RETURN}")
    if not named:
        raise TargetError(f"{name} gave no nexus (an empty {type(obj).__qualname__}); {_RETURN}")
    nexuses: dict[str, AsyncEventNexus] = {}
    for key, item in named:
        if not isinstance(key, str) or not key:
            raise TargetError(f"{name} gave a dict with the key {key!r}; name each nexus with a string")
        if not isinstance(item, AsyncEventNexus):
            raise TargetError(f"{name} gave {_describe(item)} as nexus {key}; {_RETURN}")
        if any(item is known for known in nexuses.values()):
            raise TargetError(f"{name} gave the same nexus twice (as nexus {key}); give each nexus once")
        nexuses[key] = item
    return nexuses


_RETURN = "the factory must return an AsyncEventNexus, or several in a list, tuple or dict"


async def _call(obj: Any, name: str) -> Any:
    if not callable(obj):
        raise TargetError(
            f"{name} is {_describe(obj)}, not an AsyncEventNexus or a function returning one; {_TARGET_FORM}"
        )
    try:
        inspect.signature(obj).bind()
    except TypeError:
        raise TargetError(
            f"{name} takes arguments {inspect.signature(obj)}, but the runner calls it with none; "
            "give it defaults, or point the target at a function that takes no arguments"
        ) from None
    except ValueError:
        pass  # no signature to check (some builtins): just call it
    result = obj()
    if inspect.isawaitable(result):
        result = await result
    return result


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} (a {type(value).__qualname__})"
