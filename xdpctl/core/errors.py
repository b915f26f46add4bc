"""Structured errors of the core: a kind, the field, the offending value, a hint.

The core never words an error for one front end. An error carries:

- ``kind``: a stable machine name (``validation_error``, ``not_found``, ...),
  from the class;
- ``field``: the request field it is about, by its REST name (``prefix``,
  ``mode``, ``force``, ``revision``, ...), or None;
- ``value``: the offending value as given, cut to :data:`VALUE_MAX`
  characters (a 10 MB bad line is never echoed whole);
- ``message``: one line for people, in words that suit every front end;
- ``hint``: what to do about it, or None.

Messages and hints may name fields and actions with placeholders, which
each front end words in its own terms when it renders the error:

- ``{field:NAME}``: the CLI says ``--NAME`` (with its own table of
  exceptions), REST says ``NAME``;
- ``{action:NAME}``: an operation, e.g. ``{action:restore}``: the CLI says
  ``xdpctl restore``, REST says ``POST /v1/restore``.

``str(err)`` renders with neutral words (the field name as is), so logs and
tests read naturally.
"""

from __future__ import annotations

import errno as _errno
import os
import re
from typing import Callable

VALUE_MAX = 80

_PLACEHOLDER = re.compile(r"\{(field|action):([a-z0-9_-]+)\}")


def cut(value: object, limit: int = VALUE_MAX) -> str | None:
    """A value as text, cut to ``limit`` characters with an ellipsis."""
    if value is None:
        return None
    s = value if isinstance(value, str) else repr(value)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s


def neutral_field(name: str) -> str:
    return name


def neutral_action(name: str) -> str:
    return name


def render_text(text: str, field_word: Callable[[str], str], action_word: Callable[[str], str]) -> str:
    """Replace ``{field:x}`` and ``{action:x}`` placeholders."""

    def sub(m: re.Match) -> str:
        return field_word(m.group(2)) if m.group(1) == "field" else action_word(m.group(2))

    return _PLACEHOLDER.sub(sub, text)


class XdpctlError(Exception):
    """Base of every error the core raises for a user's mistake or a host limit."""

    kind = "error"
    exit_code = 1
    http_status = 400

    def __init__(self, message: str, *, field: str | None = None, value: object = None,
                 hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.value = cut(value)
        self.hint = hint

    def render(self, field_word: Callable[[str], str] = neutral_field,
               action_word: Callable[[str], str] = neutral_action) -> str:
        """One line: the message, then the hint, words chosen by the caller."""
        text = self.message
        if self.hint:
            text = f"{text}; {self.hint}"
        return render_text(text, field_word, action_word)

    def __str__(self) -> str:
        return self.render()

    def as_dict(self, field_word: Callable[[str], str] = neutral_field,
                action_word: Callable[[str], str] = neutral_action) -> dict:
        return {"error": self.kind, "detail": self.render(field_word, action_word),
                "field": self.field, "value": self.value,
                "hint": render_text(self.hint, field_word, action_word) if self.hint else None}


class ValidationError(XdpctlError):
    """The request is malformed: bad prefix, port, protocol, duration, ..."""

    kind = "validation_error"
    exit_code = 2
    http_status = 422


class NotFound(XdpctlError):
    kind = "not_found"
    exit_code = 3
    http_status = 404


class InterfaceNotFound(NotFound):
    kind = "interface_not_found"


class NamespaceNotFound(NotFound):
    kind = "namespace_not_found"


class Conflict(XdpctlError):
    """Already exists, mode clash, foreign program."""

    kind = "conflict"
    exit_code = 4
    http_status = 409


class RevisionConflict(Conflict):
    """The rule set is not at the revision the request expected (HTTP's
    precondition failure)."""

    kind = "revision_conflict"
    http_status = 412


class ForeignProgram(Conflict):
    kind = "foreign_program"


class Unsupported(XdpctlError):
    """The device or kernel cannot do what was asked (mode, offload)."""

    kind = "unsupported"
    exit_code = 5
    http_status = 422


class CapacityError(XdpctlError):
    """A map is full."""

    kind = "capacity_error"
    exit_code = 6
    http_status = 507


class NotRoot(XdpctlError):
    kind = "not_root"
    exit_code = 77
    http_status = 503


class MissingDependency(XdpctlError):
    kind = "missing_dependency"
    exit_code = 78
    http_status = 503


class BpfError(XdpctlError):
    """A BPF syscall or libbpf call failed; carries errno."""

    kind = "bpf_error"
    exit_code = 10
    http_status = 500

    def __init__(self, what: str, err: int, detail: str | None = None, *, hint: str | None = None):
        self.errno = err
        name = _errno.errorcode.get(err, str(err))
        msg = f"{what}: {os.strerror(err)} ({name})"
        if detail:
            msg += f": {detail}"
        super().__init__(msg, hint=hint)


class NetlinkError(XdpctlError):
    kind = "netlink_error"
    exit_code = 11
    http_status = 500


class StateError(XdpctlError):
    """The state database cannot be opened or written (permissions, disk)."""

    kind = "state_error"
    exit_code = 12
    http_status = 503


class KernelObjectsLost(XdpctlError):
    """The pinned maps are not the maps the attached programs read (pins
    removed while programs run): a write would not take effect."""

    kind = "kernel_objects_lost"
    exit_code = 14
    http_status = 503


class EtcdUnavailable(XdpctlError):
    """Fleet mode: no etcd endpoint answered."""

    kind = "etcd_unavailable"
    exit_code = 15
    http_status = 503


class EtcdAuthFailed(EtcdUnavailable):
    """Fleet mode: etcd refused the credentials (user, password) or the
    request's permission."""

    kind = "etcd_auth_failed"


class FleetNotConfigured(XdpctlError):
    """Fleet mode: no etcd endpoints were given to this front end."""

    kind = "fleet_not_configured"
    exit_code = 2
    http_status = 404


def choice(value, choices, *, field: str, what: str):
    """``value`` if it is one of ``choices``, else a ValidationError naming
    the field and the choices."""
    if value not in choices:
        raise ValidationError(f"unknown {what} {value!r}", field=field, value=value,
                              hint=f"choose one of: {', '.join(choices)}")
    return value
