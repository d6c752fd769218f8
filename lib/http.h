/* A small libcurl wrapper for the provider and Proxmox API clients.
 *
 * One request at a time on a reusable handle (connections are kept alive
 * between requests). Every request has a connect and a total timeout, TLS
 * verification is always on, redirects are never followed, and only https
 * is allowed unless the caller opts in to http (tests on loopback).
 *
 * Secrets travel only in headers, the Basic-auth fields or the body, never
 * in the URL. Any text that may reach a log line (curl's error text, a
 * message from the peer) goes through http_redact(), which masks every
 * string registered with http_add_secret(). */
#ifndef PVEKIT_HTTP_H
#define PVEKIT_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum http_result {
	HTTP_OK = 0,  /* a response arrived; look at status */
	HTTP_TIMEOUT, /* the total timeout passed during the request */
	HTTP_NETWORK, /* resolve/connect/send/receive failed (worth a retry) */
	HTTP_TLS,     /* certificate or TLS setup problem (not retried) */
	HTTP_TOOBIG,  /* the response body exceeded HTTP_MAX_BODY */
	HTTP_FAILED,  /* anything else curl refused (bad URL, protocol) */
};

#define HTTP_MAX_BODY (4u << 20)

struct http_request {
	const char *method;         /* "GET", "POST", "DELETE"... */
	const char *url;            /* no secrets in here */
	const char *const *headers; /* NULL-terminated "Name: value" lines, may be NULL */
	const char *body;           /* sent as is; NULL = no body */
	size_t body_len;
	const char *username; /* Basic auth when set */
	const char *password;
	const char *ca_file;        /* CA bundle (PEM) instead of the system store */
	const char *ca_path;        /* CA directory (c_rehash'ed) instead of the system store */
	/* The server certificate's SHA-256 fingerprint as Proxmox shows it
	 * ("AB:CD:..."; colons optional, any case): that certificate is
	 * accepted whatever signed it and whatever host name it carries, and
	 * no other. */
	const char *fingerprint;
	int insecure; /* no certificate check at all (--no-verify-ssl) */
	int64_t connect_timeout_ms; /* > 0 */
	int64_t timeout_ms;         /* > 0, the whole request */
	int allow_http;             /* permit plain http:// (tests, loopback) */
};

struct http_response {
	long status;        /* HTTP status on HTTP_OK, else 0 */
	struct buf headers; /* raw header lines of the final response */
	struct buf body;
	char error[256]; /* why, for every result but HTTP_OK (redacted) */
};

struct http;

/* Once per program, before any thread; http_global_cleanup() at the end. */
int http_global_init(void);
void http_global_cleanup(void);

struct http *http_new(void);
void http_free(struct http *h);

/* Performs one request. The response is reset first and filled in. */
enum http_result http_do(struct http *h, const struct http_request *req,
                         struct http_response *resp);
void http_response_free(struct http_response *resp);

/* The value of response header name (case-insensitive), trimmed, copied into
 * out; NULL when absent. */
const char *http_header(const struct http_response *resp, const char *name, char *out,
                        size_t outlen);

/* Retry-After as milliseconds (delta-seconds or an HTTP date); -1 when
 * absent or unparseable. */
int64_t http_retry_after_ms(const struct http_response *resp);

/* Short name of a result: "ok", "timeout", "network", "tls", "too-big", "failed". */
const char *http_result_name(enum http_result r);

/* Normalises a SHA-256 fingerprint ("ab:CD..." or 64 hex digits) into the
 * 32 bytes of out; 0, or -1 when it is not one. */
int http_parse_fingerprint(const char *s, unsigned char out[32]);

/* The retry rule shared by the API clients: network errors, 5xx and 429 are
 * worth another try; 401 and 403 never are (Hetzner locks an address out
 * after three bad logins), nor is any other answer or a timeout of the whole
 * request. 1 = transient, 0 = final. */
int http_is_transient(enum http_result rc, long status);

/* Capped exponential backoff with jitter, bounded by a retry count and a
 * deadline on the monotonic clock (mono_ms()). */
struct http_backoff {
	int64_t base_ms;      /* first delay, doubled on each retry */
	int64_t cap_ms;       /* no single delay is longer */
	unsigned max_retries; /* retries after the first attempt */
	int64_t deadline_ms;  /* mono_ms() value after which nothing is retried */
	unsigned retries;     /* done so far */
	unsigned seed;
};

void http_backoff_init(struct http_backoff *b, int64_t base_ms, int64_t cap_ms,
                       unsigned max_retries, int64_t deadline_ms);

/* The wait before the next retry: the jittered exponential delay, or hint_ms
 * (a Retry-After, a rate-limit interval) when that is longer. Returns -1 when
 * no retry is left: the count is used up or the wait would end after the
 * deadline. Counts the retry otherwise. */
int64_t http_backoff_next(struct http_backoff *b, int64_t hint_ms);

/* Registers a secret to mask in every text http_redact() cleans. The string
 * is copied; empty strings are ignored. */
void http_add_secret(const char *secret);

/* Registers the Basic-auth token (base64 of "user:password") as a secret,
 * for a peer that quotes the Authorization header back. */
void http_add_basic_secret(const char *user, const char *password);

/* Copies in to out (at most outlen-1 bytes, always terminated) with every
 * registered secret replaced by "***" and control characters by '?'. */
char *http_redact(const char *in, char *out, size_t outlen);

/* Percent-encodes s for a URL path segment or a form value (RFC 3986
 * unreserved characters stay as they are). Returns malloc'ed memory. */
char *http_escape(const char *s);

#endif
