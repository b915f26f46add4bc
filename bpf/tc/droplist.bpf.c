// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* xdpctl TC drop list stage (chain slot XC_STAGE_DROPLIST), ingress and egress. */
#include "tc_hook.h"
#include "droplist.h"

SEC("tc")
int xc_droplist(struct __sk_buff *skb)
{
	struct xc_pkt p;

	xc_tc_parse(skb, &p);
	return xc_tc_finish(skb, xc_droplist_run(&p), XC_STAGE_DROPLIST);
}

char _license[] SEC("license") = "Dual BSD/GPL";
