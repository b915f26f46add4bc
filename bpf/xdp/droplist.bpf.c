// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdpctl XDP drop list alone, never attached: loading it creates the
 * shared drop-list maps, and run with BPF_PROG_TEST_RUN over them it says
 * which rule matches a packet. Hooks run the drop list in xc_hook.
 */
#include "xdp_hook.h"
#include "droplist.h"

SEC("xdp")
int xc_droplist(struct xdp_md *ctx)
{
	struct xc_pkt *p = xc_pkt_get();
	struct xc_dl_result r;

	if (!p)
		return XDP_PASS;
	xc_xdp_parse(ctx, p);
	return xc_xdp_action(xc_droplist_run(p, XC_KIND_XDP, &r));
}

char _license[] SEC("license") = "Dual BSD/GPL";
