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
 * xc_or_bits sets bits in a bitmap of words (the presence bitmap of the
 * keys a change wrote), where numpy sorted the bits to or each word once.
 *
 * Built by `make native` into xdpctl/native/ and called through ctypes.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

void xc_sort_u64(uint64_t *a, uint64_t *tmp, size_t n)
{
	size_t count[8][256];
	uint64_t *src = a, *dst = tmp, *t;
	size_t i, b, sum, c;

	memset(count, 0, sizeof(count));
	for (i = 0; i < n; i++) {
		uint64_t w = a[i];

		for (b = 0; b < 8; b++)
			count[b][(w >> (8 * b)) & 0xff]++;
	}
	for (b = 0; b < 8; b++) {
		unsigned shift = 8 * b;

		if (n == 0 || count[b][(a[0] >> shift) & 0xff] == n)
			continue; /* every word has this byte */
		for (sum = 0, c = 0; c < 256; c++) {
			size_t k = count[b][c];

			count[b][c] = sum;
			sum += k;
		}
		for (i = 0; i < n; i++)
			dst[count[b][(src[i] >> shift) & 0xff]++] = src[i];
		t = src;
		src = dst;
		dst = t;
	}
	if (src != a)
		memcpy(a, src, n * sizeof(*a));
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
