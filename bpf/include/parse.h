/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xdpctl packet parser: the one classifier of L2/L3/L4 shared by every XDP
 * and TC program (docs/internals.md, "The parser").
 *
 * Input is the frame [data, data_end) plus the number of VLAN tags the
 * kernel has already stripped from it (TC: skb->vlan_present, XDP: 0), so
 * both hooks classify a frame identically. Output is struct xc_pkt.
 *
 * Written for the verifier: constant-size bounds checks right before every
 * header access, fixed-trip loops that clang unrolls, no packet access
 * after the parser returns (stages only read struct xc_pkt).
 */
#ifndef XDPCTL_PARSE_H
#define XDPCTL_PARSE_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xdpctl_abi.h"

/* struct xc_pkt.flags */
#define XC_PKT_PORTS        (1U << 0) /* sport/dport valid (TCP/UDP/SCTP header read) */
#define XC_PKT_SRC_V4MAPPED (1U << 1) /* IPv6 source is ::ffff:a.b.c.d (a.b.c.d in src.w[3]) */
#define XC_PKT_DST_V4MAPPED (1U << 2) /* same for the destination */
#define XC_PKT_ND           (1U << 3) /* ICMPv6 neighbour discovery, types 133-137 */
#define XC_PKT_TRUNC        (1U << 4) /* a header ran past data_end (TC may pull and retry) */

union xc_addr {
	__be32 v4;     /* IPv4 */
	__be32 w[4];   /* IPv6 as four network-order words */
	__u8   b[16];
};

struct xc_pkt {
	union xc_addr src;
	union xc_addr dst;
	__u32  len;    /* frame bytes on the wire, without FCS */
	__be16 sport;  /* network order, valid with XC_PKT_PORTS */
	__be16 dport;
	__u8   l3;     /* enum xc_l3 */
	__u8   l4;     /* enum xc_l4 */
	__u8   proto;  /* IP protocol / last IPv6 next header */
	__u8   vlan;   /* VLAN depth, stripped tag included: 0, 1, 2 */
	__u8   flags;  /* XC_PKT_* */
	__u8   pad[3];
} __attribute__((aligned(8))); /* cleared with 8-byte stores */

/* The first 8 bytes of any IPv6 extension header the parser walks. */
struct xc_ext6 {
	__u8   nexthdr;
	__u8   hdrlen;
	__be16 frag_off; /* fragment header only: offset << 3 | flags */
	__be32 rest;
};

struct xc_vlan_tag {
	__be16 tci;
	__be16 proto;
};

static __always_inline int xc_is_vlan(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) ||
	       proto == bpf_htons(ETH_P_8021AD) ||
	       proto == bpf_htons(ETH_P_QINQ1);
}

static __always_inline int xc_is_ext6(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_FRAGMENT ||
	       nh == IPPROTO_DSTOPTS || nh == IPPROTO_AH;
}

static __always_inline void xc_l4_malformed(struct xc_pkt *p)
{
	p->l4 = XC_L4_MALFORMED;
	p->flags |= XC_PKT_TRUNC;
}

/* L4 by protocol number, the same for IPv4 and IPv6; p->proto is set. */
static __always_inline void xc_parse_l4(struct xc_pkt *p, void *l4, void *data_end)
{
	__be16 *ports = l4;

	switch (p->proto) {
	case IPPROTO_TCP:
		if (l4 + XC_L4_HLEN_TCP > data_end)
			goto trunc;
		p->l4 = XC_L4_TCP;
		break;
	case IPPROTO_UDP:
		if (l4 + XC_L4_HLEN_UDP > data_end)
			goto trunc;
		p->l4 = XC_L4_UDP;
		break;
	case IPPROTO_SCTP:
		if (l4 + XC_L4_HLEN_SCTP > data_end)
			goto trunc;
		p->l4 = XC_L4_SCTP;
		break;
	case IPPROTO_ICMP:
		if (l4 + XC_L4_HLEN_ICMP > data_end)
			goto trunc;
		p->l4 = XC_L4_ICMP;
		return;
	case IPPROTO_ICMPV6:
		if (l4 + XC_L4_HLEN_ICMP > data_end)
			goto trunc;
		p->l4 = XC_L4_ICMPV6;
		if (p->l3 == XC_L3_IPV6) {
			__u8 type = *(__u8 *)l4;

			if (type >= XC_ICMPV6_ND_MIN && type <= XC_ICMPV6_ND_MAX)
				p->flags |= XC_PKT_ND;
		}
		return;
	case IPPROTO_GRE:
		if (l4 + XC_L4_HLEN_GRE > data_end)
			goto trunc;
		p->l4 = XC_L4_GRE;
		return;
	default:
		p->l4 = XC_L4_OTHER;
		return;
	}
	/* TCP, UDP and SCTP all start with source port, destination port. */
	p->sport = ports[0];
	p->dport = ports[1];
	p->flags |= XC_PKT_PORTS;
	return;
trunc:
	xc_l4_malformed(p);
}

/* The rest of an IPv4 header known to be whole and valid, its options
 * ending at l4: addresses, protocol, and a first fragment's L4 header. */
static __always_inline void xc_ipv4_body(struct xc_pkt *p, struct iphdr *ip, void *l4, void *data_end)
{
	p->l3 = XC_L3_IPV4;
	p->proto = ip->protocol;
	p->src.v4 = ip->saddr;
	p->dst.v4 = ip->daddr;
	if (ip->frag_off & bpf_htons(0x1fff)) {
		p->l4 = XC_L4_FRAGMENT;
		return;
	}
	xc_parse_l4(p, l4, data_end);
}

static __always_inline void xc_parse_ipv4(struct xc_pkt *p, void *l3, void *data_end)
{
	struct iphdr *ip = l3;
	__u32 hlen;

	if ((void *)(ip + 1) > data_end) {
		p->flags |= XC_PKT_TRUNC;
		goto malformed;
	}
	if (ip->version != 4 || ip->ihl < 5)
		goto malformed;
	hlen = ip->ihl * 4;
	if (l3 + hlen > data_end) {
		p->flags |= XC_PKT_TRUNC;
		goto malformed;
	}
	if (bpf_ntohs(ip->tot_len) < hlen)
		goto malformed;
	xc_ipv4_body(p, ip, l3 + hlen, data_end);
	return;
malformed:
	p->l3 = XC_L3_MALFORMED;
}

static __always_inline int xc_v4mapped(const union xc_addr *a)
{
	return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == bpf_htonl(0xffff);
}

/*
 * The verifier explores every path through the extension header walk, and
 * paths that reach the same point with different header lengths behind them
 * would be explored again and again (and the L4 parser after them too).
 * Passing the running offset through this global function makes the
 * verifier forget its exact value (a global function is checked on its
 * own; its caller only learns "some scalar"), so all paths meet in one
 * state. The barrier keeps the compiler from seeing through it. It runs
 * once per extension header only.
 */
__noinline __u64 xc_opaque(__u64 v)
{
	asm volatile("" : "+r"(v));
	return v;
}

static __always_inline void xc_parse_ipv6(struct xc_pkt *p, void *data, void *l3,
					  void *data_end)
{
	struct ipv6hdr *ip6 = l3;
	__u64 off;
	__u8 nh;
	int i;

	if ((void *)(ip6 + 1) > data_end) {
		p->l3 = XC_L3_MALFORMED;
		p->flags |= XC_PKT_TRUNC;
		return;
	}
	if (ip6->version != 6) {
		p->l3 = XC_L3_MALFORMED;
		return;
	}
	p->l3 = XC_L3_IPV6;
	__builtin_memcpy(&p->src, &ip6->saddr, 16);
	__builtin_memcpy(&p->dst, &ip6->daddr, 16);
	if (xc_v4mapped(&p->src))
		p->flags |= XC_PKT_SRC_V4MAPPED;
	if (xc_v4mapped(&p->dst))
		p->flags |= XC_PKT_DST_V4MAPPED;

	nh = ip6->nexthdr;
	/* From here on an offset from data (pointer difference: opaque to the
	 * verifier, hence the bound). */
	off = (void *)(ip6 + 1) - data;
	if (off > XC_PARSE_MAX_OFF) {
		p->l4 = XC_L4_MALFORMED;
		return;
	}
#pragma unroll
	for (i = 0; i < XC_IPV6_EXT_MAX; i++) {
		struct xc_ext6 *e;
		__u32 hlen;

		if (!xc_is_ext6(nh))
			break;
		p->proto = nh;
		e = data + off;
		if ((void *)(e + 1) > data_end) {
			xc_l4_malformed(p);
			return;
		}
		if (nh == IPPROTO_FRAGMENT) {
			if (e->frag_off & bpf_htons(0xfff8)) {
				p->proto = e->nexthdr;
				p->l4 = XC_L4_FRAGMENT;
				return;
			}
			hlen = sizeof(*e); /* the whole fragment header */
		} else if (nh == IPPROTO_AH) {
			hlen = ((__u32)e->hdrlen + 2) << 2;
		} else {
			hlen = ((__u32)e->hdrlen + 1) << 3;
		}
		nh = e->nexthdr;
		if ((void *)e + hlen > data_end) {
			xc_l4_malformed(p);
			return;
		}
		off = xc_opaque(off + hlen);
		if (off > XC_PARSE_MAX_OFF) {
			p->l4 = XC_L4_MALFORMED;
			return;
		}
	}
	p->proto = nh;
	if (xc_is_ext6(nh)) {
		/* more than XC_IPV6_EXT_MAX extension headers */
		p->l4 = XC_L4_MALFORMED;
		return;
	}
	xc_parse_l4(p, data + off, data_end);
}

/*
 * The common frame first: untagged IPv4 without options (a header of a
 * fixed 20 bytes, checked in one pass). Returns 0, writing nothing, for any
 * other frame, which the general steps below classify.
 */
static __always_inline int xc_parse_fast4(struct xc_pkt *p, void *data, void *data_end)
{
	struct iphdr *ip = data + sizeof(struct ethhdr);

	if ((void *)(ip + 1) > data_end || *(__be16 *)(data + 12) != bpf_htons(ETH_P_IP) ||
	    *(__u8 *)ip != 0x45 || bpf_ntohs(ip->tot_len) < sizeof(*ip))
		return 0;
	xc_ipv4_body(p, ip, ip + 1, data_end);
	return 1;
}

/*
 * Classify the frame [data, data_end). stripped_vlan: tags the kernel
 * removed before the program saw the frame (0 or 1); len: bytes to count.
 */
static __always_inline void xc_parse(struct xc_pkt *p, void *data, void *data_end,
				     __u32 stripped_vlan, __u32 len)
{
	struct ethhdr *eth = data;
	void *cur;
	__be16 proto;
	__u32 depth = stripped_vlan ? 1 : 0;
	int i;

	__builtin_memset(p, 0, sizeof(*p));
	p->len = len;
	p->vlan = depth;
	if (xc_parse_fast4(p, data, data_end))
		return;

	if ((void *)(eth + 1) > data_end) {
		p->l3 = XC_L3_MALFORMED;
		p->flags |= XC_PKT_TRUNC;
		return;
	}
	proto = eth->h_proto;
	cur = eth + 1;

#pragma unroll
	for (i = 0; i < XC_VLAN_MAX; i++) {
		struct xc_vlan_tag *tag = cur;

		if (!xc_is_vlan(proto))
			break;
		if (depth >= XC_VLAN_MAX) {
			p->l3 = XC_L3_OTHER; /* a third tag */
			return;
		}
		if ((void *)(tag + 1) > data_end) {
			p->l3 = XC_L3_MALFORMED;
			p->flags |= XC_PKT_TRUNC;
			return;
		}
		proto = tag->proto;
		cur = tag + 1;
		depth++;
		p->vlan = depth;
	}

	if (proto == bpf_htons(ETH_P_IP))
		xc_parse_ipv4(p, cur, data_end);
	else if (proto == bpf_htons(ETH_P_IPV6))
		xc_parse_ipv6(p, data, cur, data_end);
	else if (proto == bpf_htons(ETH_P_ARP))
		p->l3 = XC_L3_ARP;
	else
		p->l3 = XC_L3_OTHER; /* includes a third VLAN tag */
}

#endif /* XDPCTL_PARSE_H */
