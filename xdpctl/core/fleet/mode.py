"""Local or fleet mode: the one place that decides where changes go.

The CLI and the REST service ask :func:`rule_set` for the drop list and
:func:`load_balancer` for the load balancer. Without etcd settings they get
the local DropList and LoadBalancer; with ``settings.etcd`` (the global
``--etcd``, ``XDPCTL_ETCD``, ``xdpctl serve --etcd``) the fleet's writers,
which have the same method names and answer the same views, kept in etcd.
Attachments, counters, restore and the agent itself always stay local.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # each caller loads only the side it uses; the etcd client in fleet mode only
    from ...config import Settings
    from ..context import Context
    from ..lb.service import LoadBalancer
    from ..rules.service import DropList
    from .kv import EtcdOptions
    from .lbset import FleetLoadBalancer
    from .writer import Fleet


def etcd_options(settings: Settings) -> "EtcdOptions | None":
    """The etcd connection the settings name, or None (local mode)."""
    if not settings.etcd:
        return None
    from .kv import EtcdOptions

    return EtcdOptions.parse(settings.etcd, ca_cert=settings.etcd_ca, cert=settings.etcd_cert,
                             key=settings.etcd_key, user=settings.etcd_user, password=settings.etcd_password)


def fleet_of(settings: Settings) -> "Fleet | None":
    """The fleet's rule set the settings name, or None (local mode)."""
    opts = etcd_options(settings)
    if opts is None:
        return None
    from .kv import Etcd
    from .writer import Fleet

    return Fleet(Etcd(opts), settings.etcd_prefix)


def rule_set(ctx: Context) -> "DropList | Fleet":
    """The drop list changes and reads of the desired set go to."""
    from ..rules.service import DropList

    return fleet_of(ctx.settings) or DropList(ctx)


def load_balancer(ctx: Context) -> "LoadBalancer | FleetLoadBalancer":
    """The load balancer changes and reads of its VIPs go to."""
    opts = etcd_options(ctx.settings)
    if opts is None:
        from ..lb.service import LoadBalancer

        return LoadBalancer(ctx)
    from .kv import Etcd
    from .lbset import FleetLoadBalancer

    return FleetLoadBalancer(Etcd(opts), ctx.settings.etcd_prefix, ctx)
