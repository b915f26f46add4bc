/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xdpctl sample stage, written once for XDP and TC: after the drop list, a
 * copy of the packet's verdict, reason, rule and first XC_SAMPLE_BYTES
 * bytes goes to the hook's ring buffer xc_smp_rb, for `xdpctl dump`
 * (docs/operator-tools.md, "What is being dropped").
 *
 * Off unless a listener wrote its pid into the hook's xc_smp_cfg: then one
 * load per packet (xc_sample_on) is the whole cost. Bounded in the data path:
 * only reasons the listener asked for, 1 in `rate` of those, and at most
 * `cap` samples per second on each CPU (per-CPU xc_smp_budget), so a
 * flood cannot swamp user space. A full ring buffer drops the sample.
 */
#ifndef XDPCTL_SAMPLE_H
#define XDPCTL_SAMPLE_H

#include "parse.h"
#include "stage.h"

#define XC_MAPS_SAMPLE
#include "xdpctl_maps.h"

#define XC_NS_PER_SEC 1000000000ULL

/* Does a listener want samples from this hook? The hook asks this inline
 * before it calls its sample function, so a hook nobody listens to pays one
 * load and no function call. */
static __always_inline int xc_sample_on(void)
{
	return XC_READ(xc_smp_cfg.pid) != 0;
}

/* A sample record reserved in the ring buffer with its header filled in,
 * or NULL when this packet is not to be sampled. The caller copies the
 * frame's bytes into ->data, sets ->cap_len and submits it. */
static __always_inline struct xc_sample *xc_sample_begin(const struct xc_pkt *p,
							 const struct xc_dl_result *r, int verdict,
							 __u32 ifindex)
{
	const struct xc_sample_cfg *cfg = &xc_smp_cfg;
	struct xc_sample_budget *b;
	struct xc_sample *s;
	__u32 zero = 0;
	__u64 now, sec;

	if (!XC_READ(cfg->pid))
		return NULL; /* nobody listens */
	if (r->reason >= 32 || !(cfg->reasons & (1U << r->reason)))
		return NULL;
	b = bpf_map_lookup_elem(&xc_smp_budget, &zero);
	if (!b)
		return NULL;
	b->seen += 1;
	if (cfg->rate > 1 && b->seen % cfg->rate)
		return NULL;
	now = bpf_ktime_get_ns();
	sec = now / XC_NS_PER_SEC;
	if (sec != b->second) {
		b->second = sec;
		b->taken = 0;
	}
	if (b->taken >= cfg->cap)
		return NULL;
	s = bpf_ringbuf_reserve(&xc_smp_rb, sizeof(*s), 0);
	if (!s)
		return NULL;
	b->taken += 1;
	s->ts_ns = now;
	s->ifindex = ifindex;
	s->len = p->len;
	s->rule_id = r->rule_id;
	s->cap_len = 0;
	s->hook = cfg->hook;
	s->verdict = verdict;
	s->reason = r->reason;
	__builtin_memset(s->pad, 0, sizeof(s->pad));
	return s;
}

/* Bytes of a frame of len bytes a sample carries: 1..XC_SAMPLE_BYTES. */
static __always_inline __u32 xc_sample_bytes(__u32 len)
{
	return len < 1 ? 1 : len > XC_SAMPLE_BYTES ? XC_SAMPLE_BYTES : len;
}

#endif /* XDPCTL_SAMPLE_H */
