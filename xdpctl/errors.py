"""Errors with a one-line reason for people, shared by the CLI and the API.

Every error the core raises for a user's mistake or a host limitation is an
:class:`XdpctlError`; the CLI prints ``str(err)`` on stderr and exits with
``err.exit_code``, the API answers ``err.http_status`` with the same text.
"""

from __future__ import annotations

import errno as _errno
import os


class XdpctlError(Exception):
    exit_code = 1
    http_status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ValidationError(XdpctlError):
    """The request is malformed: bad prefix, port, protocol, duration, ..."""

    exit_code = 2
    http_status = 422


class NotFound(XdpctlError):
    exit_code = 3
    http_status = 404


class InterfaceNotFound(NotFound):
    pass


class NamespaceNotFound(NotFound):
    pass


class Conflict(XdpctlError):
    """Already exists, revision mismatch, mode clash, foreign program."""

    exit_code = 4
    http_status = 409


class ForeignProgram(Conflict):
    pass


class Unsupported(XdpctlError):
    """The device or kernel cannot do what was asked (mode, offload)."""

    exit_code = 5
    http_status = 422


class CapacityError(XdpctlError):
    """A map is full."""

    exit_code = 6
    http_status = 507


class NotRoot(XdpctlError):
    exit_code = 77
    http_status = 500


class MissingDependency(XdpctlError):
    exit_code = 78
    http_status = 500


class BpfError(XdpctlError):
    """A BPF syscall or libbpf call failed; carries errno."""

    exit_code = 10
    http_status = 500

    def __init__(self, what: str, err: int, detail: str | None = None):
        self.errno = err
        name = _errno.errorcode.get(err, str(err))
        msg = f"{what}: {os.strerror(err)} ({name})"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


class NetlinkError(XdpctlError):
    exit_code = 11
    http_status = 500
