/* Work on 64-bit words that numpy does slowly here (50-70 ns a word for a
 * million on the 2-CPU VM the project is measured on), for xdpctl.native.
 *
 * xc_sort_u64 sorts them: a list's keys (a million /32s: the parser's
 * duplicate check, which also orders the stored key columns; IPv6
 * addresses' 64-bit mixes). Least significant byte first, one counting
 * pass for all eight bytes and then one scatter pass per byte; a byte that
 * is the same in every word (a list of one prefix length, positions below
 * 2^24) needs no pass. The words end sorted in place; tmp is room for n
 * more.
 *
 * xc_argsort_u64 is the same sort carrying each word's position: the order
 * of a list's IPv6 networks by their high words.
 *
 * xc_or_bits sets bits in a bitmap of words (the presence bitmap of the
 * keys a change wrote), where numpy sorted the bits to or each word once.
 *
 * Built by `make native` into xdpctl/native/ and called through ctypes.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* count[b][v]: how many words have byte b equal to v. */
static void xc_count_bytes(const uint64_t *a, size_t n, size_t count[8][256])
{
	size_t i, b;

	memset(count, 0, 8 * 256 * sizeof(size_t));
	for (i = 0; i < n; i++) {
		uint64_t w = a[i];

		for (b = 0; b < 8; b++)
			count[b][(w >> (8 * b)) & 0xff]++;
	}
}

/* Turn count[b] into the first slot of each byte value; 0 when every word
 * has the same byte b (a pass that would move nothing). */
static int xc_slots(size_t count[256], uint64_t first, unsigned shift, size_t n)
{
	size_t sum = 0, c, k;

	if (n == 0 || count[(first >> shift) & 0xff] == n)
		return 0;
	for (c = 0; c < 256; c++) {
		k = count[c];
		count[c] = sum;
		sum += k;
	}
	return 1;
}

/* Sort the n words k in place, least significant byte first; with idx,
 * carry each word's position along (idx ends as the positions the words
 * came from, equal words in position order). tk (and ti, with idx) are
 * room for n more. */
static void xc_radix(uint64_t *k, uint32_t *idx, size_t n, uint64_t *tk, uint32_t *ti)
{
	size_t count[8][256];
	uint64_t *ks = k, *kd = tk, *kt;
	uint32_t *is = idx, *id = ti, *it;
	size_t i, b, slot;

	xc_count_bytes(k, n, count);
	for (b = 0; b < 8; b++) {
		unsigned shift = 8 * b;

		if (!xc_slots(count[b], ks[0], shift, n))
			continue;
		if (is) {
			for (i = 0; i < n; i++) {
				slot = count[b][(ks[i] >> shift) & 0xff]++;
				kd[slot] = ks[i];
				id[slot] = is[i];
			}
			it = is;
			is = id;
			id = it;
		} else {
			for (i = 0; i < n; i++)
				kd[count[b][(ks[i] >> shift) & 0xff]++] = ks[i];
		}
		kt = ks;
		ks = kd;
		kd = kt;
	}
	if (ks != k) {
		memcpy(k, ks, n * sizeof(*k));
		if (is)
			memcpy(idx, is, n * sizeof(*idx));
	}
}

void xc_sort_u64(uint64_t *a, uint64_t *tmp, size_t n)
{
	xc_radix(a, NULL, n, tmp, NULL);
}

/* The words k sorted in place as by xc_sort_u64, and idx the positions
 * they came from (equal words in position order); tk and ti are room for
 * n words and n positions. n is below 2^32. */
void xc_argsort_u64(uint64_t *k, uint32_t *idx, size_t n, uint64_t *tk, uint32_t *ti)
{
	size_t i;

	for (i = 0; i < n; i++)
		idx[i] = (uint32_t)i;
	xc_radix(k, idx, n, tk, ti);
}

/* words[bit / 64] |= 1 << (bit % 64) for each of the n bits; -1 (the
 * words partly set) when a bit lies past n_words words, else 0. */
long xc_or_bits(uint64_t *words, size_t n_words, const uint32_t *bits, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		uint32_t b = bits[i];

		if (b / 64 >= n_words)
			return -1;
		words[b / 64] |= (uint64_t)1 << (b % 64);
	}
	return 0;
}
