/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xdpctl drop list stage (chain slot XC_STAGE_DROPLIST), written once for
 * XDP and TC over a parsed packet (docs/internals.md, "The drop list
 * verdict"):
 *
 *   A source (or, with XC_CFG_HAVE_DST, destination) inside a management
 *   prefix passes. Else s = longest source match, d = longest destination match (only with
 *   XC_CFG_HAVE_DST), p_src / p_dst = port trie matches (only with
 *   XC_CFG_HAVE_PORT and a packet with ports). The first ALLOW in the order
 *   s, d, p_src, p_dst passes; else the first DENY drops; else the policy.
 *
 * Lookups stop as soon as an ALLOW is found (nothing after it can change
 * the verdict). The clock is read at most once per packet, and only when an
 * entry with a deadline is met or a rule is hit (last_hit_ns).
 *
 * Every lookup goes to the active set of rule tables (struct xc_config,
 * read once per packet), so a packet sees the tables of one generation. A
 * host-band entry of one of the config's dead rule ids (a replaced list's
 * old hosts, deleted after the flip) is read as absent.
 */
#ifndef XDPCTL_DROPLIST_H
#define XDPCTL_DROPLIST_H

#include "parse.h"
#include "stage.h"

#define XC_MAPS_DROPLIST
#include "xdpctl_maps.h"

/* What the stage decided, for the sample stage (sample.h). */
struct xc_dl_result {
	__u32 reason;   /* enum xc_dl_reason */
	__u32 rule_id;  /* the rule hit, 0: none */
};

/* ---- matching ---------------------------------------------------------- */

/* A match copied out of its map value; act == XC_ACT_NONE: no match. */
struct xc_match {
	__u32 id;   /* rule_id */
	__u32 act;  /* enum xc_action */
	__u32 plen; /* prefix length of the rule */
};

/* CLOCK_MONOTONIC at tick resolution, read once per packet and only when
 * needed (*now == 0). The clock itself (about 14 ns) is read once per tick:
 * xc_clock keeps the value read at the last jiffy seen (bpf_jiffies64, one
 * load), so the time may lag by one tick. A CPU that sees a new jiffy
 * stores the time first and then the jiffy it belongs to, so another CPU
 * that finds its own jiffy there reads a time of that tick or, when two
 * CPUs renew it at once, of the next. */
static __always_inline __u64 xc_now(__u64 *now)
{
	__u64 j;

	if (*now)
		return *now;
	j = bpf_jiffies64();
	if (XC_READ(xc_clock.jiffies) == j) {
		*now = XC_READ(xc_clock.now_ns);
		return *now;
	}
	*now = bpf_ktime_get_coarse_ns();
	XC_WRITE(xc_clock.now_ns, *now);
	asm volatile("" ::: "memory");
	XC_WRITE(xc_clock.jiffies, j);
	return *now;
}

/* Copy a present, non-empty, unexpired entry into m (or, once its
 * deadline has passed, its live same-band fallback); else return 0. */
static __always_inline int xc_take(struct xc_match *m, const struct xc_rule_val *v, __u64 *now)
{
	if (!v || v->action == XC_ACT_NONE)
		return 0;
	if (v->expires_ns && v->expires_ns <= xc_now(now)) {
		if (v->fb_action == XC_ACT_NONE)
			return 0;
		if (v->fb_expires_ns && v->fb_expires_ns <= *now)
			return 0;
		m->id = v->fb_rule_id;
		m->act = v->fb_action;
		m->plen = v->fb_plen;
		return 1;
	}
	m->id = v->rule_id;
	m->act = v->action;
	m->plen = v->plen;
	return 1;
}

/* Rule ids the active set may still hold entries of, to be read as absent
 * (struct xc_config dead_base, dead_count: a replaced list's old hosts). */
struct xc_dead {
	__u32 base;
	__u32 count;
};

/* xc_take for the host bands, where a replaced list's entries may stay
 * past the flip: an entry of a dead rule id is absent. */
static __always_inline int xc_take_host(struct xc_match *m, const struct xc_rule_val *v,
					struct xc_dead dead, __u64 *now)
{
	if (v && v->rule_id - dead.base < dead.count)
		return 0;
	return xc_take(m, v, now);
}

/* Table `name` of the active set (struct xc_config.active): set A is the
 * plain name, set B the name with _b. */
#define XC_TBL(set, name) ((set) ? (void *)&name##_b : (void *)&name)

/* May a hash band of the set hold a key for bit `bit` of the presence
 * bitmap (xdpctl_abi.h, xc_bits)? */
static __always_inline int xc_present(__u32 set, __u32 bit)
{
	__u32 w = bit / 64;
	const __u64 *v = bpf_map_lookup_elem(XC_TBL(set, xc_bits), &w);

	return !v || ((*v >> (bit & 63)) & 1);
}

/*
 * The IPv4 host table's answer for (dir, addr): 1 with a live entry of a
 * rule that is not dead copied into m; 0 when xc_v4_l32 has no such entry
 * (none in the bucket, or one of a dead rule id); -1 when the bucket
 * overflowed and xc_v4_l32 must be asked. The slot word is read before its
 * rule id, which its writer stored first.
 */
static __always_inline int xc_oa4(struct xc_match *m, __u32 set, __u32 dir, __be32 addr,
				  struct xc_dead dead)
{
	__u32 idx = ((__u32)addr * XC_OA4_MUL) >> (32 - XC_OA4_BITS);
	const struct xc_oa4_bucket *b = bpf_map_lookup_elem(XC_TBL(set, xc_v4_oa), &idx);
	__u64 want = (__u64)(__u32)addr | (((__u64)XC_OA4_LIVE | ((__u64)dir << 2)) << 32);
	__u64 w;
	__u32 id;
	int i;

	if (!b)
		return -1;
#pragma unroll
	for (i = 0; i < XC_OA4_SLOTS; i++) {
		w = *(volatile const __u64 *)&b->slot[i];
		if ((w & (__u64)XC_OA4_KEY_MASK) != want)
			continue;
		asm volatile("" ::: "memory");
		id = b->rule_id[i];
		if (id - dead.base < dead.count)
			return 0;
		m->id = id;
		m->act = (w >> 40) & 0xff;
		m->plen = (w >> 48) & 0xff;
		return 1;
	}
	return b->overflow ? -1 : 0;
}

/* IPv4 bands: /32 hash (its host table first when trusted), /24 hash,
 * /16 array. addr in network order. The hashes are skipped when they hold nothing (cfg flags) or the presence
 * bitmap says no key of theirs covers the address's /24. */
static __always_inline void xc_match4(struct xc_match *m, __u32 set, __u32 dir, __be32 addr,
				      __u32 flags, struct xc_dead dead, __u64 *now)
{
	struct xc_key4 k = { .dir = dir, .addr = addr };
	__u32 skip = flags, idx;

	if ((flags & XC_CFG_HAVE_BITS) && !xc_present(set, (dir << 24) | (bpf_ntohl(addr) >> 8)))
		skip |= XC_CFG_NO_V4L32 | XC_CFG_NO_V4L24;
	if (!(skip & XC_CFG_NO_V4L32)) {
		int r = (flags & XC_CFG_HAVE_OA4) ? xc_oa4(m, set, dir, addr, dead) : -1;

		if (r > 0)
			return;
		if (r < 0 && xc_take_host(m, bpf_map_lookup_elem(XC_TBL(set, xc_v4_l32), &k), dead, now))
			return;
	}
	k.addr = addr & bpf_htonl(0xffffff00);
	if (!(skip & XC_CFG_NO_V4L24) &&
	    xc_take(m, bpf_map_lookup_elem(XC_TBL(set, xc_v4_l24), &k), now))
		return;
	idx = dir * XC_V4_L16_DIR_SLOTS + (bpf_ntohl(addr) >> 16);
	xc_take(m, bpf_map_lookup_elem(XC_TBL(set, xc_v4_l16), &idx), now);
}

/*
 * Longest live entry of an LPM trie whose key starts with its prefixlen and
 * has `base` fixed bits before the address: an expired entry (with no live
 * fallback) is skipped by asking again below its own length.
 */
static __always_inline void xc_trie_match(struct xc_match *m, void *trie, void *key, __u32 base,
					  __u64 *now)
{
	const struct xc_rule_val *v;
	int i;

#pragma unroll
	for (i = 0; i < XC_TRIE_RETRY; i++) {
		v = bpf_map_lookup_elem(trie, key);
		if (!v || xc_take(m, v, now) || v->plen == 0 || v->plen > 128)
			return;
		*(__u32 *)key = base + v->plen - 1;
	}
}

/* Longest live entry of xc_v6_trie; an expired one is skipped by asking
 * again for prefixes shorter than its own. */
static __always_inline void xc_trie6(struct xc_match *m, __u32 set, __u32 dir,
				     const union xc_addr *a, __u64 *now)
{
	struct xc_trie6_key k;

	k.prefixlen = XC_TRIE6_PLEN_BASE + 128;
	k.dir = dir;
	__builtin_memcpy(k.addr, a, 16);
	xc_trie_match(m, XC_TBL(set, xc_v6_trie), &k, XC_TRIE6_PLEN_BASE, now);
}

/*
 * IPv6: /128 hash; then t = trie match; then for /64, /48, /32 in turn a
 * live t longer than the band wins, else a live band entry wins; then t.
 * A hash band is skipped when it holds nothing (cfg flags); nothing is
 * looked up when the presence bitmap has no band key and no trie entry in
 * the address's /27.
 */
static __always_inline void xc_match6(struct xc_match *m, __u32 set, __u32 dir,
				      const union xc_addr *a, __u32 flags, struct xc_dead dead, __u64 *now)
{
	struct xc_match t = {};
	struct xc_key6 k;
	__u32 h;

	h = (bpf_ntohl(a->w[0]) >> XC_BITS_V6_SHIFT) & 0xffffff;
	if ((flags & XC_CFG_HAVE_BITS) && !xc_present(set, XC_BITS_V4_BITS + ((dir << 24) | h)))
		return;
	k.dir = dir;
	__builtin_memcpy(k.addr, a, 16);
	if (!(flags & XC_CFG_NO_V6L128) &&
	    xc_take_host(m, bpf_map_lookup_elem(XC_TBL(set, xc_v6_l128), &k), dead, now))
		return;
	if (flags & XC_CFG_HAVE_V6TRIE)
		xc_trie6(&t, set, dir, a, now);

	if (t.act && t.plen > 64)
		goto trie;
	__builtin_memset(k.addr + 8, 0, 8);
	if (!(flags & XC_CFG_NO_V6L64) &&
	    xc_take(m, bpf_map_lookup_elem(XC_TBL(set, xc_v6_l64), &k), now))
		return;
	if (t.act && t.plen > 48)
		goto trie;
	__builtin_memset(k.addr + 6, 0, 2);
	if (!(flags & XC_CFG_NO_V6L48) &&
	    xc_take(m, bpf_map_lookup_elem(XC_TBL(set, xc_v6_l48), &k), now))
		return;
	if (t.act && t.plen > 32)
		goto trie;
	__builtin_memset(k.addr + 4, 0, 2);
	if (!(flags & XC_CFG_NO_V6L32) &&
	    xc_take(m, bpf_map_lookup_elem(XC_TBL(set, xc_v6_l32), &k), now))
		return;
trie:
	*m = t;
}

/* Longest address match of the packet's source (dir 0) or destination. */
static __always_inline void xc_match_addr(struct xc_match *m, const struct xc_pkt *p, __u32 set,
					  __u32 dir, __u32 cfg_flags, struct xc_dead dead, __u64 *now)
{
	const union xc_addr *a = dir == XC_DIR_SRC ? &p->src : &p->dst;
	__u32 mapped = dir == XC_DIR_SRC ? XC_PKT_SRC_V4MAPPED : XC_PKT_DST_V4MAPPED;

	if (p->l3 == XC_L3_IPV4)
		xc_match4(m, set, dir, a->v4, cfg_flags, dead, now);
	else if (p->flags & mapped)
		xc_match4(m, set, dir, a->w[3], cfg_flags, dead, now);
	else
		xc_match6(m, set, dir, a, cfg_flags, dead, now);
}

/*
 * Port trie match for (dir, proto, dport, family, address of side dir).
 * A v4-mapped IPv6 address is looked up as family 4, like in the address
 * tables. Expired entries are skipped like in xc_trie6.
 */
static __always_inline void xc_match_port(struct xc_match *m, const struct xc_pkt *p, __u32 set,
					  __u32 dir, __u64 *now)
{
	const union xc_addr *a = dir == XC_DIR_SRC ? &p->src : &p->dst;
	__u32 mapped = dir == XC_DIR_SRC ? XC_PKT_SRC_V4MAPPED : XC_PKT_DST_V4MAPPED;
	struct xc_port_key k = {};
	__be32 a4;

	k.dir = dir;
	k.proto = p->proto;
	k.port = p->dport;
	if (p->l3 == XC_L3_IPV4 || (p->flags & mapped)) {
		k.prefixlen = XC_PORT_PLEN_BASE + 32;
		k.family = 4;
		a4 = p->l3 == XC_L3_IPV4 ? a->v4 : a->w[3];
		__builtin_memcpy(k.addr, &a4, 4);
	} else {
		k.prefixlen = XC_PORT_PLEN_BASE + 128;
		k.family = 6;
		__builtin_memcpy(k.addr, a, 16);
	}
	xc_trie_match(m, XC_TBL(set, xc_port_trie), &k, XC_PORT_PLEN_BASE, now);
}

/*
 * Management prefix covering the address of side dir (xc_mgmt: IPv4 as
 * ::ffff:a.b.c.d; the value's plen is the key length past the dir word).
 */
static __always_inline void xc_match_mgmt(struct xc_match *m, const struct xc_pkt *p, __u32 set,
					  __u32 dir, __u64 *now)
{
	const union xc_addr *a = dir == XC_DIR_SRC ? &p->src : &p->dst;
	struct xc_trie6_key k = {};

	k.prefixlen = XC_TRIE6_PLEN_BASE + 128;
	k.dir = dir;
	if (p->l3 == XC_L3_IPV4) {
		k.addr[10] = 0xff;
		k.addr[11] = 0xff;
		__builtin_memcpy(k.addr + 12, &a->v4, 4);
	} else {
		__builtin_memcpy(k.addr, a, 16);
	}
	xc_trie_match(m, XC_TBL(set, xc_mgmt), &k, XC_TRIE6_PLEN_BASE, now);
}

/* ---- accounting -------------------------------------------------------- */

/* One hit of rule id, counted in the slot of this hook's kind (the control
 * plane writes a valid kind; an unknown one counts nothing). */
static __always_inline void xc_rule_hit(__u32 id, __u32 hook, __u32 len, __u64 *now)
{
	struct xc_rule_stats *st = bpf_map_lookup_elem(&xc_rule_stats, &id);
	__u64 *h;

	if (!st)
		return;
	if (hook >= XC_RULE_HOOKS)
		return;
	h = &st->hits[2 * hook];
	__sync_fetch_and_add(&h[0], 1);
	__sync_fetch_and_add(&h[1], len);
	st->last_hit_ns = xc_now(now);
}

/* ---- the stage --------------------------------------------------------- */

/* Look up one of s, d, p_src, p_dst; 1 when it is an ALLOW (verdict known),
 * else remember the first DENY in *deny / *why. */
static __always_inline int xc_consider(const struct xc_match *m, struct xc_match *deny,
				       __u32 *why, __u32 reason)
{
	if (m->act == XC_ACT_ALLOW)
		return 1;
	if (m->act != XC_ACT_NONE && deny->act == XC_ACT_NONE) {
		*deny = *m;
		*why = reason;
	}
	return 0;
}

/*
 * The verdict over the tables of one set. `set` is a constant at each call
 * (xc_droplist_run calls it once per set), so every lookup names its map
 * directly and the verifier can inline it.
 */
static __always_inline int xc_droplist_match(const struct xc_pkt *p, __u32 set, __u32 policy,
					     __u32 flags, struct xc_dead dead, __u32 hook, __u32 *reason,
					     __u32 *rule)
{
	struct xc_match m = {}, deny = {};
	__u32 why = XC_DL_DROP_SRC;
	__u64 now = 0;

	if (flags & XC_CFG_HAVE_MGMT) {
		xc_match_mgmt(&m, p, set, XC_DIR_SRC, &now);
		if (m.act == XC_ACT_ALLOW)
			goto allow;
		if (flags & XC_CFG_HAVE_DST) {
			xc_match_mgmt(&m, p, set, XC_DIR_DST, &now);
			if (m.act == XC_ACT_ALLOW)
				goto allow;
		}
		m.act = XC_ACT_NONE;
	}
	xc_match_addr(&m, p, set, XC_DIR_SRC, flags, dead, &now);
	if (xc_consider(&m, &deny, &why, XC_DL_DROP_SRC))
		goto allow;
	if (flags & XC_CFG_HAVE_DST) {
		m.act = XC_ACT_NONE;
		xc_match_addr(&m, p, set, XC_DIR_DST, flags, dead, &now);
		if (xc_consider(&m, &deny, &why, XC_DL_DROP_DST))
			goto allow;
	}
	if ((flags & XC_CFG_HAVE_PORT) && (p->flags & XC_PKT_PORTS)) {
		m.act = XC_ACT_NONE;
		xc_match_port(&m, p, set, XC_DIR_SRC, &now);
		if (xc_consider(&m, &deny, &why, XC_DL_DROP_PORT))
			goto allow;
		m.act = XC_ACT_NONE;
		xc_match_port(&m, p, set, XC_DIR_DST, &now);
		if (xc_consider(&m, &deny, &why, XC_DL_DROP_PORT))
			goto allow;
	}

	if (deny.act != XC_ACT_NONE) {
		xc_rule_hit(deny.id, hook, p->len, &now);
		*rule = deny.id;
		*reason = why;
		return XC_DROP;
	}
	if (policy != XC_POLICY_DENY) {
		*reason = XC_DL_PASS_NOMATCH;
		return XC_PASS;
	}
	if (p->flags & XC_PKT_ND) {
		*reason = XC_DL_PASS_ALWAYS;
		return XC_PASS;
	}
	*reason = XC_DL_DROP_POLICY;
	return XC_DROP;

allow:
	xc_rule_hit(m.id, hook, p->len, &now);
	*rule = m.id;
	*reason = XC_DL_PASS_ALLOW;
	return XC_PASS;
}

/* The drop list over a parsed packet at a hook of kind `hook` (enum
 * xc_hook_kind: where its rule hits are counted). */
static __always_inline int xc_droplist_run(const struct xc_pkt *p, __u32 hook, struct xc_dl_result *res)
{
	__u32 policy = XC_READ(xc_cfg.policy), flags = XC_READ(xc_cfg.flags), set = XC_READ(xc_cfg.active);
	struct xc_dead dead = { .base = XC_READ(xc_cfg.dead_base), .count = XC_READ(xc_cfg.dead_count) };
	__u32 reason, rule = 0;
	int verdict = XC_PASS;

	if (p->l3 == XC_L3_MALFORMED) {
		if (policy == XC_POLICY_DENY) {
			reason = XC_DL_DROP_MALFORMED;
			verdict = XC_DROP;
		} else {
			reason = XC_DL_PASS_MALFORMED;
		}
	} else if (p->l3 != XC_L3_IPV4 && p->l3 != XC_L3_IPV6) {
		reason = policy == XC_POLICY_DENY ? XC_DL_PASS_ALWAYS : XC_DL_PASS_NOMATCH;
	} else if (set) {
		verdict = xc_droplist_match(p, 1, policy, flags, dead, hook, &reason, &rule);
	} else {
		verdict = xc_droplist_match(p, 0, policy, flags, dead, hook, &reason, &rule);
	}
	xc_count(&xc_dl_cnt, reason, p->len);
	res->reason = reason;
	res->rule_id = rule;
	return verdict;
}

#endif /* XDPCTL_DROPLIST_H */
