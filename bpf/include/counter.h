/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xdpctl protocol counter stage (chain slot XC_STAGE_COUNTER), written once
 * for XDP and TC: counts every packet in xc_proto[l3 * XC_L4_MAX + l4] and,
 * for tagged frames, also in XC_PROTO_VLAN1 / XC_PROTO_VLAN2. Never drops.
 */
#ifndef XDPCTL_COUNTER_H
#define XDPCTL_COUNTER_H

#include "parse.h"
#include "stage.h"

#define XC_MAPS_COUNTER
#include "xdpctl_maps.h"

static __always_inline int xc_counter_run(const struct xc_pkt *p)
{
	xc_count(&xc_proto, (__u32)p->l3 * XC_L4_MAX + p->l4, p->len);
	if (p->vlan == 1)
		xc_count(&xc_proto, XC_PROTO_VLAN1, p->len);
	else if (p->vlan >= 2)
		xc_count(&xc_proto, XC_PROTO_VLAN2, p->len);
	return XC_PASS;
}

#endif /* XDPCTL_COUNTER_H */
