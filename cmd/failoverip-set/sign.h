/* SHA-1 (FIPS 180-4) and the OVH API request signature built on it. SHA-1
 * is what OVH's signing scheme prescribes; nothing else here relies on it. */
#ifndef FAILOVERIP_SIGN_H
#define FAILOVERIP_SIGN_H

#include <stddef.h>
#include <stdint.h>

struct sha1 {
	uint32_t h[5];
	uint64_t len; /* bytes hashed so far */
	unsigned char block[64];
	size_t fill;
};

void sha1_init(struct sha1 *s);
void sha1_update(struct sha1 *s, const void *data, size_t len);
void sha1_final(struct sha1 *s, unsigned char digest[20]);

/* "$1$" + hex(sha1(AS+CK+METHOD+URL+BODY+TS)), the six fields joined with
 * '+' exactly as OVH's own clients do; URL is the full URL including the
 * query string, BODY the exact bytes sent ("" without a body). */
#define OVH_SIGNATURE_LEN (3 + 40)
void ovh_signature(const char *app_secret, const char *consumer_key, const char *method,
                   const char *url, const char *body, long long timestamp,
                   char out[OVH_SIGNATURE_LEN + 1]);

#endif
