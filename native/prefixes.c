/* Plain block-list text to columns, for xdpctl.core.prefixes.ipv4_columns
 * and ipv6_columns.
 *
 * IPv4 text holds one a.b.c.d or a.b.c.d/len per line and nothing else. Any
 * problem (a character outside that grammar, a field of no or more than
 * three digits, a leading zero, an octet above 255, a length above 32, host
 * bits set, a blank line, more lines than the caller made room for) makes
 * the whole text "not plain": the caller then hands it to the line parser,
 * which names the problem. Duplicates are the caller's to find. IPv6 text
 * likewise (below).
 *
 * Built by `make native` into xdpctl/native/ and called through ctypes.
 */
#include <stddef.h>
#include <stdint.h>

/* One field of one to three digits, no leading zero (a lone 0 is fine),
 * ending at p[*at]; advances *at past the digits. -1: not such a field. */
static inline int field(const unsigned char *p, size_t len, size_t *at)
{
	size_t i = *at, start = i;
	unsigned v = 0;

	while (i < len && p[i] >= '0' && p[i] <= '9') {
		if (i - start == 3)
			return -1;
		v = v * 10 + (unsigned)(p[i] - '0');
		i++;
	}
	if (i == start || (i - start > 1 && p[start] == '0'))
		return -1;
	*at = i;
	return (int)v;
}

/* The separator after a field; the end of the text counts as a newline. */
static inline unsigned char sep(const unsigned char *p, size_t len, size_t *at)
{
	return *at < len ? p[(*at)++] : ((*at)++, '\n');
}

/* Networks (host order) and prefix lengths in text order; returns how many,
 * or -1 when the text is not plain IPv4 or holds more than cap lines. */
long xc_ipv4_columns(const unsigned char *p, size_t len, uint32_t *nets, uint8_t *plens, size_t cap)
{
	size_t at = 0, n = 0;

	while (at < len) {
		uint32_t addr = 0, host;
		int v, plen = 32, f;
		unsigned char s = 0;

		for (f = 0; f < 4; f++) {
			v = field(p, len, &at);
			if (v < 0 || v > 255)
				return -1;
			addr = addr << 8 | (uint32_t)v;
			s = sep(p, len, &at);
			if (f < 3 && s != '.')
				return -1;
		}
		if (s == '/') {
			plen = field(p, len, &at);
			if (plen < 0 || plen > 32 || sep(p, len, &at) != '\n')
				return -1;
		} else if (s != '\n') {
			return -1;
		}
		host = plen == 0 ? UINT32_MAX : plen == 32 ? 0 : UINT32_MAX >> plen;
		if ((addr & host) || n == cap)
			return -1;
		nets[n] = addr;
		plens[n] = (uint8_t)plen;
		n++;
	}
	return (long)n;
}

/* A prefix length of one to three digits, no leading zero, at most max. */
static inline int length(const unsigned char *p, size_t len, size_t *at, int max)
{
	int v = field(p, len, at);

	return v > max ? -1 : v;
}

/* Hex digit values; -1 for any other byte. */
static const signed char HEX[256] = {
	['0'] = 0, ['1'] = 1, ['2'] = 2, ['3'] = 3, ['4'] = 4, ['5'] = 5, ['6'] = 6, ['7'] = 7, ['8'] = 8,
	['9'] = 9, ['a'] = 10, ['b'] = 11, ['c'] = 12, ['d'] = 13, ['e'] = 14, ['f'] = 15, ['A'] = 10,
	['B'] = 11, ['C'] = 12, ['D'] = 13, ['E'] = 14, ['F'] = 15,
};

static inline int hexval(unsigned char c)
{
	return c == '0' ? 0 : HEX[c] ? HEX[c] : -1;
}

/* One IPv6 address in the text form inet_pton takes without a dotted IPv4
 * tail: up to eight groups of one to four hex digits separated by ':', one
 * '::' at most standing for one or more zero groups. Ends at the first
 * byte that is neither a hex digit nor ':' (or the end); 16 bytes in
 * network order to out. -1: not such an address. */
static int ipv6_addr(const unsigned char *p, size_t len, size_t *at, uint8_t out[16])
{
	uint16_t g[8];
	size_t i = *at;
	int n = 0, gap = -1, k;

	if (i + 1 < len && p[i] == ':' && p[i + 1] == ':') {
		gap = 0;
		i += 2;
	} else if (i < len && p[i] == ':') {
		return -1;
	}
	while (i < len && hexval(p[i]) >= 0) {
		unsigned v = 0;
		int d = 0;

		if (n == 8)
			return -1;
		while (i < len && (k = hexval(p[i])) >= 0) {
			if (++d > 4)
				return -1;
			v = v << 4 | (unsigned)k;
			i++;
		}
		g[n++] = (uint16_t)v;
		if (i < len && p[i] == ':') {
			if (i + 1 < len && p[i + 1] == ':') {
				if (gap >= 0)
					return -1;
				gap = n;
				i += 2;
			} else {
				i++;
				if (i >= len || hexval(p[i]) < 0)
					return -1; /* a single ':' ends nothing */
			}
		}
	}
	if (gap < 0 ? n != 8 : n == 8)
		return -1; /* eight groups, or fewer with a '::' standing for one or more */
	for (k = 0; k < 16; k++)
		out[k] = 0;
	for (k = 0; k < n; k++) {
		int at16 = k < gap || gap < 0 ? k : 8 - (n - k);

		out[2 * at16] = (uint8_t)(g[k] >> 8);
		out[2 * at16 + 1] = (uint8_t)g[k];
	}
	*at = i;
	return 0;
}

/* Plain IPv6 text: one address or address/len per line and nothing else
 * (no comment, blank line or space; no dotted IPv4 tail). Networks packed
 * (16 bytes each, network order) and prefix lengths in text order; returns
 * how many, or -1 when the text is not plain IPv6, a line has host bits or
 * an IPv4-mapped address (::ffff:0:0/96), or there are more than cap lines. */
long xc_ipv6_columns(const unsigned char *p, size_t len, uint8_t *nets, uint8_t *plens, size_t cap)
{
	size_t at = 0, n = 0;

	while (at < len) {
		uint8_t *a = nets + 16 * n;
		int plen = 128, k;
		unsigned char s;

		if (n == cap || ipv6_addr(p, len, &at, a) < 0)
			return -1;
		s = sep(p, len, &at);
		if (s == '/') {
			plen = length(p, len, &at, 128);
			if (plen < 0 || sep(p, len, &at) != '\n')
				return -1;
		} else if (s != '\n') {
			return -1;
		}
		for (k = plen; k < 128; k++)
			if (a[k / 8] & (0x80 >> (k % 8)))
				return -1; /* host bits */
		for (k = 0; k < 10 && !a[k]; k++)
			;
		if (k == 10 && a[10] == 0xff && a[11] == 0xff)
			return -1; /* IPv4-mapped: the line parser's */
		plens[n] = (uint8_t)plen;
		n++;
	}
	return (long)n;
}
