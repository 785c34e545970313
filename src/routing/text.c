/* text.c — word characters (text.h). */
#include "routing/text.h"

size_t text_utf8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
	size_t len;
	uint32_t v;

	if (n == 0 || p[0] < 0xC2 || p[0] > 0xF4)
		return 0;
	len = p[0] < 0xE0 ? 2 : p[0] < 0xF0 ? 3 : 4;
	if (n < len)
		return 0;
	v = p[0] & (0x7F >> len);
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		v = v << 6 | (p[i] & 0x3F);
	}
	if ((len == 3 && v < 0x800) || (len == 4 && v < 0x10000) ||
	    (v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF)
		return 0;
	*cp = v;
	return len;
}

bool text_uni_is_sep(uint32_t cp)
{
	return cp <= 0xBF || cp == 0xD7 || cp == 0xF7 ||
	       (cp >= 0x2000 && cp <= 0x2BFF) || (cp >= 0x3000 && cp <= 0x303F) ||
	       (cp >= 0xFF00 && cp <= 0xFF0F) || cp == 0xFEFF;
}

bool text_word_at(const unsigned char *p, size_t n, size_t i)
{
	uint32_t cp;

	if (i >= n)
		return false;
	if (p[i] < 0x80)
		return text_ascii_word(p[i]);
	return text_utf8_decode(p + i, n - i, &cp) && !text_uni_is_sep(cp);
}

bool text_word_before(const unsigned char *p, size_t i)
{
	uint32_t cp;
	size_t j;

	if (i == 0)
		return false;
	if (p[i - 1] < 0x80)
		return text_ascii_word(p[i - 1]);
	/* back over at most three continuation bytes to the lead byte */
	j = i - 1;
	while (j > 0 && i - j < 4 && (p[j] & 0xC0) == 0x80)
		j--;
	return text_utf8_decode(p + j, i - j, &cp) == i - j && !text_uni_is_sep(cp);
}
