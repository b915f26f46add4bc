// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Bench probe: xdpctl's packet parser alone (bpf/include, the same code the
 * drop list runs first), then XDP_DROP. Compiled with -I bpf/include.
 */
#include "xdp_hook.h"

SEC("xdp")
int probe_parse(struct xdp_md *ctx)
{
	struct xc_pkt *p = xc_pkt_get();

	if (!p)
		return XDP_PASS;
	xc_xdp_parse(ctx, p);
	return p->l3 == XC_L3_MALFORMED ? XDP_PASS : XDP_DROP;
}

char _license[] SEC("license") = "Dual BSD/GPL";
