#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "ipaddr.h"
#include "parse.h"

int
ipaddr_parse(const char *s, struct ipaddr *out)
{
	memset(out, 0, sizeof *out);
	if (inet_pton(AF_INET, s, out->a) == 1) {
		out->family = AF_INET;
		return 0;
	}
	if (strchr(s, ':') && inet_pton(AF_INET6, s, out->a) == 1) {
		out->family = AF_INET6;
		return 0;
	}
	return -1;
}

int
ipaddr_parse_scoped(const char *s, struct ipaddr *out)
{
	const char *pct = strchr(s, '%');
	char addr[INET6_ADDRSTRLEN];
	unsigned long index;

	if (!pct)
		return ipaddr_parse(s, out);
	if ((size_t)(pct - s) >= sizeof addr || !pct[1])
		return -1;
	memcpy(addr, s, pct - s);
	addr[pct - s] = '\0';
	if (ipaddr_parse(addr, out) < 0 || out->family != AF_INET6)
		return -1;
	if (pct[1 + strspn(pct + 1, "0123456789")] == '\0')
		out->scope = parse_ulong(pct + 1, UINT32_MAX, &index) == 0 ? (uint32_t)index : 0;
	else
		out->scope = if_nametoindex(pct + 1);
	return out->scope ? 0 : -1;
}

int
ipaddr_valid(const char *s)
{
	struct ipaddr ip;

	return ipaddr_parse(s, &ip) == 0;
}

/* Are the first len bits of ip the same as those of prefix? */
static int
bits_match(const struct ipaddr *ip, const uint8_t *prefix, unsigned len)
{
	unsigned bytes = len / 8, bits = len % 8;

	if (memcmp(ip->a, prefix, bytes) != 0)
		return 0;
	if (!bits)
		return 1;
	uint8_t mask = (uint8_t)(0xff << (8 - bits));
	return (ip->a[bytes] & mask) == (prefix[bytes] & mask);
}

/* ff02::/16, the link-local multicast scope */
static int
is_ll6_multicast(const struct ipaddr *ip)
{
	return ip->family == AF_INET6 && ip->a[0] == 0xff && (ip->a[1] & 0x0f) == 2;
}

void
ipaddr_format(const struct ipaddr *ip, char out[IPADDR_STRLEN])
{
	char name[IF_NAMESIZE];
	size_t n;

	if (!inet_ntop(ip->family, ip->a, out, IPADDR_STRLEN)) {
		snprintf(out, IPADDR_STRLEN, "?");
		return;
	}
	if (!ip->scope)
		return;
	n = strlen(out);
	if ((ipaddr_is_ll6(ip) || is_ll6_multicast(ip)) && if_indextoname(ip->scope, name))
		snprintf(out + n, IPADDR_STRLEN - n, "%%%s", name);
	else
		snprintf(out + n, IPADDR_STRLEN - n, "%%%u", ip->scope);
}

int
ipaddr_cmp(const void *a, const void *b)
{
	const struct ipaddr *x = a, *y = b;
	int c;

	if (x->family != y->family)
		return x->family == AF_INET ? -1 : 1;
	c = memcmp(x->a, y->a, x->family == AF_INET ? 4 : 16);
	if (c || x->scope == y->scope)
		return c;
	return x->scope < y->scope ? -1 : 1;
}

size_t
ipaddr_sort_unique(struct ipaddr *v, size_t n)
{
	size_t k = 0;

	if (n < 2)
		return n;
	qsort(v, n, sizeof *v, ipaddr_cmp);
	for (size_t i = 1; i < n; i++)
		if (ipaddr_cmp(&v[k], &v[i]) != 0)
			v[++k] = v[i];
	return k + 1;
}

int
ipaddr_same(const char *a, const char *b)
{
	struct ipaddr x, y;

	if (!a || !b)
		return 0;
	if (ipaddr_parse(a, &x) == 0 && ipaddr_parse(b, &y) == 0)
		return ipaddr_cmp(&x, &y) == 0;
	return strcmp(a, b) == 0;
}

socklen_t
ipaddr_to_sockaddr(const struct ipaddr *ip, uint16_t port, struct sockaddr_storage *sa)
{
	memset(sa, 0, sizeof *sa);
	if (ip->family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)sa;
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		memcpy(&in->sin_addr, ip->a, 4);
		return sizeof *in;
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	in6->sin6_scope_id = ip->scope;
	memcpy(&in6->sin6_addr, ip->a, 16);
	return sizeof *in6;
}

int
ipaddr_from_sockaddr(const struct sockaddr *sa, struct ipaddr *out)
{
	memset(out, 0, sizeof *out);
	if (sa->sa_family == AF_INET) {
		out->family = AF_INET;
		memcpy(out->a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		out->family = AF_INET6;
		out->scope = in6->sin6_scope_id;
		memcpy(out->a, &in6->sin6_addr, 16);
		return 0;
	}
	return -1;
}

int
ipaddr_parse_net(const char *s, struct ipaddr *out, unsigned *len)
{
	char addr[IPADDR_STRLEN];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	unsigned long l;

	if (n >= sizeof addr)
		return -1;
	memcpy(addr, s, n);
	addr[n] = '\0';
	if (ipaddr_parse(addr, out) < 0)
		return -1;
	if (!slash) {
		*len = out->family == AF_INET ? 32 : 128;
		return 0;
	}
	if (parse_ulong(slash + 1, out->family == AF_INET ? 32 : 128, &l) < 0)
		return -1;
	*len = (unsigned)l;
	return 0;
}

int
ipaddr_mask_len(const struct ipaddr *mask)
{
	unsigned bytes = mask->family == AF_INET ? 4 : 16, len = 0, i = 0;

	for (; i < bytes && mask->a[i] == 0xff; i++)
		len += 8;
	if (i < bytes) {
		uint8_t b = mask->a[i++];
		while (b & 0x80) {
			len++;
			b = (uint8_t)(b << 1);
		}
		if (b)
			return -1;
	}
	for (; i < bytes; i++)
		if (mask->a[i])
			return -1;
	return (int)len;
}

int
ipaddr_in_net(const struct ipaddr *ip, const struct ipaddr *net, unsigned len)
{
	return ip->family == net->family && len <= (ip->family == AF_INET ? 32u : 128u) &&
	       bits_match(ip, net->a, len);
}

int
ipaddr_is_ll6(const struct ipaddr *ip)
{
	static const uint8_t ll[] = { 0xfe, 0x80 };

	return ip->family == AF_INET6 && bits_match(ip, ll, 10);
}

struct block {
	uint8_t a[16];
	unsigned len;
};

int
ipaddr_is_public(const struct ipaddr *ip)
{
	static const struct block v4[] = {
		{ { 0 }, 8 },             /* "this network" */
		{ { 10 }, 8 },            /* RFC 1918 */
		{ { 100, 64 }, 10 },      /* CGNAT, RFC 6598 */
		{ { 127 }, 8 },           /* loopback */
		{ { 169, 254 }, 16 },     /* link-local */
		{ { 172, 16 }, 12 },      /* RFC 1918 */
		{ { 192, 0, 0 }, 24 },    /* IETF protocol assignments */
		{ { 192, 0, 2 }, 24 },    /* TEST-NET-1 */
		{ { 192, 168 }, 16 },     /* RFC 1918 */
		{ { 198, 18 }, 15 },      /* benchmarking, RFC 2544 */
		{ { 198, 51, 100 }, 24 }, /* TEST-NET-2 */
		{ { 203, 0, 113 }, 24 },  /* TEST-NET-3 */
		{ { 224 }, 4 },           /* multicast */
		{ { 240 }, 4 },           /* reserved, and the broadcast address */
	};
	static const struct block v6[] = {
		{ { 0x20, 0x01, 0x0d, 0xb8 }, 32 }, /* documentation, RFC 3849 */
		{ { 0x3f, 0xff }, 20 },             /* documentation, RFC 9637 */
		{ { 0x20, 0x01, 0x00, 0x02 }, 48 }, /* benchmarking, RFC 5180 */
	};
	static const uint8_t global[] = { 0x20 };

	if (ip->family == AF_INET) {
		for (size_t i = 0; i < ARRAY_LEN(v4); i++)
			if (bits_match(ip, v4[i].a, v4[i].len))
				return 0;
		return 1;
	}
	/* Only global unicast (2000::/3) is routed; that leaves out ::, ::1,
	 * v4-mapped, fc00::/7, fe80::/10, ff00::/8 and the rest. */
	if (!bits_match(ip, global, 3))
		return 0;
	for (size_t i = 0; i < ARRAY_LEN(v6); i++)
		if (bits_match(ip, v6[i].a, v6[i].len))
			return 0;
	return 1;
}
