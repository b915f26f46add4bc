"""The etcd connection: ranges, transactions, leases and the watch stream.

etcd3gw speaks etcd's JSON gateway (/v3/...). Its plain calls are used as
they are; ranges and transactions are posted through the client so that the
answer's header revision is kept, and the watch stream is read line by line
so that every watch response (all events of one or more whole revisions),
compaction and a lost connection are seen.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urlsplit

import etcd3gw
import requests
from etcd3gw import exceptions as etcd_exc

from ..errors import EtcdAuthFailed, EtcdUnavailable

DEFAULT_TIMEOUT = 10.0
AUTH_WORDS = ("authentication failed", "user name is empty", "permission denied", "invalid auth token",
              "user name not found")


def _why(exc: Exception) -> str:
    """A failed connection in a few words: a TLS failure says so."""
    text = str(getattr(exc, "detail_text", None) or exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "TLS: etcd's certificate is not trusted (check the CA)"
    if "SSL" in text or "TLS" in text:
        return "TLS handshake failed (check the client certificate and key)"
    return type(exc).__name__


def _etcd_message(text: str) -> str:
    try:
        return json.loads(text).get("error") or text
    except ValueError:
        return text


class Compacted(Exception):
    """The watch start revision was compacted away."""

    def __init__(self, compact_revision: int):
        super().__init__(f"compacted at {compact_revision}")
        self.compact_revision = compact_revision


def enc(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def dec(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


def prefix_end(prefix: str) -> str:
    b = bytearray(prefix.encode())
    b[-1] += 1
    return enc(bytes(b))


@dataclass
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0
    lease: int = 0


@dataclass
class Event:
    type: str  # PUT | DELETE
    kv: KeyValue
    prev: KeyValue | None = None


@dataclass
class EtcdOptions:
    endpoints: list[str]
    ca_cert: str | None = None
    cert: str | None = None
    key: str | None = None
    user: str | None = None
    password: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def parse(cls, urls: str, **kw) -> "EtcdOptions":
        eps = [u.strip() for u in urls.split(",") if u.strip()]
        if not eps:
            from ..errors import ValidationError
            raise ValidationError("no etcd endpoint given", field="etcd", value=urls)
        return cls(eps, **kw)


def _kv(d: dict) -> KeyValue:
    return KeyValue(dec(d.get("key")).decode(), dec(d.get("value")), int(d.get("mod_revision", 0)),
                    int(d.get("create_revision", 0)), int(d.get("lease", 0)))


class Etcd:
    """One logical connection over a list of endpoints (tried in turn)."""

    def __init__(self, opts: EtcdOptions):
        self.opts = opts
        self._i = 0
        self._client: etcd3gw.Etcd3Client | None = None

    # ---------------------------------------------------------- plumbing
    def _make(self, url: str) -> etcd3gw.Etcd3Client:
        u = urlsplit(url if "://" in url else f"http://{url}")
        o = self.opts
        c = etcd3gw.client(host=u.hostname or "127.0.0.1", port=u.port or 2379, protocol=u.scheme or "http",
                           ca_cert=o.ca_cert, cert_key=o.key, cert_cert=o.cert, timeout=o.timeout,
                           api_path="/v3/")
        if o.ca_cert:
            # requests lets $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE override a
            # session's CA: the given CA must win, so the environment is not read.
            c.session.trust_env = False
        if o.user:
            tok = c.post(c.get_url("/auth/authenticate"), json={"name": o.user, "password": o.password or ""})
            c.session.headers["Authorization"] = tok["token"]
        return c

    def _call(self, fn):
        """``fn(client)`` on the current endpoint, failing over to the others;
        an expired auth token is renewed once."""
        errors, renewed = [], False
        attempts = len(self.opts.endpoints)
        while attempts:
            try:
                if self._client is None:
                    self._client = self._make(self.opts.endpoints[self._i])
                return fn(self._client)
            except (etcd_exc.ConnectionFailedError, etcd_exc.ConnectionTimeoutError,
                    requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                errors.append(f"{self.opts.endpoints[self._i]}: {_why(exc)}")
                self._client = None
                self._i = (self._i + 1) % len(self.opts.endpoints)
                attempts -= 1
            except etcd_exc.Etcd3Exception as exc:
                text = str(exc.detail_text or exc)
                if "invalid auth token" in text and not renewed:
                    self._client, renewed = None, True
                    continue
                if any(w in text for w in AUTH_WORDS):
                    raise EtcdAuthFailed(f"etcd refused the credentials: {_etcd_message(text)}", field="etcd_user",
                                         value=self.opts.user,
                                         hint="check {field:etcd_user} and {field:etcd_password}") from None
                raise
        raise EtcdUnavailable("etcd is unreachable (" + "; ".join(errors) + ")", field="etcd",
                              value=",".join(self.opts.endpoints), hint="check the etcd endpoints")

    def _post(self, path: str, body: dict) -> dict:
        return self._call(lambda c: c.post(c.get_url(path), json=body))

    # ---------------------------------------------------------- KV
    def range(self, prefix: str, revision: int | None = None) -> tuple[int, list[KeyValue]]:
        """Every key under ``prefix`` (at ``revision``): (header revision, kvs)."""
        body = {"key": enc(prefix), "range_end": prefix_end(prefix)}
        if revision:
            body["revision"] = revision
        try:
            r = self._post("/kv/range", body)
        except etcd_exc.Etcd3Exception as exc:
            if "compacted" in str(exc.detail_text if hasattr(exc, "detail_text") else exc):
                raise Compacted(revision or 0) from None
            raise
        return int(r["header"]["revision"]), [_kv(d) for d in r.get("kvs", [])]

    def get(self, key: str, revision: int | None = None) -> KeyValue | None:
        body = {"key": enc(key)}
        if revision:
            body["revision"] = revision
        r = self._post("/kv/range", body)
        kvs = r.get("kvs", [])
        return _kv(kvs[0]) if kvs else None

    def revision(self) -> int:
        return int(self._post("/kv/range", {"key": enc("\0"), "count_only": True})["header"]["revision"])

    def put(self, key: str, value: bytes | str, lease: int = 0) -> int:
        body = {"key": enc(key), "value": enc(value)}
        if lease:
            body["lease"] = lease
        return int(self._post("/kv/put", body)["header"]["revision"])

    def delete_prefix(self, prefix: str) -> int:
        return int(self._post("/kv/deleterange", {"key": enc(prefix), "range_end": prefix_end(prefix)})
                   ["header"]["revision"])

    def txn(self, compare: list[dict], success: list[dict]) -> tuple[bool, int]:
        """One transaction: (succeeded, header revision)."""
        r = self._post("/kv/txn", {"compare": compare, "success": success, "failure": []})
        return bool(r.get("succeeded", False)), int(r["header"]["revision"])

    # ---------------------------------------------------------- leases
    def grant(self, ttl: int) -> int:
        return int(self._post("/lease/grant", {"TTL": ttl})["ID"])

    def keepalive(self, lease: int) -> int:
        """Refresh a lease; its remaining TTL (0 or less: expired)."""
        r = self._post("/lease/keepalive", {"ID": lease})
        return int(r.get("result", r).get("TTL", 0))

    def revoke(self, lease: int) -> None:
        self._post("/kv/lease/revoke", {"ID": lease})

    # ---------------------------------------------------------- watch
    def watch(self, prefix: str, start_revision: int) -> Iterator[list[Event]]:
        """Watch responses from ``start_revision``: each a list of events of
        whole revisions. Ends (raises EtcdUnavailable) when the stream breaks;
        raises Compacted when that history is gone."""
        create = {"key": enc(prefix), "range_end": prefix_end(prefix), "start_revision": start_revision,
                  "prev_kv": True}

        def open_stream(c: etcd3gw.Etcd3Client) -> requests.Response:
            resp = c.session.post(c.get_url("/watch"), json={"create_request": create}, stream=True,
                                  timeout=(self.opts.timeout, None))
            resp.raise_for_status()
            return resp

        resp = self._call(open_stream)
        try:
            yield from _stream(resp)
        except (requests.exceptions.RequestException, ValueError) as exc:
            self._client = None
            raise EtcdUnavailable(f"etcd watch broke: {type(exc).__name__}", field="etcd") from None
        finally:
            resp.close()
        self._client = None
        raise EtcdUnavailable("etcd closed the watch stream", field="etcd")


def _stream(resp: requests.Response) -> Iterator[list[Event]]:
    for line in resp.iter_lines():
        if not line.strip():
            continue
        result = json.loads(line).get("result", {})
        if int(result.get("compact_revision", 0) or 0) > 0:
            raise Compacted(int(result["compact_revision"]))
        if result.get("canceled"):
            raise EtcdUnavailable(f"etcd cancelled the watch: {result.get('cancel_reason', '')}", field="etcd")
        evs = [Event(e.get("type", "PUT"), _kv(e["kv"]), _kv(e["prev_kv"]) if e.get("prev_kv") else None)
               for e in result.get("events", [])]
        if evs:
            yield evs
