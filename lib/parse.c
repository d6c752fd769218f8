#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "parse.h"

int
parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Decimal only: strtod alone would take "0x10" as 16, "1e3", "inf". */
int
parse_seconds(const char *s, double *out)
{
	size_t whole, frac = 0;
	char *end;
	double v;

	if (!s)
		return -1;
	whole = strspn(s, "0123456789");
	if (s[whole] == '.') {
		frac = strspn(s + whole + 1, "0123456789");
		if (frac == 0)
			return -1;
		frac++;
	}
	if (whole + frac == 0 || s[whole + frac] || whole > 10)
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v < 0 || v > PARSE_SECONDS_MAX)
		return -1;
	*out = v;
	return 0;
}

int
parse_port(const char *s, uint16_t *out)
{
	unsigned long v;

	if (strlen(s) > 5 || parse_ulong(s, 65535, &v) < 0 || v == 0)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

int
parse_vmid(const char *s, uint32_t *out)
{
	unsigned long v;
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 9 || s[0] == '0' || parse_ulong(s, 999999999, &v) < 0)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

int
parse_bool(const char *s, int *out)
{
	static const char *const yes[] = { "1", "yes", "true", "on" };
	static const char *const no[] = { "0", "no", "false", "off" };

	for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0)
			return *out = 1, 0;
		if (strcasecmp(s, no[i]) == 0)
			return *out = 0, 0;
	}
	return -1;
}

char *
trim_space(char *s)
{
	char *e;

	s += strspn(s, " \t\r\n");
	e = s + strlen(s);
	while (e > s && strchr(" \t\r\n", e[-1]))
		*--e = '\0';
	return s;
}

const char *
skip_bom(const char *text)
{
	return strncmp(text, "\xef\xbb\xbf", 3) == 0 ? text + 3 : text;
}

void
key_excerpt(const char *line, char out[KEY_EXCERPT_SIZE])
{
	size_t n, cut;

	line += strspn(line, " \t");
	n = strcspn(line, "=:\n");
	while (n > 0 && strchr(" \t\r", line[n - 1]))
		n--;
	cut = n;
	if (cut > KEY_EXCERPT_MAX) {
		/* not in the middle of a UTF-8 character */
		cut = KEY_EXCERPT_MAX;
		while (cut > 0 && ((unsigned char)line[cut] & 0xc0) == 0x80)
			cut--;
	}
	for (size_t i = 0; i < cut; i++)
		out[i] = (unsigned char)line[i] < 0x20 || line[i] == 0x7f ? '?' : line[i];
	strcpy(out + cut, cut < n ? "..." : "");
}
