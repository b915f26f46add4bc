// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdpctl TC hook program (ingress and egress): parse once, then the stages
 * switched on in xc_stages (chain.h), in order. The drop list ends a
 * dropped packet's way; the load balancer (ingress) sends a balanced one
 * out of the interface it came in on (bpf_redirect to its egress).
 */
#include "tc_hook.h"
#include "chain.h"
#include "counter.h"
#include "droplist.h"
#include "lb.h"
#include "sample.h"

/* Global functions: the verifier checks each once, on its own. The parser
 * and the drop list are inlined instead: a BPF-to-BPF call costs about as
 * much as a hash lookup (docs/internals.md, "Per-packet cost"); the sample
 * function is called only when a listener is set. */
__noinline int xc_tc_sample(struct __sk_buff *skb, struct xc_pkt *p, struct xc_dl_result *r, int verdict)
{
	struct xc_sample *s;
	__u32 n;

	if (!p || !r)
		return 0;
	s = xc_sample_begin(p, r, verdict, skb->ifindex);
	if (!s)
		return 0;
	n = xc_sample_bytes(skb->len);
	if (!bpf_skb_load_bytes(skb, 0, s->data, n))
		s->cap_len = n;
	bpf_ringbuf_submit(s, 0);
	return 1;
}

__noinline int xc_tc_lb(struct __sk_buff *skb, struct xc_pkt *p)
{
	__u32 stripped = skb->vlan_present ? 1 : 0;
	__u32 want;

	if (!p)
		return XC_PASS;
	/* An ICMP error's inner headers may lie past the linear part. */
	if (p->l4 == XC_L4_ICMP || p->l4 == XC_L4_ICMPV6) {
		want = skb->len < XC_LB_ICMP_PULL ? skb->len : XC_LB_ICMP_PULL;
		if (want > skb->data_end - skb->data)
			bpf_skb_pull_data(skb, want);
	}
	return xc_lb_run(p, (void *)(long)skb->data, (void *)(long)skb->data_end, p->vlan - stripped);
}

SEC("tc")
int xc_hook(struct __sk_buff *skb)
{
	__u32 hook = XC_KIND_TC_INGRESS;
	__u32 on = xc_stages_on(&hook);
	struct xc_dl_result r = {};
	struct xc_pkt *p;
	int v;

	if (!on)
		return TC_ACT_OK;
	p = xc_pkt_get();
	if (!p)
		return TC_ACT_OK;
	xc_tc_parse(skb, p);
	if (XC_ON(on, XC_STAGE_COUNTER))
		xc_counter_run(p);
	if (XC_ON(on, XC_STAGE_DROPLIST)) {
		v = xc_droplist_run(p, hook, &r);
		if (xc_sample_on())
			xc_tc_sample(skb, p, &r, v);
		if (v != XC_PASS)
			return TC_ACT_SHOT;
	}
	if (XC_ON(on, XC_STAGE_LB) && xc_tc_lb(skb, p) == XC_LB_FORWARD)
		return bpf_redirect(skb->ifindex, 0);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "Dual BSD/GPL";
