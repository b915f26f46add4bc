/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * xdpctl presence bitmap builder (xdpctl_abi.h, xc_bits), run by the
 * control plane with BPF_PROG_TEST_RUN on a set nothing reads (the standby
 * set), never attached. Frame byte 0: the set (0: A, 1: B); byte 3: the
 * operation:
 *   XC_BITS_OP_BUILD  set the bit of every key of the set's hash bands,
 *                     after clearing the bitmap when byte 1 is 1; byte 2:
 *                     the bands to walk, bit i for the i-th of l32, l24
 *                     (IPv4), l128, l64, l48, l32 (IPv6) (an empty hash
 *                     costs a walk of all its buckets);
 *   XC_BITS_OP_COPY   give the set the bit words of the other set (not the
 *                     mark word);
 *   XC_BITS_OP_ZERO   zero the xc_rule_stats entries of ids start .. start +
 *                     count - 1 (u32 each, bytes 4..7 and 8..11, host
 *                     order; count at most 1 << 23, bpf_loop's limit).
 * Answers XDP_PASS when done, XDP_ABORTED on a frame it cannot read.
 */
#ifndef XDPCTL_BITS_H
#define XDPCTL_BITS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define XC_MAPS_DROPLIST
#include "xdpctl_maps.h"

enum {
	XC_BITS_OP_BUILD = 0,
	XC_BITS_OP_COPY  = 1,
	XC_BITS_OP_ZERO  = 2,
};

/* Words (or rule stats) per bpf_loop step: one step per word would cost
 * more than the word's copy. */
#define XC_BITS_STRIDE 16
_Static_assert(XC_BITS_WORDS % XC_BITS_STRIDE == 0, "the bitmap goes XC_BITS_STRIDE words a step");

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
 * of the hash bands, and one that clears XC_BITS_STRIDE words. */
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
	_Pragma("unroll") \
	for (__u32 j = 0; j < XC_BITS_STRIDE; j++) { \
		__u32 w = i * XC_BITS_STRIDE + j; \
		__u64 *v = bpf_map_lookup_elem(&xc_bits##sfx, &w); \
		if (v) \
			*v = 0; \
	} \
	return 0; \
}
XC_BITS_CBS()
XC_BITS_CBS(_b)

/* Copy words XC_BITS_STRIDE * i .. + XC_BITS_STRIDE - 1 of one set's bitmap
 * into the other's, each only when it differs. */
#define XC_BITS_COPY_CB(name, src, dst) \
static long name(__u32 i, void *ctx) \
{ \
	_Pragma("unroll") \
	for (__u32 j = 0; j < XC_BITS_STRIDE; j++) { \
		__u32 w = i * XC_BITS_STRIDE + j; \
		__u64 *s = bpf_map_lookup_elem(&src, &w); \
		__u64 *d = bpf_map_lookup_elem(&dst, &w); \
		if (s && d && *d != *s) \
			*d = *s; \
	} \
	return 0; \
}
XC_BITS_COPY_CB(xc_bits_copy_to_a, xc_bits_b, xc_bits)
XC_BITS_COPY_CB(xc_bits_copy_to_b, xc_bits, xc_bits_b)

/* Zero rule stats start + XC_BITS_STRIDE * i .. (ctx: start, count). */
static long xc_stats_zero(__u32 i, void *ctx)
{
	const __u32 *range = ctx;

	_Pragma("unroll")
	for (__u32 j = 0; j < XC_BITS_STRIDE; j++) {
		__u32 n = i * XC_BITS_STRIDE + j, id = range[0] + n;
		struct xc_rule_stats *v;

		if (n >= range[1])
			return 1;
		v = bpf_map_lookup_elem(&xc_rule_stats, &id);
		if (v)
			__builtin_memset(v, 0, sizeof(*v));
	}
	return 0;
}

#define XC_BITS_WALK(mask, i, band, cb) do { \
	if ((mask) & (1U << (i))) \
		bpf_for_each_map_elem(&band, cb, 0, 0); \
} while (0)

#define XC_BITS_BUILD(sfx, exact, mask) do { \
	if (exact) \
		bpf_loop(XC_BITS_WORDS / XC_BITS_STRIDE, xc_bits_zero##sfx, 0, 0); \
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
	__u32 range[2]; /* start, count */
	long n = 0;

	if (data + 12 > end)
		return XDP_ABORTED;
	switch (data[3]) {
	case XC_BITS_OP_BUILD:
		if (data[0])
			XC_BITS_BUILD(_b, data[1], data[2]);
		else
			XC_BITS_BUILD(, data[1], data[2]);
		break;
	case XC_BITS_OP_COPY:
		if (data[0])
			n = bpf_loop(XC_BITS_WORDS / XC_BITS_STRIDE, xc_bits_copy_to_b, 0, 0);
		else
			n = bpf_loop(XC_BITS_WORDS / XC_BITS_STRIDE, xc_bits_copy_to_a, 0, 0);
		break;
	case XC_BITS_OP_ZERO:
		__builtin_memcpy(range, data + 4, sizeof(range));
		n = bpf_loop((range[1] + XC_BITS_STRIDE - 1) / XC_BITS_STRIDE, xc_stats_zero, range, 0);
		break;
	default:
		return XDP_ABORTED;
	}
	return n < 0 ? XDP_ABORTED : XDP_PASS;
}

#endif /* XDPCTL_BITS_H */
