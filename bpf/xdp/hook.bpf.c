// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdpctl XDP hook program: parse once, then the stages switched on in
 * xc_stages (chain.h), in order. The drop list ends a dropped packet's
 * way; the load balancer sends a balanced one back out (XDP_TX).
 */
#include "xdp_hook.h"
#include "chain.h"
#include "counter.h"
#include "droplist.h"
#include "lb.h"

/* Global functions: the verifier checks each once, on its own. */
__noinline int xc_xdp_droplist(struct xc_pkt *p)
{
	if (!p)
		return XC_PASS;
	return xc_droplist_run(p);
}

__noinline int xc_xdp_lb(struct xdp_md *ctx, struct xc_pkt *p)
{
	if (!p)
		return XC_PASS;
	return xc_lb_run(p, (void *)(long)ctx->data, (void *)(long)ctx->data_end, p->vlan);
}

SEC("xdp")
int xc_hook(struct xdp_md *ctx)
{
	__u32 on = xc_stages_on();
	struct xc_pkt p;

	if (!on)
		return XDP_PASS;
	xc_xdp_parse(ctx, &p);
	if (XC_ON(on, XC_STAGE_COUNTER))
		xc_counter_run(&p);
	if (XC_ON(on, XC_STAGE_DROPLIST) && xc_xdp_droplist(&p) != XC_PASS)
		return XDP_DROP;
	if (XC_ON(on, XC_STAGE_LB) && xc_xdp_lb(ctx, &p) == XC_LB_FORWARD)
		return XDP_TX;
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
