"""The key layout of one fleet under its prefix, and the value encodings.

    PREFIX/set/rev                          touched by every write: its
                                            mod_revision is the rule set's revision
    PREFIX/set/policy                       "allow" | "deny"
    PREFIX/set/rules/<match>                one rule, JSON
    PREFIX/set/lists/<name>/manifest        the list's current version, JSON
    PREFIX/set/lists/<name>/chunks/<v>/<n>  its members, packed (pack_members), cut in chunks
    PREFIX/set/lb/vips/<vip>                a VIP (<addr>-<proto>-<port>), JSON
    PREFIX/set/lb/backends/<vip>/<addr>     one backend of that VIP, JSON
    PREFIX/nodes/<node>                     a live agent's report (under a lease)
    PREFIX/members/<node>                   the last report of every agent ever seen

Agents watch PREFIX/set/ only: node reports never wake them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .. import prefixes as px
from ..rules import validate
from ..rules.members import Members
from ..rules.validate import RuleSpec

CHUNK_BYTES = 1 << 20  # etcd refuses requests over 1.5 MiB by default


@dataclass(frozen=True)
class Layout:
    prefix: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", "/" + self.prefix.strip("/"))

    def k(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts))

    @property
    def set(self) -> str:
        """The desired rule set: everything an agent watches."""
        return self.k("set", "")

    @property
    def rev(self) -> str:
        return self.k("set", "rev")

    @property
    def policy(self) -> str:
        return self.k("set", "policy")

    def rule(self, name: str) -> str:
        return self.k("set", "rules", name)

    def manifest(self, name: str) -> str:
        return self.k("set", "lists", name, "manifest")

    def chunks(self, name: str, version: int | None = None) -> str:
        tail = ("",) if version is None else (str(version), "")
        return self.k("set", "lists", name, "chunks", *tail)

    @property
    def lb(self) -> str:
        return self.k("set", "lb", "")

    def vip(self, name: str) -> str:
        return self.k("set", "lb", "vips", name)

    def backends(self, vip: str) -> str:
        return self.k("set", "lb", "backends", vip, "")

    def backend(self, vip: str, addr: str) -> str:
        return self.k("set", "lb", "backends", vip, addr)

    def node(self, name: str) -> str:
        return self.k("nodes", name)

    def member(self, name: str) -> str:
        return self.k("members", name)

    def parts(self, key: str) -> list[str]:
        """The key's parts below the prefix."""
        return key[len(self.prefix) + 1:].split("/")

    def set_parts(self, key: str) -> list[str]:
        """The key's parts below PREFIX/set/."""
        return key[len(self.set):].split("/")


def rule_name(s: RuleSpec) -> str:
    """The key of a rule's match: <dir>-<proto>-<port>-<prefix>, '/' as '_'."""
    where = px.format_prefix(s.prefix) if s.prefix is not None else "any"
    return f"{validate.DIR_NAMES[s.dir]}-{s.proto or 0}-{s.port or 0}-{where.replace('/', '_')}"


def rule_value(s: RuleSpec) -> bytes:
    return json.dumps({
        "prefix": px.format_prefix(s.prefix) if s.prefix is not None else None,
        "dst": s.dir == 1, "action": validate.ACTION_NAMES[s.action], "proto": px.proto_name(s.proto) if s.proto else None, "port": s.port,
        "comment": s.comment, "mgmt": s.mgmt}, sort_keys=True).encode()


def rule_of(value: bytes) -> RuleSpec:
    d = json.loads(value)
    return validate.spec(d["prefix"], action=d["action"], dst=d["dst"], proto=d["proto"], port=d["port"],
                         comment=d["comment"], mgmt=d.get("mgmt", False))


def pack_members(prefixes: "list[px.Prefix] | Members") -> bytes:
    """A list's members as its chunks hold them, joined: the columnar blob of
    the state's lists table (xdpctl.core.rules.members), a fifth to a third
    of the text's size, and unpacked with array operations."""
    return Members.of(prefixes).pack()


def cut(blob: bytes, size: int = CHUNK_BYTES) -> list[bytes]:
    """The blob in chunks of at most ``size`` bytes."""
    return [blob[i:i + size] for i in range(0, len(blob), size)]


def members_of(man: "Manifest", blob: bytes) -> list[px.Prefix]:
    """The members a list's joined chunks hold (packed, or text as lists
    written before the packed format)."""
    if man.format == "members":
        return Members.unpack(blob).prefixes()
    return px.parse_prefix_text(blob)


@dataclass(frozen=True)
class Manifest:
    version: int
    count: int
    chunks: int
    action: str = "deny"
    dst: bool = False
    comment: str | None = None
    sha256: str | None = None
    format: str = "text"  # "members": the chunks hold pack_members(); "text": one prefix a line

    def encode(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "Manifest":
        d = json.loads(raw)
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
