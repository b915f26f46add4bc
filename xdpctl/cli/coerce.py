"""Parameter values without a pydantic schema per parameter.

Recent typer versions coerce every parameter of a run through a pydantic
TypeAdapter built for it on the spot: the global options and a verb's
arguments cost each CLI run a few milliseconds per parameter plus typer's
adapter module, a large part of the start-up a one-line change like
``xdpctl block`` waits for.

Nearly all of xdpctl's parameters are str, bool, int or float (with
bounds), or lists of them, and nearly every value given is one such a
type accepts as it is: those are taken here directly. Anything else, an
out-of-range number, or text that is not plainly a number, goes to
typer's own coercion, built only then, so every error reads as typer
writes it. With a typer that has no such hook nothing is changed.
"""

from __future__ import annotations

import re
from typing import Any, get_args, get_origin

# Plain decimal text, short enough for int() and float() to take whole
# (longer text goes to typer, whatever it holds).
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,19})")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]{0,19})(?:\.[0-9]{1,20})?")
_MISS = object()  # not taken here: typer's coercion decides


def _leaf(value: Any, kind: type, low: Any, high: Any) -> Any:
    """value as a kind the quick path accepts, else _MISS."""
    if kind is str:
        return value if isinstance(value, str) else _MISS
    if kind is bool:
        return value if isinstance(value, bool) else _MISS
    if isinstance(value, bool):
        return _MISS
    if kind is int:
        if isinstance(value, str) and _INT.fullmatch(value):
            value = int(value)
        elif type(value) is not int:
            return _MISS
    elif kind is float:
        if isinstance(value, str) and _FLOAT.fullmatch(value):
            value = float(value)
        elif type(value) is not float:
            return _MISS
    if (low is not None and value < low) or (high is not None and value > high):
        return _MISS
    return value


class QuickParam:
    """A parameter's coercion: the quick path for plain values, typer's
    own (built on first need) for the rest."""

    __slots__ = ("kind", "many", "low", "high", "_full", "_build")

    def __init__(self, kind: type, many: bool, low: Any, high: Any, build) -> None:
        self.kind, self.many, self.low, self.high = kind, many, low, high
        self._full, self._build = None, build

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        multi = param.multiple or param.nargs == -1
        if value is None:
            return () if multi else None
        if self.many and multi and isinstance(value, (list, tuple)):
            out = [_leaf(v, self.kind, self.low, self.high) for v in value]
            if _MISS not in out:
                return out
        elif not self.many and not multi:
            out = _leaf(value, self.kind, self.low, self.high)
            if out is not _MISS:
                return out
        if self._full is None:
            self._full = self._build()
        return self._full.coerce(value, param=param, ctx=ctx)


def quick_param(descriptor: Any, build) -> QuickParam | None:
    """The quick coercion for a typer type descriptor, or None where typer's
    own must do all of it (files, parsers, clamps, enums, other types)."""
    info = descriptor.parameter_info
    if descriptor.file_annotation is not None or info.parser is not None or getattr(info, "clamp", False):
        return None
    ann, many = descriptor.annotation, False
    if get_origin(ann) is list and len(get_args(ann)) == 1:
        ann, many = get_args(ann)[0], True
    if ann not in (str, bool, int, float):
        return None
    low, high = (info.min, info.max) if ann in (int, float) else (None, None)
    return QuickParam(ann, many, low, high, build)


def install(parameter_class: Any) -> bool:
    """Give typer's parameter class the quick coercion (typer versions that
    build a runtime parameter per option); False when there is no such hook."""
    original = getattr(parameter_class, "get_runtime_param", None)
    if original is None or getattr(original, "_xdpctl_quick", False):
        return False

    def get_runtime_param(self):
        quick = self.__dict__.get("_xdpctl_quick", _MISS)
        if quick is _MISS:
            quick = self._xdpctl_quick = quick_param(self.type_descriptor, lambda: original(self))
        return original(self) if quick is None else quick

    get_runtime_param._xdpctl_quick = True
    get_runtime_param.original = original
    parameter_class.get_runtime_param = get_runtime_param
    return True
