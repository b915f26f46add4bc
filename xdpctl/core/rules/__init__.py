"""The drop list: deny/allow rules on prefixes, addresses and L4 ports.

Desired state lives in SQLite (``rules`` for individually managed rules,
``lists`` for bulk lists replaced as a whole); the shared kernel maps are a
cache of it, written by controlled prefix expansion (xdpctl.core.dlcompile).

Every mutation is validated completely before anything is written, runs in
one SQLite transaction under the pin-directory lock, and writes the kernel
with rollback: if a map write fails, the maps are put back as they were and
the transaction is rolled back, so a bulk change is all or nothing.

Semantics (docs/internals.md, "The drop list verdict"):
- longest prefix wins within a direction; an allow anywhere beats a deny;
- at the same prefix, an individually managed rule beats a list member;
- rules match the source address unless they say ``dst``;
- L4 rules match protocol + destination port, optionally with a prefix.

    clock.py     the classifiers' clock (deadlines, last-hit times)
    validate.py  user input -> RuleSpec; names, actions, policies, durations
    store.py     the SQLite schema and every SQL statement (State)
    members.py   a list's members as a packed blob (Members)
    index.py     rows -> compiler rules; the SQL-backed RuleIndex
    tables.py    the shared kernel maps: writes with rollback, health
    ruleset.py   the whole rule set as compiler input, and its config flags
    service.py   DropList: reads and changes, answered as core views
"""
