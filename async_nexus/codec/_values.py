"""Payloads as plain JSON values: the check and conversion every encoded event goes through.

Most payloads are already plain (exact ``dict``, ``list``, ``str``, ``int``...): the quick
way converts those without building the path of each value for a message that is never
shown. Anything else (a subclass, a dataclass, a model, something that cannot be encoded)
goes the careful way, which converts what it can and names where the rest is.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..errors import BadType, BadValue

# Internal: EventCodec.encode() is the public face.
__all__: list[str] = []

_MSGPACK_INT_MIN = -(2**63)
_MSGPACK_INT_MAX = 2**64 - 1


class _NotQuick(Exception):
    """The quick way met something it leaves to the careful way."""


def plain_value(value: Any, where: str, limit: bool) -> Any:
    """``value`` as exact JSON types; ``limit``: integers must fit MessagePack's 64 bits.

    :raises BadType: something that is not a JSON value, dataclass or model, named by ``where``.
    :raises BadValue: a non-finite float, or an integer out of MessagePack's range.
    """
    try:
        return _quick(value, limit)
    except _NotQuick:
        return careful(value, where, limit)


def _quick(value: Any, limit: bool) -> Any:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if limit and not _MSGPACK_INT_MIN <= value <= _MSGPACK_INT_MAX:
            raise _NotQuick
        return value
    if kind is float:
        if not math.isfinite(value):
            raise _NotQuick
        return value
    if kind is dict:
        result = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _NotQuick
            result[key] = _quick(item, limit)
        return result
    if kind is list or kind is tuple:
        return [_quick(item, limit) for item in value]
    raise _NotQuick


def careful(value: Any, where: str, limit: bool) -> Any:
    """Return ``value`` as plain JSON types (exact ``int``/``str``/``list``/``dict``...)."""
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return value if type(value) is str else str.__str__(value)
    if isinstance(value, bool):  # a bool subclass can't exist, but keep ints honest
        return bool(value)
    if isinstance(value, int):
        number = int(value)
        if limit and not _MSGPACK_INT_MIN <= number <= _MSGPACK_INT_MAX:
            raise BadValue(f"{where} holds an integer MessagePack cannot carry (64 bits): {number}")
        return number
    if isinstance(value, float):
        number_f = float(value)
        if not math.isfinite(number_f):
            raise BadValue(f"{where} holds a non-finite float ({number_f!r}), which JSON cannot carry")
        return number_f
    if isinstance(value, (list, tuple)):
        return [careful(item, f"{where}[{index}]", limit) for index, item in enumerate(value)]
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise BadType(
                    f"{where} is a dict with a {type(key).__qualname__} key ({key!r}); "
                    "only str keys can be encoded"
                )
            result[str.__str__(key)] = careful(item, f"{where}[{key!r}]", limit)
        return result
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return careful(dataclasses.asdict(value), where, limit)
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump) and not isinstance(value, type):
        return careful(model_dump(mode="json"), where, limit)
    raise BadType(
        f"cannot encode {where} of type {type(value).__module__}.{type(value).__qualname__}: "
        "payloads must be JSON values (None, bool, int, float, str, list, dict with str keys), "
        "dataclass instances or objects with model_dump()"
    )
