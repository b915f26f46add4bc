"""The rule set as a text file: `export` writes it, `apply` makes the
desired state equal to it (docs/operator-tools.md).

    # comment
    policy deny
    block 203.0.113.0/24 --comment 'scanners'
    allow 10.0.0.0/8 --mgmt
    block any --dst --proto tcp --port 23 --expires 1798761600.5
    list feed --action deny --dst --comment 'feed X'
    198.51.100.0/24
    2001:db8:bad::/48

A `list` line opens a list; the prefix lines after it are its members, up
to the next `policy`, `block`, `allow` or `list` line. A bare address is a
host prefix. `--expires` is a Unix time (what `export` writes, exactly);
`--ttl` a duration from now. Exported: the policy, every rule (match,
action, direction, management flag, comment, expiry) and every list
(action, direction, comment, expiry, members in rule-id order). Not
exported: rule ids, creation times, sources, hit counters; apply keeps them
for what does not change.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from typing import Iterator

from . import prefixes as px
from .errors import ValidationError, neutral_field
from .rules import ruleset, validate
from .rules.members import Members
from .rules.service import DropList, _new_row, rule_view
from .rules.store import ListRow, RuleRow
from .rules.tables import KernelTables
from .rules.validate import ACTION_NAMES, DIR_NAMES, RuleSpec
from .views import ApplyView, ListDiffView

SOURCE = "apply"
_RULE_FLAGS = {"--dst": False, "--mgmt": False, "--proto": True, "--port": True, "--comment": True,
               "--ttl": True, "--expires": True}
_LIST_FLAGS = {"--dst": False, "--action": True, "--comment": True, "--ttl": True, "--expires": True}


class LineError(ValidationError):
    """Line ``line`` (1-based) of a rule-set file is bad."""

    def __init__(self, line: int, error: ValidationError | str, value: object = None):
        err = error if isinstance(error, ValidationError) else ValidationError(error, value=value)
        super().__init__(f"line {line}: {err.message}; nothing was applied", field=err.field or "rules",
                         value=err.value, hint=err.hint)
        self.line = line

    def as_dict(self, field_word=neutral_field, action_word=None) -> dict:
        out = super().as_dict(field_word, action_word) if action_word else super().as_dict(field_word)
        return {**out, "line": self.line}


# ---------------------------------------------------------------- export
def _with_options(head: list[str], r: RuleRow | ListRow, match: list[str] = ()) -> str:
    """A rule's or list's line: its words, --dst, the rest of its match,
    then the options both have."""
    parts = head + (["--dst"] if r.dir else []) + list(match)
    if r.comment is not None:
        parts += ["--comment", shlex.quote(" ".join(r.comment.splitlines()))]
    if r.expires is not None:
        parts += ["--expires", repr(r.expires)]
    return " ".join(parts)


def _rule_line(r: RuleRow) -> str:
    pfx = "any" if r.anyaddr else px.format_prefix(px.Prefix(r.family, int.from_bytes(r.addr, "big"), r.plen))
    match = ["--proto", px.proto_name(r.proto), "--port", str(r.port)] if r.proto else []
    return _with_options(["allow" if ACTION_NAMES[r.action] == "allow" else "block", pfx], r,
                         match + (["--mgmt"] if r.mgmt else []))


def _list_line(row: ListRow) -> str:
    return _with_options(["list", row.name, "--action", ACTION_NAMES[row.action]], row)


def export_text(d: DropList, chunk: int = 10000) -> Iterator[str]:
    """The rule set as a file `apply` reads, in pieces (a list of millions
    is formatted a piece at a time)."""
    state = d.state
    yield f"# xdpctl rule set, revision {d.revision()}\npolicy {d.policy()}\n"
    yield "".join(_rule_line(r) + "\n" for r in state.rule_rows())
    for row in state.list_rows():
        yield _list_line(row) + "\n"
        members = d.list_text(row.name, chunk)
        next(members)  # its header: the list line above says it
        yield from members


# ---------------------------------------------------------------- parse
@dataclass
class WantList:
    name: str
    dir: int
    action: int
    comment: str | None
    expires: float | None
    line: int
    members: list[str] = field(default_factory=list)
    first: int = 0  # line of the first member


@dataclass
class Desired:
    policy: str | None = None
    rules: dict[tuple, tuple[RuleSpec, float | None, int]] = field(default_factory=dict)  # key -> (spec, exp, line)
    lists: dict[str, tuple[WantList, Members]] = field(default_factory=dict)


def _options(tokens: list[str], known: dict[str, bool]) -> tuple[list[str], dict[str, str | bool]]:
    args, opts, i = [], {}, 0
    while i < len(tokens):
        t = tokens[i]
        if t.startswith("--"):
            if t not in known:
                raise ValidationError(f"unknown option {t}; this line takes {', '.join(known)}", value=t)
            if t in opts:
                raise ValidationError(f"{t} is given twice", value=t)
            if known[t]:
                if i + 1 >= len(tokens):
                    raise ValidationError(f"{t} needs a value", value=t)
                opts[t], i = tokens[i + 1], i + 2
                continue
            opts[t] = True
        else:
            args.append(t)
        i += 1
    return args, opts


def _expiry(opts: dict, now: float) -> float | None:
    if "--expires" in opts and "--ttl" in opts:
        raise ValidationError("give --expires or --ttl, not both", field="ttl")
    if "--ttl" in opts:
        return now + validate.duration(opts["--ttl"])
    if "--expires" not in opts:
        return None
    try:
        return float(opts["--expires"])
    except ValueError:
        raise ValidationError("--expires takes a Unix time (seconds)", field="expires",
                              value=opts["--expires"]) from None


def _rule(verb: str, tokens: list[str], now: float) -> tuple[RuleSpec, float | None]:
    args, opts = _options(tokens, _RULE_FLAGS)
    if len(args) != 1:
        raise ValidationError(f"{verb} takes one prefix (or any), got {len(args)}", field="prefix")
    s = validate.spec(args[0], action="allow" if verb == "allow" else "deny", dst=bool(opts.get("--dst")),
                      proto=opts.get("--proto"), port=opts.get("--port"), comment=opts.get("--comment"),
                      mgmt=bool(opts.get("--mgmt")))
    return s, _expiry(opts, now)


def _list(tokens: list[str], line: int, now: float) -> WantList:
    args, opts = _options(tokens, _LIST_FLAGS)
    if len(args) != 1:
        raise ValidationError(f"list takes one name, got {len(args)}", field="name")
    comment = opts.get("--comment")
    if comment is not None and len(comment) > validate.COMMENT_MAX:
        raise ValidationError(f"comment longer than {validate.COMMENT_MAX} characters", field="comment")
    return WantList(validate.list_name(args[0]), 1 if opts.get("--dst") else 0,
                    validate.action_of(opts.get("--action", "deny")), comment, _expiry(opts, now), line)


def _line(d: Desired, text: str, n: int, cur: WantList | None, now: float) -> WantList | None:
    """Read one line; returns the list it leaves open."""
    tokens = shlex.split(text, comments=True)
    if not tokens:
        return cur
    verb = tokens[0]
    if verb == "policy":
        if len(tokens) != 2:
            raise ValidationError("policy takes one word: allow or deny", field="policy")
        d.policy = validate.policy(tokens[1])
        return None
    if verb in ("block", "allow"):
        s, exp = _rule(verb, tokens[1:], now)
        if s.key() in d.rules:
            raise ValidationError(f"{s.describe()} is given twice (first on line {d.rules[s.key()][2]})",
                                  field="prefix")
        d.rules[s.key()] = (s, exp, n)
        return None
    if verb == "list":
        want = _list(tokens[1:], n, now)
        if want.name in d.lists:
            raise ValidationError(f"list {want.name} is given twice", field="name", value=want.name)
        d.lists[want.name] = (want, Members.of([]))
        return want
    if cur is None:
        raise ValidationError(f"expected policy, block, allow or list, not {verb!r}", value=verb)
    if len(tokens) != 1:
        raise ValidationError(f"a list member line holds one prefix, not {text.strip()!r}", field="prefixes")
    if not cur.members:
        cur.first = n
    cur.members.append(tokens[0])
    return cur


def parse(text: str) -> Desired:
    """A rule-set file -> the desired state; the first bad line is a
    LineError naming it."""
    d, cur, now = Desired(), None, time.time()
    for n, raw in enumerate(text.splitlines(), 1):
        try:
            cur = _line(d, raw, n, cur, now)
        except ValueError as exc:  # shlex: an unclosed quote
            raise LineError(n, f"cannot split the line: {exc}", value=raw) from None
        except ValidationError as exc:
            raise LineError(n, exc) from None
    for name, (want, _m) in d.lists.items():
        try:
            members = px.parse_prefix_lines(want.members, start=want.first)
        except px.PrefixError as exc:
            raise LineError(exc.lineno or want.line, ValidationError(exc.reason, field="prefixes",
                                                                     value=exc.text)) from None
        d.lists[name] = (want, Members.of(members))
    try:
        validate.check_unique([s for s, _e, _n in d.rules.values()])
    except validate.ItemError as exc:
        raise LineError(list(d.rules.values())[exc.index][2], exc) from None
    return d


# ---------------------------------------------------------------- diff and apply
@dataclass
class Plan:
    add: list[tuple[RuleSpec, float | None]] = field(default_factory=list)
    change: list[tuple[RuleRow, RuleSpec, float | None]] = field(default_factory=list)
    remove: list[RuleRow] = field(default_factory=list)
    put_lists: list[tuple[WantList, Members, ListRow | None]] = field(default_factory=list)
    drop_lists: list[ListRow] = field(default_factory=list)
    policy: str | None = None

    def empty(self) -> bool:
        return not (self.add or self.change or self.remove or self.put_lists or self.drop_lists
                    or self.policy)


def plan(d: DropList, want: Desired) -> Plan:
    """What apply changes to make the stored rule set the file's."""
    state, p = d.state, Plan()
    have = {_key(r): r for r in state.rule_rows()}
    for key, (s, exp, _n) in want.rules.items():
        row = have.pop(key, None)
        if row is None:
            p.add.append((s, exp))
        elif (row.action, row.comment, row.expires, bool(row.mgmt)) != (s.action, s.comment, exp, s.mgmt):
            p.change.append((row, s, exp))
    p.remove = list(have.values())
    lists = {r.name: r for r in state.list_rows()}
    for name, (w, m) in want.lists.items():
        row = lists.pop(name, None)
        if row is None or (row.dir, row.action, row.comment, row.expires, row.entries) != \
                (w.dir, w.action, w.comment, w.expires, m.pack()):
            p.put_lists.append((w, m, row))
    p.drop_lists = list(lists.values())
    if want.policy is not None and want.policy != d.policy():
        p.policy = want.policy
    return p


def _key(r: RuleRow) -> tuple:
    return (r.family, r.dir, r.proto, r.port, r.anyaddr, r.plen, r.addr)


def _write(d: DropList, p: Plan, kt: KernelTables) -> list[int]:
    """Make the database the plan's result, then the kernel the database's
    (one full sync into the standby set: the switch is atomic). Returns
    the ids of the rules added."""
    state, now = d.state, time.time()
    cap = kt.max_entries("xc_rule_stats")
    gone = [r.id for r in p.remove]
    state.delete_rules(gone)
    ids = state.free_ids(len(p.add), cap) if p.add else []
    fresh = list(ids)
    state.insert_rules([_row(rid, s, exp, now) for rid, (s, exp) in zip(ids, p.add)])
    for row, s, exp in p.change:
        state.update_rule(row.id, s.action, s.comment, exp, s.mgmt)
    for row in p.drop_lists:
        state.delete_list(row.name)
        gone += range(row.id_base, row.id_base + row.count)
    for w, m, old in p.put_lists:
        n = m.n4 + m.n6
        base = state.allocate_ids(n, cap) if n else 1
        state.replace_list(ListRow(w.name, n, w.dir, w.action, w.comment, SOURCE, now, w.expires, base,
                                   m.pack(), m.flags(bool(w.dir))))
        if old is not None:
            gone += range(old.id_base, old.id_base + old.count)
        fresh += range(base, base + n)
    if p.policy is not None:
        state.set_meta("policy", p.policy)
    d._lists_index = None
    kt.sync_to(ruleset.compile_stored(state))
    kt.zero_stats(gone + fresh)
    return ids


def _row(rid: int, s: RuleSpec, exp: float | None, now: float) -> RuleRow:
    return _new_row(rid, s, SOURCE, now)._replace(expires=exp)


def _view(d: DropList, p: Plan, revision: int, dry_run: bool, ids: list[int] | None = None) -> ApplyView:
    """The changes: rules as their views (added ones with id 0 in a dry run:
    no id is allocated), lists by name and member count."""
    now = time.time()
    added = (d.state.rules_by_ids(ids) if ids else [_row(0, s, e, now) for s, e in p.add])
    return ApplyView(
        revision=revision, dry_run=dry_run, changed=not p.empty(),
        added=[rule_view(r) for r in added],
        updated=[rule_view(r._replace(action=s.action, comment=s.comment, expires=e, mgmt=int(s.mgmt)))
                 for r, s, e in p.change],
        removed=[rule_view(r) for r in p.remove],
        lists=[ListDiffView(name=w.name, count=m.n4 + m.n6, was=old.count if old else None, dir=DIR_NAMES[w.dir],
                            action=ACTION_NAMES[w.action]) for w, m, old in p.put_lists],
        lists_removed=[r.name for r in p.drop_lists],
        policy=p.policy)


def apply(d: DropList, text: str, dry_run: bool = False, expected_revision: int | None = None) -> ApplyView:
    """POST /v1/apply, `xdpctl apply`: make the desired state equal to the
    file, all or nothing, as one revision; nothing when it already is."""
    want = parse(text)
    if dry_run:
        d.state.check_revision(expected_revision)
        return _view(d, plan(d, want), d.revision(), True)
    d._expire_pending()
    with d.ctx.writer() as state, KernelTables(d.ctx) as kt:
        state.check_revision(expected_revision)
        p = plan(d, want)
        if p.empty():
            return _view(d, p, state.revision, False)
        ids = _write(d, p, kt)
        return _view(d, p, d._finish(kt), False, ids)
