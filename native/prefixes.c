/* Plain IPv4 block-list text to columns, for xdpctl.core.prefixes.ipv4_columns.
 *
 * The text holds one a.b.c.d or a.b.c.d/len per line and nothing else. Any
 * problem (a character outside that grammar, a field of no or more than
 * three digits, a leading zero, an octet above 255, a length above 32, host
 * bits set, a blank line, more lines than the caller made room for) makes
 * the whole text "not plain": the caller then hands it to the line parser,
 * which names the problem. Duplicates are the caller's to find.
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
