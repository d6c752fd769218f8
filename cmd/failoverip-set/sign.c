#include <stdio.h>
#include <string.h>

#include "sign.h"

#define ROL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

static void
sha1_block(struct sha1 *s, const unsigned char *p)
{
	uint32_t w[80], a, b, c, d, e, f, k;

	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
	for (int i = 16; i < 80; i++)
		w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	a = s->h[0];
	b = s->h[1];
	c = s->h[2];
	d = s->h[3];
	e = s->h[4];
	for (int i = 0; i < 80; i++) {
		if (i < 20) {
			f = (b & c) | (~b & d);
			k = 0x5a827999;
		} else if (i < 40) {
			f = b ^ c ^ d;
			k = 0x6ed9eba1;
		} else if (i < 60) {
			f = (b & c) | (b & d) | (c & d);
			k = 0x8f1bbcdc;
		} else {
			f = b ^ c ^ d;
			k = 0xca62c1d6;
		}
		uint32_t t = ROL(a, 5) + f + e + k + w[i];

		e = d;
		d = c;
		c = ROL(b, 30);
		b = a;
		a = t;
	}
	s->h[0] += a;
	s->h[1] += b;
	s->h[2] += c;
	s->h[3] += d;
	s->h[4] += e;
}

void
sha1_init(struct sha1 *s)
{
	static const uint32_t iv[5] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476,
		                        0xc3d2e1f0 };

	memcpy(s->h, iv, sizeof iv);
	s->len = 0;
	s->fill = 0;
}

void
sha1_update(struct sha1 *s, const void *data, size_t len)
{
	const unsigned char *p = data;

	s->len += len;
	while (len) {
		size_t n = 64 - s->fill < len ? 64 - s->fill : len;

		memcpy(s->block + s->fill, p, n);
		s->fill += n;
		p += n;
		len -= n;
		if (s->fill == 64) {
			sha1_block(s, s->block);
			s->fill = 0;
		}
	}
}

void
sha1_final(struct sha1 *s, unsigned char digest[20])
{
	uint64_t bits = s->len * 8;
	unsigned char pad[72] = { 0x80 };
	size_t padlen = (s->fill < 56 ? 56 : 120) - s->fill;

	for (int i = 0; i < 8; i++)
		pad[padlen + i] = (unsigned char)(bits >> (56 - 8 * i));
	sha1_update(s, pad, padlen + 8);
	for (int i = 0; i < 5; i++) {
		digest[4 * i] = (unsigned char)(s->h[i] >> 24);
		digest[4 * i + 1] = (unsigned char)(s->h[i] >> 16);
		digest[4 * i + 2] = (unsigned char)(s->h[i] >> 8);
		digest[4 * i + 3] = (unsigned char)s->h[i];
	}
}

void
ovh_signature(const char *app_secret, const char *consumer_key, const char *method, const char *url,
              const char *body, long long timestamp, char out[OVH_SIGNATURE_LEN + 1])
{
	const char *parts[] = { app_secret, consumer_key, method, url, body ? body : "" };
	static const char hex[] = "0123456789abcdef";
	unsigned char digest[20];
	char ts[24];
	struct sha1 s;

	sha1_init(&s);
	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
		sha1_update(&s, parts[i], strlen(parts[i]));
		sha1_update(&s, "+", 1);
	}
	snprintf(ts, sizeof ts, "%lld", timestamp);
	sha1_update(&s, ts, strlen(ts));
	sha1_final(&s, digest);
	memcpy(out, "$1$", 3);
	for (int i = 0; i < 20; i++) {
		out[3 + 2 * i] = hex[digest[i] >> 4];
		out[3 + 2 * i + 1] = hex[digest[i] & 15];
	}
	out[OVH_SIGNATURE_LEN] = '\0';
	explicit_bzero(&s, sizeof s);
}
