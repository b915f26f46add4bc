"""Fleet mode: many hosts enforce one rule set and load balancer kept in etcd.

    mode.py     local or fleet: rule_set(ctx) and load_balancer(ctx), the one seam
    kv.py       the etcd connection (JSON gateway, via etcd3gw): ranges,
                transactions, leases and the watch stream; TLS and auth
    layout.py   the key layout and the encoding of rules, lists and policy
    store.py    conditional transactions on the cluster revision, snapshots
    writer.py   the fleet's drop list (DropList's methods and views)
    lbset.py    the fleet's load balancer (LoadBalancer's methods and views)
    status.py   fleet status and the nodes' reports
    agent.py    the per-host agent: applies each cluster revision locally
    lbapply.py  the agent's part for the load balancer
    views.py    the fleet's views

docs/fleet.md describes the design and its guarantees.
"""
