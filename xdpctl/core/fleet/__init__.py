"""Fleet mode: many hosts enforce one rule set kept in etcd.

    kv.py      the etcd connection (JSON gateway, via etcd3gw): ranges,
               transactions, leases and the watch stream
    layout.py  the key layout and the encoding of rules, lists and policy
    writer.py  fleet writes (one etcd transaction each) and fleet status
    agent.py   the per-host agent: applies each cluster revision locally
    views.py   the fleet's views

docs/fleet.md describes the design and its guarantees.
"""
