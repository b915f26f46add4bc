// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdpctl XDP hook program: parse once, then the stages switched on in
 * xc_stages (chain.h), in order. The drop list ends a dropped packet's
 * way; the load balancer sends a balanced one back out (XDP_TX).
 */
#include "xdp_hook.h"
#include "chain.h"
#include "counter.h"
#include "droplist.h"
#include "lb.h"
#include "sample.h"

/* Global functions: the verifier checks each once, on its own. The parser
 * and the drop list are inlined instead: a BPF-to-BPF call costs about as
 * much as a hash lookup (docs/internals.md, "Per-packet cost"); the sample
 * function is called only when a listener is set. */
__noinline int xc_xdp_sample(struct xdp_md *ctx, struct xc_pkt *p, struct xc_dl_result *r, int verdict)
{
	struct xc_sample *s;
	__u32 n;

	if (!p || !r)
		return 0;
	s = xc_sample_begin(p, r, verdict, ctx->ingress_ifindex);
	if (!s)
		return 0;
	n = xc_sample_bytes(p->len);
	if (!bpf_xdp_load_bytes(ctx, 0, s->data, n))
		s->cap_len = n;
	bpf_ringbuf_submit(s, 0);
	return 1;
}

__noinline int xc_xdp_lb(struct xdp_md *ctx, struct xc_pkt *p)
{
	if (!p)
		return XC_PASS;
	return xc_lb_run(p, (void *)(long)ctx->data, (void *)(long)ctx->data_end, p->vlan);
}

SEC("xdp")
int xc_hook(struct xdp_md *ctx)
{
	__u32 hook = XC_KIND_XDP;
	__u32 on = xc_stages_on(&hook);
	struct xc_dl_result r = {};
	struct xc_pkt *p;
	int v;

	if (!on)
		return XDP_PASS;
	p = xc_pkt_get();
	if (!p)
		return XDP_PASS;
	xc_xdp_parse(ctx, p);
	if (XC_ON(on, XC_STAGE_COUNTER))
		xc_counter_run(p);
	if (XC_ON(on, XC_STAGE_DROPLIST)) {
		v = xc_droplist_run(p, hook, &r);
		if (xc_sample_on())
			xc_xdp_sample(ctx, p, &r, v);
		if (v != XC_PASS)
			return XDP_DROP;
	}
	if (XC_ON(on, XC_STAGE_LB) && xc_xdp_lb(ctx, p) == XC_LB_FORWARD)
		return XDP_TX;
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
