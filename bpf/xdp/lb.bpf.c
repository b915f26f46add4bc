// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* xdpctl XDP load balancer stage (chain slot XC_STAGE_LB): XDP_TX when it balances. */
#include "xdp_hook.h"
#include "lb.h"

SEC("xdp")
int xc_lb(struct xdp_md *ctx)
{
	struct xc_pkt p;
	int verdict;

	xc_xdp_parse(ctx, &p);
	verdict = xc_lb_run(&p, (void *)(long)ctx->data, (void *)(long)ctx->data_end, p.vlan);
	if (verdict == XC_LB_FORWARD)
		return XDP_TX;
	return xc_xdp_finish(ctx, verdict, XC_STAGE_LB);
}

char _license[] SEC("license") = "Dual BSD/GPL";
