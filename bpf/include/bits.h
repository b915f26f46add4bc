/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xdpctl presence bitmap builder (xdpctl_abi.h, xc_bits): sets the bit of
 * every key of a rule set's hash bands, after clearing the bitmap when
 * asked. Run by the control plane with BPF_PROG_TEST_RUN on a set nothing
 * reads (the standby set), never attached. Frame byte 0: the set (0: A,
 * 1: B); byte 1: 1 to clear first; byte 2: the bands to walk, bit i for
 * the i-th of l32, l24 (IPv4), l128, l64, l48, l32 (IPv6) (an empty hash
 * costs a walk of all its buckets).
 */
#ifndef XDPCTL_BITS_H
#define XDPCTL_BITS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define XC_MAPS_DROPLIST
#include "xdpctl_maps.h"

static __always_inline __u32 xc_bit4(const struct xc_key4 *k)
{
	return (k->dir << 24) | (bpf_ntohl(k->addr) >> 8);
}

static __always_inline __u32 xc_bit6(const struct xc_key6 *k)
{
	__u32 top = ((__u32)k->addr[0] << 24) | ((__u32)k->addr[1] << 16) |
		    ((__u32)k->addr[2] << 8) | k->addr[3];

	return XC_BITS_V4_BITS + ((k->dir << 24) | ((top >> XC_BITS_V6_SHIFT) & 0xffffff));
}

static __always_inline void xc_bit_set(void *bits, __u32 bit)
{
	__u32 w = bit / 64;
	__u64 *v = bpf_map_lookup_elem(bits, &w);

	if (v)
		*v |= 1ULL << (bit & 63); /* plain: the builder is the set's only writer */
}

/* Callbacks per set, each naming its bitmap directly: one per key family
 * of the hash bands, and one that clears a word. */
#define XC_BITS_CBS(sfx) \
static long xc_bits_cb4##sfx(void *map, const void *key, void *val, void *ctx) \
{ \
	xc_bit_set(&xc_bits##sfx, xc_bit4(key)); \
	return 0; \
} \
static long xc_bits_cb6##sfx(void *map, const void *key, void *val, void *ctx) \
{ \
	xc_bit_set(&xc_bits##sfx, xc_bit6(key)); \
	return 0; \
} \
static long xc_bits_zero##sfx(__u32 i, void *ctx) \
{ \
	__u64 *v = bpf_map_lookup_elem(&xc_bits##sfx, &i); \
	if (v) \
		*v = 0; \
	return 0; \
}
XC_BITS_CBS()
XC_BITS_CBS(_b)

#define XC_BITS_WALK(mask, i, band, cb) do { \
	if ((mask) & (1U << (i))) \
		bpf_for_each_map_elem(&band, cb, 0, 0); \
} while (0)

#define XC_BITS_BUILD(sfx, exact, mask) do { \
	if (exact) \
		bpf_loop(XC_BITS_WORDS, xc_bits_zero##sfx, 0, 0); \
	XC_BITS_WALK(mask, 0, xc_v4_l32##sfx, xc_bits_cb4##sfx); \
	XC_BITS_WALK(mask, 1, xc_v4_l24##sfx, xc_bits_cb4##sfx); \
	XC_BITS_WALK(mask, 2, xc_v6_l128##sfx, xc_bits_cb6##sfx); \
	XC_BITS_WALK(mask, 3, xc_v6_l64##sfx, xc_bits_cb6##sfx); \
	XC_BITS_WALK(mask, 4, xc_v6_l48##sfx, xc_bits_cb6##sfx); \
	XC_BITS_WALK(mask, 5, xc_v6_l32##sfx, xc_bits_cb6##sfx); \
} while (0)

static __always_inline int xc_bits_run(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *end = (void *)(long)ctx->data_end;

	if (data + 3 > end)
		return XDP_ABORTED;
	if (data[0])
		XC_BITS_BUILD(_b, data[1], data[2]);
	else
		XC_BITS_BUILD(, data[1], data[2]);
	return XDP_PASS;
}

#endif /* XDPCTL_BITS_H */
