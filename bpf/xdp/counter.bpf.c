// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* xdpctl XDP protocol counter stage (chain slot XC_STAGE_COUNTER). */
#include "xdp_hook.h"
#include "counter.h"

SEC("xdp")
int xc_counter(struct xdp_md *ctx)
{
	struct xc_pkt p;

	xc_xdp_parse(ctx, &p);
	return xc_xdp_finish(ctx, xc_counter_run(&p), XC_STAGE_COUNTER);
}

char _license[] SEC("license") = "Dual BSD/GPL";
