/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xdpctl hook glue: how an XDP or TC entry point feeds the shared parser
 * and stages, and how a stage verdict becomes the hook's return code.
 *
 *   XDP: frame = [data, data_end), bytes = data_end - data, no stripped tag.
 *   TC:  frame = linear part of the skb, stripped tag = skb->vlan_present,
 *        bytes = skb->len (+ 4 for a stripped tag). If a header ran past the
 *        linear part, pull up to XC_TC_PULL_MAX bytes and parse again.
 */
#ifndef XDPCTL_HOOK_H
#define XDPCTL_HOOK_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "parse.h"
#include "chain.h"
#include "stage.h"

#define XC_TC_PULL_MAX 512 /* enough for L2 + IPv6 + a long extension chain + L4 */

static __always_inline void xc_xdp_parse(struct xdp_md *ctx, struct xc_pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	xc_parse(p, data, data_end, 0, (__u32)(data_end - data));
}

static __always_inline void xc_tc_parse(struct __sk_buff *skb, struct xc_pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 stripped = skb->vlan_present ? 1 : 0;
	__u32 len = skb->len + (stripped ? 4 : 0);
	__u32 linear, want;

	xc_parse(p, data, data_end, stripped, len);
	if (!(p->flags & XC_PKT_TRUNC))
		return;

	/* Headers past the linear part: pull them in and parse again. */
	linear = (__u32)(data_end - data);
	want = skb->len < XC_TC_PULL_MAX ? skb->len : XC_TC_PULL_MAX;
	if (want <= linear || bpf_skb_pull_data(skb, want))
		return;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	xc_parse(p, data, data_end, stripped, len);
}

/*
 * Stage verdict -> hook code. On a pass, try the chain slots after `slot`
 * (a constant), and pass when none takes the packet.
 */
static __always_inline int xc_xdp_finish(struct xdp_md *ctx, int verdict, const __u32 slot)
{
	if (verdict != XC_PASS)
		return XDP_DROP;
	xc_chain_from(ctx, slot + 1);
	return XDP_PASS;
}

static __always_inline int xc_tc_finish(struct __sk_buff *skb, int verdict, const __u32 slot)
{
	if (verdict != XC_PASS)
		return TC_ACT_SHOT;
	xc_chain_from(skb, slot + 1);
	return TC_ACT_OK;
}

#endif /* XDPCTL_HOOK_H */
