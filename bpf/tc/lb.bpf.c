// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdpctl TC load balancer stage (chain slot XC_STAGE_LB), for ingress:
 * when it balances, the frame goes out of the interface it came in on
 * (bpf_redirect to its egress).
 */
#include "tc_hook.h"
#include "lb.h"

SEC("tc")
int xc_lb(struct __sk_buff *skb)
{
	__u32 stripped = skb->vlan_present ? 1 : 0;
	struct xc_pkt p;
	__u32 want;
	int verdict;

	xc_tc_parse(skb, &p);
	/* An ICMP error's inner headers may lie past the linear part. */
	if (p.l4 == XC_L4_ICMP || p.l4 == XC_L4_ICMPV6) {
		want = skb->len < XC_LB_ICMP_PULL ? skb->len : XC_LB_ICMP_PULL;
		if (want > skb->data_end - skb->data)
			bpf_skb_pull_data(skb, want);
	}
	verdict = xc_lb_run(&p, (void *)(long)skb->data, (void *)(long)skb->data_end,
			    p.vlan - stripped);
	if (verdict == XC_LB_FORWARD)
		return bpf_redirect(skb->ifindex, 0);
	return xc_tc_finish(skb, verdict, XC_STAGE_LB);
}

char _license[] SEC("license") = "Dual BSD/GPL";
