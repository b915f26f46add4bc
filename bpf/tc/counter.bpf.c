// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* xdpctl TC protocol counter stage (chain slot XC_STAGE_COUNTER), ingress and egress. */
#include "tc_hook.h"
#include "counter.h"

SEC("tc")
int xc_counter(struct __sk_buff *skb)
{
	struct xc_pkt p;

	xc_tc_parse(skb, &p);
	return xc_tc_finish(skb, xc_counter_run(&p), XC_STAGE_COUNTER);
}

char _license[] SEC("license") = "Dual BSD/GPL";
