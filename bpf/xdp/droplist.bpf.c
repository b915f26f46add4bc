// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* xdpctl XDP drop list stage (chain slot XC_STAGE_DROPLIST). */
#include "xdp_hook.h"
#include "droplist.h"

SEC("xdp")
int xc_droplist(struct xdp_md *ctx)
{
	struct xc_pkt p;

	xc_xdp_parse(ctx, &p);
	return xc_xdp_finish(ctx, xc_droplist_run(&p), XC_STAGE_DROPLIST);
}

char _license[] SEC("license") = "Dual BSD/GPL";
