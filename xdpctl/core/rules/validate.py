"""User input -> validated rules: prefixes, actions, L4 matches, durations, names.

Every front end hands its raw input here, so the CLI and the REST service
accept and reject the same things with the same words. Errors name the
request field (``prefix``, ``proto``, ``port``, ``ttl``, ...) and the
offending value; a bad item of a bulk request is an :class:`ItemError`,
which also says which item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

from ... import abi
from .. import prefixes as px
from ..errors import ValidationError, choice, cut

T = TypeVar("T")

DENY, ALLOW = int(abi.Action.DENY), int(abi.Action.ALLOW)
ACTIONS = {"deny": DENY, "allow": ALLOW}
ACTION_NAMES = {DENY: "deny", ALLOW: "allow"}
DIR_NAMES = {0: "src", 1: "dst"}
POLICIES = {"allow": int(abi.Policy.ALLOW), "deny": int(abi.Policy.DENY)}
COMMENT_MAX = 512
LIST_NAME_MAX = 64
LIST_NAME_PATTERN = rf"^[A-Za-z0-9_-][A-Za-z0-9._-]{{0,{LIST_NAME_MAX - 1}}}$"
LIST_NAME_RE = re.compile(LIST_NAME_PATTERN.rstrip("$"), re.ASCII)


class ItemError(ValidationError):
    """Item ``index`` (0-based) of a bulk request is bad; ``other`` is the
    index of the item it repeats or overlaps, if that is the problem. The
    message, field, value and hint are those of the item's own error."""

    def __init__(self, index: int, error: ValidationError | str, *, other: int | None = None,
                 field: str | None = None, value: object = None, hint: str | None = None):
        if isinstance(error, ValidationError):
            message, field, hint = error.message, error.field, error.hint
            value = error.value
        else:
            message = error
        super().__init__(message, field=field, value=value, hint=hint)
        self.index = index
        self.other = other


@dataclass(frozen=True)
class RuleSpec:
    """A validated rule as a person asked for it."""

    prefix: px.Prefix | None  # None: an L4 rule on any address
    dir: int = 0
    action: int = DENY
    proto: int | None = None
    port: int | None = None
    comment: str | None = None
    ttl: int | None = None  # seconds
    mgmt: bool = False

    def key(self) -> tuple:
        """The match, as the rules table's unique index orders it."""
        if self.prefix is None:
            return (0, self.dir, self.proto or 0, self.port or 0, 1, 0, b"")
        return (self.prefix.family, self.dir, self.proto or 0, self.port or 0, 0, self.prefix.plen,
                addr_bytes(self.prefix.family, self.prefix.net))

    def describe(self) -> str:
        return describe(self.prefix, self.dir, self.proto, self.port)


def describe(prefix: px.Prefix | None, dir: int, proto: int | None, port: int | None) -> str:
    where = px.format_prefix(prefix) if prefix is not None else "any"
    s = f"{where}" + (" (dst)" if dir == 1 else "")
    if proto:
        s += f" {px.proto_name(proto)}/{port}"
    return s


def addr_bytes(family: int, net: int) -> bytes:
    return net.to_bytes(4 if family == 4 else 16, "big")


def _given(value: object) -> bool:
    return value not in (None, "")


def _parse(field: str, value: object, parse: Callable[[object], T]) -> T:
    try:
        return parse(value)
    except px.PrefixError as exc:
        # a huge int has no repr (Python's integer-string limit): its text
        raise ValidationError(exc.reason, field=field, value=value if isinstance(value, str) else exc.text) from None


def action_of(action: str | int) -> int:
    if isinstance(action, int) and action in (DENY, ALLOW):
        return action
    return ACTIONS[choice(action, ACTIONS, field="action", what="action")]


def duration(ttl: str | int | None) -> int | None:
    """Seconds, or None (not given) for no expiry. A TTL that is given must
    be a positive duration: "" and 0 are refused, never "no expiry"."""
    if ttl is None:
        return None
    return _parse("ttl", ttl, px.parse_duration)


def policy(value: str) -> str:
    return choice(value, POLICIES, field="policy", what="policy")


def list_name(name: str) -> str:
    """1-64 ASCII letters, digits, '-', '_' or '.', not starting with '.'."""
    if not isinstance(name, str) or not LIST_NAME_RE.fullmatch(name):
        raise ValidationError(f"invalid list name {cut(repr(name))}: use 1-{LIST_NAME_MAX} ASCII letters, digits, "
                              f"'-', '_' or '.', not starting with '.'", field="name", value=name)
    return name


def _l4(proto: str | int | None, port: str | int | None) -> tuple[int | None, int | None]:
    p = _parse("proto", proto, px.parse_proto) if _given(proto) else None
    pt = _parse("port", port, px.parse_port) if _given(port) else None
    if p is None and pt is not None:
        raise ValidationError("{field:port} needs {field:proto}: an L4 rule needs both {field:proto} and "
                              "{field:port}", field="port", value=port, hint="add {field:proto} (tcp, udp or sctp)")
    if p is not None and pt is None:
        raise ValidationError("an L4 rule needs both {field:proto} and {field:port}", field="proto", value=proto,
                              hint="add {field:port} (1-65535)")
    return p, pt


def spec(
    prefix: str | None,
    *,
    action: str | int = "deny",
    dst: bool = False,
    proto: str | int | None = None,
    port: str | int | None = None,
    comment: str | None = None,
    ttl: str | int | None = None,
    mgmt: bool = False,
) -> RuleSpec:
    """Validate one rule from user input; raises ValidationError."""
    pfx = _parse("prefix", prefix, px.parse_prefix) if prefix not in (None, "", "any") else None
    p, pt = _l4(proto, port)
    if pfx is None and p is None:
        raise ValidationError("a rule needs a prefix, or {field:proto} and {field:port}", field="prefix",
                              value=prefix)
    act = action_of(action)
    if mgmt and act != ALLOW:
        raise ValidationError("a management prefix is an allow rule", field="mgmt", value=mgmt)
    if comment is not None and len(comment) > COMMENT_MAX:
        raise ValidationError(f"comment longer than {COMMENT_MAX} characters", field="comment", value=comment)
    return RuleSpec(pfx, 1 if dst else 0, act, p, pt, comment, duration(ttl), mgmt)


def each(items: Iterable[T], make: Callable[[T], RuleSpec]) -> list[RuleSpec]:
    """``make`` over bulk items; the first bad one is an ItemError naming it."""
    out: list[RuleSpec] = []
    for i, item in enumerate(items):
        try:
            out.append(make(item))
        except ItemError:
            raise
        except ValidationError as exc:
            raise ItemError(i, exc) from None
    return out


def specs(
    prefixes: Iterable[str] | None,
    *,
    action: str | int = "deny",
    dst: bool = False,
    proto: str | int | None = None,
    port: str | int | None = None,
    comment: str | None = None,
    ttl: str | int | None = None,
    mgmt: bool = False,
    required: bool = True,
) -> list[RuleSpec]:
    """Rules for many prefixes sharing one action and L4 match, as the
    block/allow/unblock forms of every front end give them. No prefix but a
    protocol or port: one L4 rule on any address. Nothing at all: an error,
    or no rules when not ``required``. Items are checked for repeats."""
    items: list[str | None] = list(prefixes or [])
    if not items:
        if not _given(proto) and not _given(port):
            if not required:
                return []
            raise ValidationError("give at least one prefix, or {field:proto} and {field:port} for an L4 rule "
                                  "on any address", field="prefixes")
        items = [None]
    out = each(items, lambda p: spec(p, action=action, dst=dst, proto=proto, port=port, comment=comment,
                                     ttl=ttl, mgmt=mgmt))
    check_unique(out)
    return out


def check_unique(specs: list[RuleSpec]) -> None:
    """No match given twice, and no two L4 rules that hold the same kernel
    entry (an L4 rule on any address holds the /0 entries of both
    families); the later item is an ItemError."""
    seen: dict[tuple, int] = {}
    for i, s in enumerate(specs):
        j = seen.setdefault(s.key(), i)
        if j != i:
            raise ItemError(i, f"{s.describe()} is given twice", other=j,
                            field="prefix", value=px.format_prefix(s.prefix) if s.prefix else None)
    l4_zero: dict[tuple, tuple[int, RuleSpec]] = {}
    for i, s in enumerate(specs):
        if s.proto is None or (s.prefix is not None and s.prefix.plen != 0):
            continue
        for f in ((4, 6) if s.prefix is None else (s.prefix.family,)):
            k = (s.dir, s.proto, s.port, f)
            if k in l4_zero:
                j, other = l4_zero[k]
                raise ItemError(i, f"{s.describe()} overlaps {other.describe()}",
                                other=j, field="prefix",
                                value=px.format_prefix(s.prefix) if s.prefix else None)
            l4_zero[k] = (i, s)


def list_members(prefixes: list, allow_empty: bool) -> list:
    """The members of a list import: none at all is refused (an empty file
    or body empties or creates a list by mistake) unless ``allow_empty``."""
    if not prefixes and not allow_empty:
        raise ValidationError("the list has no prefixes; nothing was imported", field="prefixes",
                              hint="to empty the list on purpose, use {field:allow_empty}")
    return prefixes
