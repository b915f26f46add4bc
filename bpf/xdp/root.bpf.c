// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* xdpctl XDP root: attached to the hook, tries every chain slot in order. */
#include "chain.h"

SEC("xdp")
int xc_root(struct xdp_md *ctx)
{
	xc_chain_from(ctx, 0);
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
