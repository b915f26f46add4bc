/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xdpctl L4 load balancer stage (chain slot XC_STAGE_LB), written once for
 * XDP and TC (docs/lb.md):
 *
 *   VIP = xc_lb_vips[(dst, proto, dport)], else [(dst, proto, 0)];
 *   backend = the flow's xc_lb_conn entry (not for a TCP SYN) if that
 *   backend is active or draining, else the VIP's Maglev table at
 *   flow hash % ring_size (then the conn entry is written);
 *   rewrite the destination MAC to the backend's, the source MAC to the
 *   interface's own, and send the frame back out (direct server return).
 *
 * Packets it does not balance go on to the next chain slot, untouched.
 * Reads the frame again only for the TCP flags and an ICMP error's inner
 * headers (the parser's struct xc_pkt has neither), and writes only the
 * Ethernet addresses.
 */
#ifndef XDPCTL_LB_H
#define XDPCTL_LB_H

#include <linux/icmpv6.h>
#include <linux/tcp.h>

#include "parse.h"
#include "stage.h"

#define XC_MAPS_LB
#include "xdpctl_maps.h"

/*
 * The ICMP header of an error message (RFC 792); linux/icmp.h would pull
 * in libc headers through linux/if.h.
 */
struct xc_lb_icmp {
	__u8   type;
	__u8   code;
	__be16 check;
	__be32 rest;
};

#define XC_LB_ICMP_DEST_UNREACH 3 /* type: destination unreachable */
#define XC_LB_ICMP_FRAG_NEEDED  4 /* code: fragmentation needed and DF set */

/* Stage verdict beside XC_PASS: send the rewritten frame out again. */
enum xc_lb_verdict {
	XC_LB_FORWARD = 2,
};

/* The flow, client -> VIP; laid out as struct xc_lb_conn_key (its key in
 * xc_lb_conn), with word-aligned addresses for the hash. */
struct xc_lb_flow {
	union xc_addr src;
	union xc_addr dst;
	__be16 sport;
	__be16 dport;
	__u8   proto;
	__u8   family;
	__u8   pad[2];
};

_Static_assert(sizeof(struct xc_lb_flow) == sizeof(struct xc_lb_conn_key),
	       "struct xc_lb_flow is the conn key");

/* ---- the flow hash: MurmurHash3 (x86, 32 bit) over ten words ----------- */

static __always_inline __u32 xc_lb_rotl(__u32 x, __u32 r)
{
	return (x << r) | (x >> (32 - r));
}

static __always_inline __u32 xc_lb_mix(__u32 h, __u32 w)
{
	w *= 0xcc9e2d51;
	w = xc_lb_rotl(w, 15);
	w *= 0x1b873593;
	h ^= w;
	h = xc_lb_rotl(h, 13);
	return h * 5 + 0xe6546b64;
}

/*
 * Words, each read big-endian: src[0..3], dst[0..3], sport << 16 | dport,
 * proto (IPv4: the address is word 0, the others 0). Python: maglev.flow_hash.
 */
static __always_inline __u32 xc_lb_hash(const struct xc_lb_flow *f)
{
	__u32 h = XC_LB_HASH_SEED;
	int i;

#pragma unroll
	for (i = 0; i < 4; i++)
		h = xc_lb_mix(h, bpf_ntohl(f->src.w[i]));
#pragma unroll
	for (i = 0; i < 4; i++)
		h = xc_lb_mix(h, bpf_ntohl(f->dst.w[i]));
	h = xc_lb_mix(h, ((__u32)bpf_ntohs(f->sport) << 16) | bpf_ntohs(f->dport));
	h = xc_lb_mix(h, f->proto);
	h ^= 40;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* ---- the frame again: L4 header, TCP flags, ICMP inner headers --------- */

/* The L4 header right behind the IP header, or NULL: IPv6 with extension
 * headers is not walked again. tags: VLAN tags inside the frame. */
static __always_inline void *xc_lb_l4(const struct xc_pkt *p, void *data, void *data_end,
				      __u32 tags)
{
	/* tags <= XC_VLAN_MAX; the mask bounds it for the verifier. */
	void *l3 = data + sizeof(struct ethhdr) + (tags & 3) * sizeof(struct xc_vlan_tag);

	if (p->l3 == XC_L3_IPV4) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > data_end)
			return NULL;
		return l3 + ip->ihl * 4;
	} else {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != p->proto)
			return NULL;
		return ip6 + 1;
	}
}

/* A TCP SYN (without ACK). */
static __always_inline int xc_lb_syn(void *l4, void *data_end)
{
	struct tcphdr *th = l4;

	if (!l4 || (void *)(th + 1) > data_end)
		return 0;
	return th->syn && !th->ack;
}

/* The ports of an inner TCP/UDP header, swapped into the flow. */
static __always_inline int xc_lb_inner_ports(struct xc_lb_flow *f, void *l4, void *data_end)
{
	__be16 *ports = l4;

	if ((void *)(ports + 2) > data_end)
		return 0;
	if (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP)
		return 0;
	f->sport = ports[1];
	f->dport = ports[0];
	return 1;
}

/*
 * ICMP "fragmentation needed" / ICMPv6 "packet too big" about a packet a
 * backend sent from a VIP: its inner header is VIP -> client; the flow is
 * that tuple swapped. Returns 1 with f filled, else 0.
 */
static __always_inline int xc_lb_icmp_flow(struct xc_lb_flow *f, const struct xc_pkt *p,
					   void *l4, void *data_end)
{
	if (!l4)
		return 0;
	if (p->l3 == XC_L3_IPV4) {
		struct xc_lb_icmp *ic = l4;
		struct iphdr *in = (void *)(ic + 1);

		if ((void *)(in + 1) > data_end || ic->type != XC_LB_ICMP_DEST_UNREACH ||
		    ic->code != XC_LB_ICMP_FRAG_NEEDED || in->ihl < 5)
			return 0;
		f->family = 4;
		f->proto = in->protocol;
		f->src.v4 = in->daddr;
		f->dst.v4 = in->saddr;
		return xc_lb_inner_ports(f, (void *)in + in->ihl * 4, data_end);
	} else {
		struct icmp6hdr *ic = l4;
		struct ipv6hdr *in = (void *)(ic + 1);

		if ((void *)(in + 1) > data_end || ic->icmp6_type != ICMPV6_PKT_TOOBIG)
			return 0;
		f->family = 6;
		f->proto = in->nexthdr;
		__builtin_memcpy(&f->src, &in->daddr, 16);
		__builtin_memcpy(&f->dst, &in->saddr, 16);
		return xc_lb_inner_ports(f, in + 1, data_end);
	}
}

/* ---- the decision ------------------------------------------------------ */

/* The flow of a packet sent to a VIP, from the parser's view. */
static __always_inline void xc_lb_pkt_flow(struct xc_lb_flow *f, const struct xc_pkt *p)
{
	f->src = p->src;
	f->dst = p->dst;
	f->family = p->l3 == XC_L3_IPV4 ? 4 : 6;
	f->proto = p->proto;
	if (p->flags & XC_PKT_PORTS) {
		f->sport = p->sport;
		f->dport = p->dport;
	}
}

/* The VIP of a flow: (dst, proto, dport), else (dst, proto, 0). */
static __always_inline const struct xc_lb_vip *xc_lb_find_vip(const struct xc_lb_flow *f)
{
	struct xc_lb_vip_key k = {};
	const struct xc_lb_vip *v;

	__builtin_memcpy(k.addr, &f->dst, 16);
	k.proto = f->proto;
	k.family = f->family;
	if (f->dport) {
		k.port = f->dport;
		v = bpf_map_lookup_elem(&xc_lb_vips, &k);
		if (v)
			return v;
		k.port = 0;
	}
	return bpf_map_lookup_elem(&xc_lb_vips, &k);
}

/* A backend that may take the flow: new flows need it active, established
 * ones active or draining; either way its MAC must be known. */
static __always_inline const struct xc_lb_backend *xc_lb_usable(__u32 id, int established)
{
	const struct xc_lb_backend *be;

	if (!id)
		return NULL;
	be = bpf_map_lookup_elem(&xc_lb_backends, &id);
	if (!be || !(be->flags & XC_LB_BE_HAVE_MAC))
		return NULL;
	if (be->state == XC_LB_BE_ACTIVE ||
	    (established && be->state == XC_LB_BE_DRAINING))
		return be;
	return NULL;
}

/* The backend of a conn entry that may still take its flow, else NULL. */
static __always_inline const struct xc_lb_backend *
xc_lb_conn_backend(const struct xc_lb_conn *c, __u32 *id)
{
	const struct xc_lb_backend *be;

	if (!c)
		return NULL;
	be = xc_lb_usable(c->backend, 1);
	if (be)
		*id = c->backend;
	return be;
}

/*
 * The ring's choice for a flow without a usable conn entry: *id and the
 * reason. vip: the VIP value copied whole (one lookup, one element).
 * track: write the conn entry (not for ICMP errors).
 */
static __always_inline const struct xc_lb_backend *
xc_lb_ring_choose(const struct xc_lb_flow *f, const struct xc_lb_vip *vip, int track,
		  __u32 *id, __u32 *reason)
{
	const struct xc_lb_backend *be;
	struct xc_lb_conn nc;
	__u32 slot, *ring_id;

	if (!vip->ring_size) {
		*reason = XC_LB_PASS_NOBACKEND;
		return NULL;
	}
	slot = vip->ring_base + xc_lb_hash(f) % vip->ring_size;
	ring_id = bpf_map_lookup_elem(&xc_lb_ring, &slot);
	if (!ring_id) {
		*reason = XC_LB_PASS_RINGMISS;
		return NULL;
	}
	*id = *ring_id;
	be = xc_lb_usable(*id, 0);
	if (!be) {
		*reason = XC_LB_PASS_NOBACKEND;
		return NULL;
	}
	*reason = XC_LB_FWD_NEW;
	if (track) {
		nc.backend = *id;
		nc.vip_id = vip->vip_id;
		bpf_map_update_elem(&xc_lb_conn, f, &nc, BPF_ANY);
	}
	return be;
}

/* ---- accounting -------------------------------------------------------- */

static __always_inline void xc_lb_stat(void *map, __u32 idx, __u32 len, int new_flow)
{
	struct xc_lb_stats *st = bpf_map_lookup_elem(map, &idx);

	if (st) {
		st->packets += 1;
		st->bytes += len;
		st->new_flows += new_flow;
	}
}

/* ---- the stage --------------------------------------------------------- */

/*
 * The flow of a packet (or the flow an ICMP error is about, then *icmp is
 * set); returns XC_LB_MAX when there is one, else the reason to pass. A
 * non-first fragment's flow has no ports.
 */
static __always_inline __u32 xc_lb_flow_of(struct xc_lb_flow *f, const struct xc_pkt *p,
					   void *l4, void *data_end, int *icmp)
{
	if (p->l3 != XC_L3_IPV4 && p->l3 != XC_L3_IPV6)
		return XC_LB_PASS_NOTIP;
	switch (p->l4) {
	case XC_L4_TCP:
	case XC_L4_UDP:
	case XC_L4_FRAGMENT:
		xc_lb_pkt_flow(f, p);
		return XC_LB_MAX;
	case XC_L4_ICMP:
	case XC_L4_ICMPV6:
		*icmp = 1;
		return xc_lb_icmp_flow(f, p, l4, data_end) ? XC_LB_MAX : XC_LB_PASS_NOVIP;
	default:
		return XC_LB_PASS_NOVIP;
	}
}

/*
 * The backend of a flow and the VIP it is counted for (*vip_id), *id and
 * *reason. A TCP/UDP packet that is not a SYN tries its conn entry first:
 * an established flow costs one hash lookup and no VIP lookup, as long as
 * its backend slot still names the entry's VIP (deleting a VIP clears its
 * backends' slots). Else the VIP decides: a VIP with XC_LB_VIP_HASH_L3
 * tracks and hashes the flow without ports, a non-first fragment needs
 * one; then the conn entry (unless a SYN), then the ring.
 */
static __always_inline const struct xc_lb_backend *
xc_lb_decide(struct xc_lb_flow *f, const struct xc_pkt *p, int syn, int icmp,
	     __u32 *id, __u32 *vip_id, __u32 *reason)
{
	const struct xc_lb_backend *be;
	const struct xc_lb_conn *c = NULL;
	const struct xc_lb_vip *v;
	struct xc_lb_vip vip;

	if (!syn && (p->l4 == XC_L4_TCP || p->l4 == XC_L4_UDP) && !icmp) {
		c = bpf_map_lookup_elem(&xc_lb_conn, f);
		be = xc_lb_conn_backend(c, id);
		if (be && be->vip_id == c->vip_id) {
			*vip_id = c->vip_id;
			*reason = XC_LB_FWD_CONN;
			return be;
		}
	}
	v = xc_lb_find_vip(f);
	if (!v) {
		*reason = XC_LB_PASS_NOVIP;
		return NULL;
	}
	vip = *v;
	*vip_id = vip.vip_id;
	if (vip.flags & XC_LB_VIP_HASH_L3) {
		f->sport = 0;
		f->dport = 0;
		c = NULL;
	} else if (p->l4 == XC_L4_FRAGMENT) {
		*reason = XC_LB_PASS_FRAGMENT;
		return NULL;
	}
	if (!syn && !c)
		c = bpf_map_lookup_elem(&xc_lb_conn, f);
	be = xc_lb_conn_backend(c, id);
	if (be) {
		*reason = XC_LB_FWD_CONN;
		return be;
	}
	return xc_lb_ring_choose(f, &vip, !icmp, id, reason);
}

/*
 * Balance one packet. data/data_end: the frame (writable); tags: VLAN tags
 * inside it (the parser's depth less a tag the kernel stripped). Returns
 * XC_PASS or XC_LB_FORWARD.
 */
static __always_inline int xc_lb_run(const struct xc_pkt *p, void *data, void *data_end,
				     __u32 tags)
{
	const struct xc_lb_backend *be;
	const struct xc_lb_hook *hook;
	struct xc_lb_flow f = {};
	struct ethhdr *eth = data;
	__u32 zero = 0, id = 0, vip_id = 0, reason;
	int icmp = 0, syn = 0;
	void *l4 = NULL;

	hook = bpf_map_lookup_elem(&xc_lb_hook, &zero);
	if (!hook || !(hook->flags & XC_LB_HOOK_ON)) {
		reason = XC_LB_PASS_OFF;
		goto pass;
	}
	if (p->l4 == XC_L4_TCP || p->l4 == XC_L4_ICMP || p->l4 == XC_L4_ICMPV6)
		l4 = xc_lb_l4(p, data, data_end, tags);
	reason = xc_lb_flow_of(&f, p, l4, data_end, &icmp);
	if (reason != XC_LB_MAX)
		goto pass;
	if (p->l4 == XC_L4_TCP)
		syn = xc_lb_syn(l4, data_end);
	be = xc_lb_decide(&f, p, syn, icmp, &id, &vip_id, &reason);
	if (!be || (void *)(eth + 1) > data_end)
		goto pass;
	__builtin_memcpy(eth->h_dest, be->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, hook->mac, ETH_ALEN);
	if (icmp)
		reason = XC_LB_FWD_ICMP;
	xc_count(&xc_lb_cnt, reason, p->len);
	xc_lb_stat(&xc_lb_vip_cnt, vip_id, p->len, reason == XC_LB_FWD_NEW);
	xc_lb_stat(&xc_lb_be_cnt, id, p->len, reason == XC_LB_FWD_NEW);
	return XC_LB_FORWARD;
pass:
	xc_count(&xc_lb_cnt, reason, p->len);
	return XC_PASS;
}

#endif /* XDPCTL_LB_H */
