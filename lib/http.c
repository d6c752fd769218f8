#include <ctype.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "alloc.h"
#include "clock.h"
#include "parse.h"

struct http {
	CURL *curl;
};

static char **secrets;
static size_t nsecrets;

/* The pin of the request under way (one request at a time per process). */
static unsigned char pin_sha256[32];

int
http_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void
http_global_cleanup(void)
{
	for (size_t i = 0; i < nsecrets; i++) {
		explicit_bzero(secrets[i], strlen(secrets[i]));
		free(secrets[i]);
	}
	free(secrets);
	secrets = NULL;
	nsecrets = 0;
	curl_global_cleanup();
}

struct http *
http_new(void)
{
	struct http *h = xcalloc(1, sizeof *h);

	h->curl = curl_easy_init();
	if (!h->curl)
		die(EXIT_OSERR, "curl: cannot create a handle");
	return h;
}

void
http_free(struct http *h)
{
	if (!h)
		return;
	curl_easy_cleanup(h->curl);
	free(h);
}

void
http_response_free(struct http_response *resp)
{
	buf_free(&resp->headers);
	buf_free(&resp->body);
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;

	n *= size;
	if (b->len + n > HTTP_MAX_BODY)
		return 0; /* makes curl fail with CURLE_WRITE_ERROR */
	buf_append(b, p, n);
	return n;
}

/* Keeps only the header block of the final response: a new status line
 * (after a 100 Continue, say) starts over. */
static size_t
on_header(char *p, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;

	n *= size;
	if (n >= 5 && strncmp(p, "HTTP/", 5) == 0)
		buf_reset(b);
	if (b->len + n <= 65536)
		buf_append(b, p, n);
	return n;
}

static enum http_result
classify(CURL *curl, CURLcode cc, int64_t timeout_ms)
{
	curl_off_t elapsed_us = 0;

	switch (cc) {
	case CURLE_OK:
		return HTTP_OK;
	case CURLE_OPERATION_TIMEDOUT:
		/* The connect timeout firing before the total one is a network
		 * problem (another try may reach the peer); otherwise the peer
		 * was too slow and the time is up. */
		curl_easy_getinfo(curl, CURLINFO_TOTAL_TIME_T, &elapsed_us);
		return elapsed_us / 1000 + 50 >= timeout_ms ? HTTP_TIMEOUT : HTTP_NETWORK;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return HTTP_NETWORK;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CRL_BADFILE:
		return HTTP_TLS;
	case CURLE_WRITE_ERROR:
		return HTTP_TOOBIG;
	default:
		return HTTP_FAILED;
	}
}

/* curl copies header strings; the copies may hold a token, so they are
 * wiped before they go back to the allocator. */
static void
free_headers(struct curl_slist *list)
{
	for (struct curl_slist *l = list; l; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(list);
}

static int
set_protocols(CURL *curl, int allow_http)
{
#if LIBCURL_VERSION_NUM >= 0x075500
	const char *p = allow_http ? "http,https" : "https";

	return curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, p) == CURLE_OK ? 0 : -1;
#else
	long p = CURLPROTO_HTTPS | (allow_http ? CURLPROTO_HTTP : 0);

	return curl_easy_setopt(curl, CURLOPT_PROTOCOLS, p) == CURLE_OK ? 0 : -1;
#endif
}

int
http_parse_fingerprint(const char *s, unsigned char out[32])
{
	size_t n = 0;

	while (*s) {
		int hi, lo;

		if (*s == ':') {
			s++;
			continue;
		}
		if (n == 32 || !isxdigit((unsigned char)s[0]) || !isxdigit((unsigned char)s[1]))
			return -1;
		hi = isdigit((unsigned char)s[0]) ? s[0] - '0' : (tolower((unsigned char)s[0]) - 'a' + 10);
		lo = isdigit((unsigned char)s[1]) ? s[1] - '0' : (tolower((unsigned char)s[1]) - 'a' + 10);
		out[n++] = (unsigned char)(hi << 4 | lo);
		s += 2;
	}
	return n == 32 ? 0 : -1;
}

/* OpenSSL asks this for every certificate of the chain: the chain's own
 * errors do not count, only whether the server's certificate (depth 0) is
 * the pinned one. */
static int
pin_verify(int preverify_ok, X509_STORE_CTX *x)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	X509 *cert = X509_STORE_CTX_get_current_cert(x);

	(void)preverify_ok;
	if (X509_STORE_CTX_get_error_depth(x) > 0) {
		X509_STORE_CTX_set_error(x, X509_V_OK);
		return 1;
	}
	if (!cert || !X509_digest(cert, EVP_sha256(), md, &mdlen) || mdlen != 32 ||
	    CRYPTO_memcmp(md, pin_sha256, 32) != 0) {
		X509_STORE_CTX_set_error(x, X509_V_ERR_CERT_REJECTED);
		return 0;
	}
	X509_STORE_CTX_set_error(x, X509_V_OK);
	return 1;
}

static CURLcode
pin_ctx(CURL *curl, void *sslctx, void *arg)
{
	(void)curl;
	(void)arg;
	SSL_CTX_set_verify(sslctx, SSL_VERIFY_PEER, pin_verify);
	return CURLE_OK;
}

enum http_result
http_do(struct http *h, const struct http_request *req, struct http_response *resp)
{
	CURL *c = h->curl;
	struct curl_slist *hdrs = NULL, *l;
	char errbuf[CURL_ERROR_SIZE] = "";
	enum http_result rc;
	CURLcode cc;

	buf_reset(&resp->headers);
	buf_reset(&resp->body);
	resp->status = 0;
	resp->error[0] = '\0';

	curl_easy_reset(c);
	/* "Expect:" with no value stops curl from waiting for 100-continue. */
	hdrs = curl_slist_append(hdrs, "Expect:");
	for (const char *const *p = req->headers; p && *p; p++) {
		l = curl_slist_append(hdrs, *p);
		if (!l) {
			free_headers(hdrs);
			die(EXIT_OSERR, "out of memory");
		}
		hdrs = l;
	}

	cc = CURLE_OK;
#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (cc == CURLE_OK)                                                                \
			cc = curl_easy_setopt(c, opt, val);                                        \
	} while (0)
	SET(CURLOPT_URL, req->url);
	SET(CURLOPT_CUSTOMREQUEST, req->method);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	if (req->fingerprint) {
		if (http_parse_fingerprint(req->fingerprint, pin_sha256) < 0) {
			free_headers(hdrs);
			snprintf(resp->error, sizeof resp->error, "bad certificate fingerprint");
			return HTTP_TLS;
		}
		/* curl's own check is off; pin_verify() makes the decision in
		 * the handshake, before a byte of the request is sent. */
		SET(CURLOPT_SSL_VERIFYPEER, 0L);
		SET(CURLOPT_SSL_VERIFYHOST, 0L);
		SET(CURLOPT_SSL_CTX_FUNCTION, pin_ctx);
		/* a connection kept from a request with another pin is not reused */
		SET(CURLOPT_FORBID_REUSE, 1L);
		SET(CURLOPT_FRESH_CONNECT, 1L);
	} else if (req->insecure) {
		SET(CURLOPT_SSL_VERIFYPEER, 0L);
		SET(CURLOPT_SSL_VERIFYHOST, 0L);
	} else {
		SET(CURLOPT_SSL_VERIFYPEER, 1L);
		SET(CURLOPT_SSL_VERIFYHOST, 2L);
	}
	SET(CURLOPT_USERAGENT, "pvekit/" PVEKIT_VERSION);
	SET(CURLOPT_CONNECTTIMEOUT_MS,
	    (long)(req->connect_timeout_ms > 0 ? req->connect_timeout_ms : 1));
	SET(CURLOPT_TIMEOUT_MS, (long)(req->timeout_ms > 0 ? req->timeout_ms : 1));
	SET(CURLOPT_HTTPHEADER, hdrs);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, &resp->body);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, &resp->headers);
	SET(CURLOPT_ERRORBUFFER, errbuf);
	if (strcmp(req->method, "GET") == 0)
		SET(CURLOPT_HTTPGET, 1L);
	if (req->body) {
		SET(CURLOPT_POSTFIELDS, req->body);
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
	}
	if (req->username) {
		SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		SET(CURLOPT_USERNAME, req->username);
		SET(CURLOPT_PASSWORD, req->password ? req->password : "");
	}
	if (req->ca_file)
		SET(CURLOPT_CAINFO, req->ca_file);
	if (req->ca_path)
		SET(CURLOPT_CAPATH, req->ca_path);
#undef SET
	if (cc == CURLE_OK && set_protocols(c, req->allow_http) < 0)
		cc = CURLE_UNSUPPORTED_PROTOCOL;

	if (cc == CURLE_OK)
		cc = curl_easy_perform(c);
	rc = classify(c, cc, req->timeout_ms);
	if (rc == HTTP_OK) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
	} else if (rc == HTTP_TOOBIG) {
		snprintf(resp->error, sizeof resp->error, "reply larger than %u bytes",
		         HTTP_MAX_BODY);
	} else {
		http_redact(errbuf[0] ? errbuf : curl_easy_strerror(cc), resp->error,
		            sizeof resp->error);
	}

	/* Drop every pointer into the caller's memory and the credentials
	 * curl copied, so nothing secret outlives the request in the handle. */
	curl_easy_reset(c);
	free_headers(hdrs);
	return rc;
}

const char *
http_header(const struct http_response *resp, const char *name, char *out, size_t outlen)
{
	size_t nlen = strlen(name);
	const char *p = resp->headers.data;

	if (!p || outlen == 0)
		return NULL;
	while (*p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);

		if (len > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
			const char *v = p + nlen + 1, *e = p + len;

			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			while (e > v && isspace((unsigned char)e[-1]))
				e--;
			len = (size_t)(e - v) < outlen - 1 ? (size_t)(e - v) : outlen - 1;
			memcpy(out, v, len);
			out[len] = '\0';
			return out;
		}
		if (!eol)
			break;
		p = eol + 1;
	}
	return NULL;
}

int64_t
http_retry_after_ms(const struct http_response *resp)
{
	char v[128];
	unsigned long secs;
	time_t when, now;

	if (!http_header(resp, "Retry-After", v, sizeof v))
		return -1;
	if (parse_ulong(v, 86400UL * 365, &secs) == 0)
		return (int64_t)secs * 1000;
	when = curl_getdate(v, NULL);
	if (when == (time_t)-1)
		return -1;
	now = time(NULL);
	return when > now ? (int64_t)(when - now) * 1000 : 0;
}

const char *
http_result_name(enum http_result r)
{
	static const char *const names[] = {
		[HTTP_OK] = "ok",   [HTTP_TIMEOUT] = "timeout", [HTTP_NETWORK] = "network",
		[HTTP_TLS] = "tls", [HTTP_TOOBIG] = "too-big",  [HTTP_FAILED] = "failed",
	};

	return (unsigned)r < ARRAY_LEN(names) ? names[r] : "?";
}

int
http_is_transient(enum http_result rc, long status)
{
	if (rc == HTTP_NETWORK)
		return 1;
	if (rc != HTTP_OK)
		return 0;
	if (status == 401 || status == 403)
		return 0;
	return status == 429 || (status >= 500 && status <= 599);
}

void
http_backoff_init(struct http_backoff *b, int64_t base_ms, int64_t cap_ms, unsigned max_retries,
                  int64_t deadline_ms)
{
	b->base_ms = base_ms > 0 ? base_ms : 1;
	b->cap_ms = cap_ms >= b->base_ms ? cap_ms : b->base_ms;
	b->max_retries = max_retries;
	b->deadline_ms = deadline_ms;
	b->retries = 0;
	b->seed = (unsigned)(real_ns() ^ ((int64_t)getpid() << 16));
}

int64_t
http_backoff_next(struct http_backoff *b, int64_t hint_ms)
{
	int64_t delay = b->base_ms;

	if (b->retries >= b->max_retries)
		return -1;
	for (unsigned i = 0; i < b->retries && delay < b->cap_ms; i++)
		delay *= 2;
	if (delay > b->cap_ms)
		delay = b->cap_ms;
	/* "Equal jitter": somewhere in the upper half, so clients that failed
	 * together do not come back together, and no wait is ever zero. */
	delay = delay / 2 + (int64_t)(rand_r(&b->seed) % (unsigned)(delay / 2 + 1));
	if (hint_ms > delay)
		delay = hint_ms;
	if (mono_ms() + delay >= b->deadline_ms)
		return -1;
	b->retries++;
	return delay;
}

void
http_add_secret(const char *secret)
{
	if (!secret || !*secret)
		return;
	secrets = xreallocarray(secrets, nsecrets + 1, sizeof *secrets);
	secrets[nsecrets++] = xstrdup(secret);
}

void
http_add_basic_secret(const char *user, const char *password)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *plain, *enc, *o;
	size_t n;

	if (!user || !password)
		return;
	plain = xasprintf("%s:%s", user, password);
	n = strlen(plain);
	enc = o = xmalloc((n + 2) / 3 * 4 + 1);
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned char)plain[i] << 16;

		if (i + 1 < n)
			v |= (unsigned char)plain[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)plain[i + 2];
		*o++ = b64[v >> 18 & 63];
		*o++ = b64[v >> 12 & 63];
		*o++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? b64[v & 63] : '=';
	}
	*o = '\0';
	http_add_secret(enc);
	explicit_bzero(plain, n);
	explicit_bzero(enc, strlen(enc));
	free(plain);
	free(enc);
}

char *
http_redact(const char *in, char *out, size_t outlen)
{
	size_t o = 0;

	if (outlen == 0)
		return out;
	while (*in && o + 1 < outlen) {
		size_t hit = 0;

		for (size_t i = 0; i < nsecrets; i++) {
			size_t n = strlen(secrets[i]);
			if (strncmp(in, secrets[i], n) == 0 && n > hit)
				hit = n;
		}
		if (hit) {
			for (const char *m = "***"; *m && o + 1 < outlen; m++)
				out[o++] = *m;
			in += hit;
			continue;
		}
		out[o++] = ((unsigned char)*in < 0x20 || *in == 0x7f) ? '?' : *in;
		in++;
	}
	out[o] = '\0';
	return out;
}

char *
http_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = xmalloc(strlen(s) * 3 + 1), *o = out;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}
