/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xdpctl TC glue (ingress and egress): feed the shared parser from an
 * __sk_buff and turn a stage verdict into a TC action.
 * Frame = the linear part of the skb; the tag the kernel stripped
 * (skb->vlan_present) counts as one VLAN level; bytes counted = skb->len,
 * plus 4 for a stripped tag. When a header runs past the linear part, up to
 * XC_TC_PULL_MAX bytes are pulled in and the frame is parsed again.
 */
#ifndef XDPCTL_TC_HOOK_H
#define XDPCTL_TC_HOOK_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "parse.h"
#include "stage.h"

/* Parse the linear part as it is now into p (this CPU's xc_pkt: stage.h).
 * Returns the l3 class. */
static __always_inline int xc_tc_parse_linear(struct __sk_buff *skb, struct xc_pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 stripped = skb->vlan_present ? 1 : 0;

	xc_parse(p, data, data_end, stripped,
		 skb->len + (stripped ? sizeof(struct xc_vlan_tag) : 0));
	return p->l3;
}

static __always_inline void xc_tc_parse(struct __sk_buff *skb, struct xc_pkt *p)
{
	__u32 linear, want;

	xc_tc_parse_linear(skb, p);
	if (!(p->flags & XC_PKT_TRUNC))
		return;
	/* A header ran past the linear part: pull it in and parse again. */
	linear = skb->data_end - skb->data;
	want = skb->len < XC_TC_PULL_MAX ? skb->len : XC_TC_PULL_MAX;
	if (want > linear && bpf_skb_pull_data(skb, want) == 0)
		xc_tc_parse_linear(skb, p);
}

/* A stage verdict as a TC action. */
static __always_inline int xc_tc_action(int verdict)
{
	return verdict == XC_PASS ? TC_ACT_OK : TC_ACT_SHOT;
}

#endif /* XDPCTL_TC_HOOK_H */
