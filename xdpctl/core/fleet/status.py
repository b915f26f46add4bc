"""Fleet status: every agent ever seen, in-sync, behind (with its lag) or gone."""

from __future__ import annotations

import json
import time

from .store import FleetStore
from .views import FleetNodeView, FleetStatusView


def fleet_status(store: FleetStore) -> FleetStatusView:
    """Nodes from PREFIX/members/; alive while PREFIX/nodes/<node> (leased) exists."""
    lay = store.layout
    rev = store.revision()
    etcd_rev, live = store.etcd.range(lay.k("nodes", ""))
    _r, members = store.etcd.range(lay.k("members", ""))
    alive = {lay.parts(kv.key)[-1]: kv for kv in live}
    nodes = []
    for kv in members:
        name = lay.parts(kv.key)[-1]
        rep = json.loads((alive[name] if name in alive else kv).value)
        applied = rep.get("applied_revision")
        lag = max(rev - applied, 0) if applied is not None else None
        state = "gone" if name not in alive else ("in-sync" if lag == 0 else "behind")
        nodes.append(FleetNodeView(name=name, state=state, applied_revision=applied, lag=lag,
                                   local_revision=rep.get("local_revision"), health=rep.get("health"),
                                   error=rep.get("error"), attachments=rep.get("attachments", []),
                                   updated=rep.get("updated")))
    return FleetStatusView(prefix=lay.prefix, revision=rev, etcd_revision=etcd_rev, nodes=nodes)


def report(applied: int, local_revision: int | None, health: str, error: str | None,
           attachments: list[str]) -> bytes:
    """A node's report as its agent writes it."""
    return json.dumps({"applied_revision": applied, "local_revision": local_revision, "health": health,
                       "error": error, "attachments": attachments, "updated": time.time()}).encode()
