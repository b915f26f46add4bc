"""Shared objects and request dependencies of the API.

One :class:`Service` per process holds the one core :class:`Context` (one
SQLite connection, used from FastAPI's worker threads) and a lock that
serialises every use of it: the core's writers take the pin-directory lock
and a SQLite transaction, and two threads must not interleave statements on
one connection. Core calls block, so endpoints that call the core are plain
``def`` functions, which FastAPI runs in its thread pool; a small change of
the drop list runs on the event loop when it need not wait (:func:`change`).

A fresh DropList is made per call (it is cheap): a DropList caches list
members, which another writer (the CLI) may change behind this process.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from xdpctl.config import Settings, env_name
from xdpctl.core.context import Context, WouldBlock
from xdpctl.core.errors import cut
from xdpctl.core.fleet.mode import rule_set
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.validate import LIST_NAME_MAX, LIST_NAME_PATTERN
from xdpctl.core.rules.store import State
from xdpctl.core.views import RestoreView

from .models import BIG_SETS, ITEMS_MAX

if TYPE_CHECKING:
    from xdpctl.core.fleet.writer import Fleet

    from .checkpoint import Checkpointer

log = logging.getLogger("xdpctl.api")

T = TypeVar("T")

TOKEN_ENV = env_name("api_token")
TOKEN_FILE = "api-token"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiError(Exception):
    """An answer other than 2xx decided by the API layer itself (auth,
    headers, content types, bulk item errors); rendered like XdpctlError."""

    def __init__(self, status: int, error: str, detail: str, *, headers: dict[str, str] | None = None,
                 **extra: object):
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers
        self.extra = {k: v for k, v in extra.items() if v is not None}


# ---------------------------------------------------------------------------
# Token
# ---------------------------------------------------------------------------
def token_path(settings: Settings) -> str:
    return os.path.join(settings.state_dir, TOKEN_FILE)


def read_token_file(path: str) -> str:
    """The token in a file (first line, stripped); a missing or empty file
    is an error naming it."""
    try:
        st = os.stat(path)
        with open(path) as f:
            value = f.readline().strip()
    except OSError as exc:
        raise RuntimeError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    if st.st_mode & 0o077:
        log.warning("token file %s is readable by group or others (mode %o); chmod 600 it",
                    path, st.st_mode & 0o777)
    if not value:
        raise RuntimeError(f"token file {path} is empty")
    return value


def load_token(settings: Settings, token: str | None = None) -> tuple[str, str]:
    """The bearer token and where it came from: the caller, the settings
    (XDPCTL_API_TOKEN, then the file XDPCTL_API_TOKEN_FILE names), or the
    token file under the state directory, which is created (mode 0600, 256
    random bits) when missing."""
    if token:
        return token, "given to the service at start"
    if settings.api_token:
        return settings.api_token, f"the service's ${TOKEN_ENV}"
    if settings.api_token_file:
        return read_token_file(settings.api_token_file), f"file {settings.api_token_file}"
    path = token_path(settings)
    os.makedirs(settings.state_dir, mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        try:
            return read_token_file(path), f"file {path}"
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; delete it to have a new token generated") from None
    value = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    log.info("generated API token in %s", path)
    return value, f"file {path}"


# ---------------------------------------------------------------------------
# The service
# ---------------------------------------------------------------------------
@dataclass
class Options:
    protect_reads: bool = True        # a token (read or write) for GETs under /v1 too
    protect_metrics: bool = True      # a token (read or write) for /metrics
    expire_interval: float = 1.0      # seconds between expiry runs; 0 disables
    restore_on_start: bool = True     # reconcile the kernel to the database at start
    rule_metrics_limit: int = 100     # at most this many rules in xdpctl_rule_hits_total
    list_hit_metrics: bool = False    # xdpctl_list_hits_total (reads every member's counter)
    max_body: int = 64 << 20          # bytes of a text/plain list body
    max_json_body: int = 2 << 20      # bytes of any other body
    lb_health_tick: float = 0.1       # seconds between load-balancer health rounds; 0 disables
    checkpoint_delay: float = 1.0     # seconds from a change to the log's checkpoint (api.checkpoint)
    checkpoint_idle: float = 5.0      # seconds without changes before the log file is emptied


class ServiceContext(Context):
    """A context of the service: its connection to the state database
    leaves checkpoints of the log to the service's checkpointer thread
    (api.checkpoint), so no request pays for one."""

    @property
    def state(self) -> State:
        fresh = self._state is None
        st = super().state
        if fresh:
            st.defer_checkpoints()
        return st


class Service:
    """Changes go through one context under one lock; reads use a context
    (an SQLite connection) per worker thread and never take that lock: in
    WAL mode a long read neither waits for a change nor holds one back."""

    def __init__(self, settings: Settings, token: str, token_source: str, options: Options,
                 read_token: str | None = None):
        self.settings = settings
        self.token = token
        self.token_source = token_source
        self.read_token = read_token
        self.options = options
        self.ctx = ServiceContext(settings)
        self.ctx.defer_catch_up = True  # a whole-image change is answered once it is live (changing())
        self.lock = threading.RLock()
        self._readers = threading.local()
        self._read_contexts: list[Context] = []
        self._read_contexts_lock = threading.Lock()
        self.last_revision: int | None = None
        self.expiry_last_run: float | None = None
        self.expiry_last_error: str | None = None
        self.restore_ran: float | None = None
        self.restore_error: str | None = None
        self.restore_report: RestoreView | None = None
        self.registry = None  # the Prometheus registry (api.metrics), set by create_app
        self.checkpointer: Checkpointer | None = None  # started and stopped with the app (api.app)

    @contextmanager
    def changing(self) -> Iterator[None]:
        """The lock for a call of the core with the process's context. A
        whole-image change flips xc_cfg and is answered; the other rule
        set's catch-up (DropList.catch_up) runs after the call in a thread
        of its own under this lock, or first thing in the next call that
        gets the lock before it, so every change starts from both sets in
        sync, as the CLI leaves them."""
        with self.lock:
            self.settle()
            try:
                yield
            finally:
                if self.ctx.pending_catch_up is not None:
                    threading.Thread(target=self._catch_up_later, name="xdpctl-catch-up", daemon=True).start()

    def settle(self) -> None:
        """Run the deferred catch-up, if any (the caller holds the lock)."""
        if self.ctx.pending_catch_up is not None:
            try:
                DropList(self.ctx).catch_up()
            except Exception as exc:  # the set stays stale: the next change rewrites it
                log.warning("catch-up of the other rule set failed: %s", exc)

    def _catch_up_later(self) -> None:
        with self.lock:
            self.settle()  # nothing left when a call that got the lock first has run it

    def run(self, fn: Callable[[Context], T]) -> T:
        """Call the core with the process's context, one caller at a time."""
        with self.changing():
            return fn(self.ctx)

    def droplist(self, fn: Callable[[DropList], T]) -> T:
        with self.changing():
            return fn(DropList(self.ctx))

    def read_context(self) -> Context:
        """This thread's context for reads (opened on first use)."""
        c = getattr(self._readers, "ctx", None)
        if c is None:
            c = self._readers.ctx = ServiceContext(self.settings)
            with self._read_contexts_lock:
                self._read_contexts.append(c)
        return c

    def read(self, fn: Callable[[DropList], T]) -> T:
        """A read of the drop list, beside any change."""
        return fn(DropList(self.read_context()))

    def rule_set(self, fn: Callable[[DropList | Fleet], T]) -> T:
        """A change of the desired drop list: local, or the fleet's in etcd
        (fleet mode: ``settings.etcd``; xdpctl.core.fleet.mode)."""
        with self.changing():
            return fn(rule_set(self.ctx))

    def try_now(self, fn: Callable[[DropList], T]) -> tuple[bool, T | None]:
        """Run a change of the local drop list in this thread if it need not
        wait: (True, result); (False, None) when the service's lock or the
        pin directory's is held, the change needs a whole-image write, or
        the rule set is the fleet's (etcd round trips). Nothing is changed
        in the False case."""
        if not self.lock.acquire(blocking=False):
            return False, None
        try:
            if self.ctx.pending_catch_up is not None:  # changing() runs it first, in the pool
                return False, None
            target = rule_set(self.ctx)
            if not isinstance(target, DropList):
                return False, None
            self.ctx.no_wait = True
            try:
                return True, fn(target)
            except WouldBlock:
                return False, None
            finally:
                self.ctx.no_wait = False
        finally:
            self.lock.release()

    def read_set(self, fn: Callable[[DropList | Fleet], T]) -> T:
        """A read of the desired drop list, local or the fleet's."""
        return fn(rule_set(self.read_context()))

    def revision(self) -> int:
        with self.lock:
            rev = self.ctx.state.revision
            self.last_revision = rev
            return rev

    def close(self) -> None:
        with self._read_contexts_lock:
            for c in self._read_contexts:
                c.close()
            self._read_contexts.clear()
        with self.lock:
            self.settle()  # both sets in sync before the service goes
            self.ctx.close()


# A change of a few rules (about a millisecond of core work) costs less on
# the event loop than its two trips through the thread pool (the endpoint,
# then the response's validation): a change of at most this many items runs
# there when nothing makes it wait (Service.try_now), else in the pool.
NOW_ITEMS = 16


async def change(svc: Service, fn: Callable[[DropList | Fleet], T], items: int) -> T:
    """A change of the desired drop list, from an ``async def`` endpoint."""
    if items <= NOW_ITEMS:
        done, out = svc.try_now(fn)
        if done:
            return out  # type: ignore[return-value]
    return await run_in_threadpool(svc.rule_set, fn)


# Dependencies that do no blocking work are ``async def``: FastAPI runs a
# plain ``def`` dependency in its thread pool, one hop per dependency per
# request, before the endpoint's own hop.
async def get_service(request: Request) -> Service:
    return request.app.state.xdpctl


# ---------------------------------------------------------------------------
# Auth
# ---------------------------------------------------------------------------
bearer_scheme = HTTPBearer(
    auto_error=False,
    description=f"The service's token: ${TOKEN_ENV}, or the file {TOKEN_FILE} in the state directory "
                f"(created with mode 0600 on first start).",
)


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def required_access(method: str, path: str, options: Options) -> str | None:
    """What a request needs: "write" (the token), "read" (the read token or
    the token) or None (open: /healthz, the docs, unprotected reads)."""
    if path.startswith("/v1/") or path == "/v1":
        if method not in READ_METHODS:
            return "write"
        return "read" if options.protect_reads else None
    if path == "/metrics" and options.protect_metrics:
        return "read"
    return None


def token_error(header: str | None, svc: Service, access: str) -> ApiError | None:
    """Why the Authorization header does not grant ``access``, or None."""
    if header is None:
        return _unauthorized(f"missing bearer token: send 'Authorization: Bearer <token>' (token: "
                             f"{svc.token_source})")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return _unauthorized("the Authorization header must be 'Bearer <token>'")
    given = value.strip().encode()
    if secrets.compare_digest(given, svc.token.encode()):
        return None
    if svc.read_token and secrets.compare_digest(given, svc.read_token.encode()):
        if access == "read":
            return None
        return ApiError(403, "forbidden", "this token may only read; changes need the service's token")
    return _unauthorized("invalid bearer token")


async def require_token(
    _creds: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),  # documents the scheme
) -> None:
    """Documents the bearer scheme on every route under /v1. The check
    itself (api.gate) runs before a body is read."""


# ---------------------------------------------------------------------------
# Revisions
# ---------------------------------------------------------------------------
IF_MATCH_PATTERN = r'^\s*(\*|(W/)?"?[0-9]{1,18}"?)\s*$'
_ETAG_RE = re.compile(r'^(?:W/)?"?(\d{1,18})"?$')


async def if_match(
    value: str | None = Header(
        None, alias="If-Match", pattern=IF_MATCH_PATTERN,
        description='only apply if the rule set is at this revision: 7, "7" or W/"7" ("*": any)'),
) -> int | None:
    if value is None or value.strip() == "*":
        return None
    m = _ETAG_RE.match(value.strip())
    if not m:
        raise ApiError(422, "validation_error",
                       f"header If-Match: {cut(value)!r} is not a revision; send a number such as 7 or \"7\"")
    return int(m.group(1))


def expected_revision(body: int | None, header: int | None) -> int | None:
    """The revision a change expects, from the body or If-Match (both may be
    given when they agree)."""
    if body is not None and header is not None and body != header:
        raise ApiError(422, "validation_error",
                       f"If-Match says revision {header} but the request says {body}; send one of them")
    return body if body is not None else header


# ---------------------------------------------------------------------------
# Validation errors in words
# ---------------------------------------------------------------------------
def _where(loc: tuple | list, root: str | None) -> tuple[str, int | None]:
    """('body', 'rules', 2, 'prefix') -> ('rules[2].prefix', 2)."""
    parts = list(loc)
    if root is not None:
        parts.insert(0, root)
    kind = parts[0] if parts else "body"
    rest = parts[1:]
    path = ""
    index = None
    for p in rest:
        if isinstance(p, int):
            path += f"[{p}]"
            if index is None:
                index = p
        else:
            path += ("." if path else "") + str(p)
    if kind == "body":
        return path or "body", index
    if kind == "query":
        return f"query parameter {path!r}", None
    if kind == "path":
        return f"path parameter {path!r}", None
    if kind == "header":
        return f"header {path!r}", None
    return f"{kind} {path}".strip(), index


def _message(err: dict) -> str:
    typ = err.get("type", "")
    if typ == "json_invalid":
        why = (err.get("ctx") or {}).get("error", "")
        return f"not valid JSON ({why})" if why else "not valid JSON"
    if typ == "extra_forbidden":
        return "unknown field"
    if typ == "string_pattern_mismatch" and (err.get("ctx") or {}).get("pattern") == LIST_NAME_PATTERN:
        return (f"invalid list name {cut(err.get('input'))!r}: use 1-{LIST_NAME_MAX} ASCII letters, digits, "
                f"'-', '_' or '.', not starting with '.'")
    if typ == "too_long" and (err.get("ctx") or {}).get("max_length") == ITEMS_MAX:
        return f"more than {ITEMS_MAX} items; {BIG_SETS}"
    msg = err.get("msg", "invalid")
    return msg.removeprefix("Value error, ") if typ == "value_error" else msg


def describe_errors(errors: list[dict], root: str | None = None) -> tuple[str, list[dict], int | None]:
    """Pydantic errors -> (one line naming every field, per-field list, the
    first bulk item index)."""
    lines, out, first_index = [], [], None
    for err in errors:
        where, index = _where(err.get("loc", ()), root)
        msg = _message(err)
        if err.get("type") == "json_invalid":
            where, index = "body", None
        lines.append(f"{where}: {msg}")
        out.append({"loc": where, "msg": msg, "type": err.get("type", "")})
        if first_index is None and index is not None:
            first_index = index
    return "; ".join(lines) or "invalid request", out, first_index
