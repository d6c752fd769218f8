#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failoverip.h"
#include "log.h"
#include "util.h"

enum outcome
api_fail(struct ctx *c, enum outcome o, const struct api_req *r, const char *fmt, ...)
{
	char raw[512];
	va_list ap;
	int n;

	n = snprintf(raw, sizeof raw, "%s: %s %s: ", c->cfg->peer, r->method, r->path);
	if (n < 0 || (size_t)n >= sizeof raw)
		n = 0;
	va_start(ap, fmt);
	vsnprintf(raw + n, sizeof raw - n, fmt, ap);
	va_end(ap);
	http_redact(raw, c->msg, sizeof c->msg);
	return o;
}

enum outcome
api_send(struct ctx *c, const struct api_req *r)
{
	const struct config *cfg = c->cfg;
	const char *headers[16];
	size_t nh = 0;
	char *url, *ctype = NULL;
	struct http_request req = { 0 };
	int64_t left = c->deadline_ms - mono_ms();
	enum http_result rc;

	c->hint_ms = 0;
	c->msg[0] = '\0';
	if (left <= 0)
		return api_fail(c, OUTCOME_TIMEOUT, r, "no time left (timeout %.3g s)",
		                cfg->timeout);

	url = xasprintf("%s%s", cfg->api_url, r->path);
	headers[nh++] = "Accept: application/json";
	if (r->body) {
		ctype = xasprintf("Content-Type: %s", r->content_type);
		headers[nh++] = ctype;
	}
	for (const char *const *h = r->auth_headers; h && *h && nh < ARRAY_LEN(headers) - 1; h++)
		headers[nh++] = *h;
	headers[nh] = NULL;

	req.method = r->method;
	req.url = url;
	req.headers = headers;
	req.body = r->body;
	req.body_len = r->body ? strlen(r->body) : 0;
	if (r->basic_auth) {
		req.username = cfg->user;
		req.password = cfg->password;
	}
	req.ca_file = cfg->ca_file;
	req.connect_timeout_ms = (int64_t)(cfg->connect_timeout * 1000);
	if (req.connect_timeout_ms > left)
		req.connect_timeout_ms = left;
	req.timeout_ms = left;
	req.allow_http = cfg->allow_http;

	log_debug("%s: %s %s", cfg->peer, r->method, r->path);
	rc = http_do(c->http, &req, &c->resp);
	free(url);
	free(ctype);
	log_debug("%s: %s %s: %s %ld", cfg->peer, r->method, r->path, http_result_name(rc),
	          c->resp.status);

	switch (rc) {
	case HTTP_OK:
		return OUTCOME_OK;
	case HTTP_TIMEOUT:
		return api_fail(c, OUTCOME_TIMEOUT, r, "no answer within the timeout (%.3g s)",
		                cfg->timeout);
	case HTTP_NETWORK:
		return api_fail(c, OUTCOME_TRANSIENT, r, "%s", c->resp.error);
	case HTTP_TLS:
		return api_fail(c, OUTCOME_UNAVAIL, r, "TLS: %s", c->resp.error);
	case HTTP_TOOBIG:
		return api_fail(c, OUTCOME_BADREPLY, r, "%s", c->resp.error);
	case HTTP_FAILED:
	default:
		return api_fail(c, OUTCOME_UNAVAIL, r, "%s", c->resp.error);
	}
}

static void
append(char *out, size_t outlen, const char *s)
{
	size_t len = strlen(out);

	if (!s || !*s)
		return;
	snprintf(out + len, outlen - len, "%s%s", len ? ": " : "", s);
}

void
api_error_text(const json_t *reply, char *out, size_t outlen)
{
	const json_t *err = json_object_get(reply, "error");
	char raw[512] = "";

	if (json_is_object(err)) { /* Hetzner */
		append(raw, sizeof raw, json_string_value(json_object_get(err, "code")));
		append(raw, sizeof raw, json_string_value(json_object_get(err, "message")));
	} else if (json_is_string(err)) { /* Online */
		append(raw, sizeof raw, json_string_value(err));
		append(raw, sizeof raw,
		       json_string_value(json_object_get(reply, "error_description")));
	} else { /* OVH */
		append(raw, sizeof raw, json_string_value(json_object_get(reply, "errorCode")));
		append(raw, sizeof raw, json_string_value(json_object_get(reply, "class")));
		append(raw, sizeof raw, json_string_value(json_object_get(reply, "message")));
	}
	http_redact(raw, out, outlen);
}

static const char *
reason_phrase(long status)
{
	switch (status) {
	case 301:
	case 302:
	case 303:
	case 307:
	case 308:
		return "redirect (not followed)";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 409:
		return "Conflict";
	case 429:
		return "Too Many Requests";
	case 500:
		return "Internal Server Error";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return "";
	}
}

enum outcome
api_status(struct ctx *c, const struct api_req *r, const char *detail)
{
	long st = c->resp.status;
	char text[300];
	enum outcome o;
	json_t *j;

	text[0] = '\0';
	if (detail) {
		http_redact(detail, text, sizeof text);
	} else if ((j = api_body(c))) {
		api_error_text(j, text, sizeof text);
		json_decref(j);
	}
	if (!text[0])
		snprintf(text, sizeof text, "%s", reason_phrase(st));

	if (st == 401 || st == 403)
		o = OUTCOME_AUTH;
	else if (http_is_transient(HTTP_OK, st))
		o = OUTCOME_TRANSIENT;
	else
		o = OUTCOME_REFUSED;
	if (o == OUTCOME_TRANSIENT)
		c->hint_ms = http_retry_after_ms(&c->resp);
	if (o == OUTCOME_TRANSIENT && c->hint_ms >= 0)
		return api_fail(c, o, r, "%ld %s (retry after %.3g s)", st, text,
		                c->hint_ms / 1000.0);
	if (c->hint_ms < 0)
		c->hint_ms = 0;
	return api_fail(c, o, r, "%ld %s", st, text);
}

int
api_2xx(const struct ctx *c)
{
	return c->resp.status >= 200 && c->resp.status <= 299;
}

json_t *
api_body(const struct ctx *c)
{
	return json_loadb(c->resp.body.data ? c->resp.body.data : "", c->resp.body.len, 0, NULL);
}

json_t *
api_json(struct ctx *c, const struct api_req *r)
{
	json_error_t e;
	json_t *j;

	j = json_loadb(c->resp.body.data ? c->resp.body.data : "", c->resp.body.len,
	               JSON_DECODE_ANY, &e);
	if (!j)
		api_fail(c, OUTCOME_BADREPLY, r,
		         "invalid JSON reply (%ld, %zu bytes): %s at byte %d", c->resp.status,
		         c->resp.body.len, e.text, e.position);
	return j;
}

enum outcome
api_want_array(struct ctx *c, const struct api_req *r, json_t **reply)
{
	if (!*reply)
		return OUTCOME_BADREPLY;
	if (json_is_array(*reply))
		return OUTCOME_OK;
	json_decref(*reply);
	*reply = NULL;
	return api_fail(c, OUTCOME_BADREPLY, r, "reply is not a JSON array");
}

enum outcome
api_lookup_each(struct ctx *c, struct fip **ips, size_t n, lookup_one_fn one)
{
	for (size_t i = 0; i < n; i++) {
		enum outcome o;

		if (ips[i]->state != ST_PENDING)
			continue;
		o = one(c, ips[i]);
		if (o == OUTCOME_UNKNOWN)
			fip_set_unknown(ips[i]);
		else if (o != OUTCOME_OK)
			return o;
	}
	return OUTCOME_OK;
}

enum outcome
api_move_each(struct ctx *c, struct fip **ips, size_t n, const char *dest, move_one_fn one)
{
	for (size_t i = 0; i < n; i++) {
		enum outcome o = one(c, ips[i], dest);
		if (o != OUTCOME_OK)
			return o;
	}
	return OUTCOME_OK;
}

void
fip_set_current(struct fip *ip, const char *dest)
{
	free(ip->current);
	ip->current = dest && *dest ? xstrdup(dest) : NULL;
}

void
fip_set_unknown(struct fip *ip)
{
	ip->state = ST_FAILED;
	ip->fail = OUTCOME_UNKNOWN;
}

void
fip_set_block(struct fip *ip, const char *key, unsigned len, const char *what)
{
	unsigned given = ip->prefix >= 0 ? (unsigned)ip->prefix : ip->family == AF_INET ? 32 : 128;

	if (ip->block && strcmp(ip->block, key) == 0)
		return;
	free(ip->block);
	ip->block = xstrdup(key);
	ip->block_len = len;
	if (len >= given)
		return;
	if (strchr(key, '/'))
		log_info("%s: part of failover %s %s: the whole %s moves", ip->text, what, key,
		         what);
	else
		log_info("%s: part of failover %s %s/%u: the whole %s moves", ip->text, what, key,
		         len, what);
}

const char *
dest_shown(const struct provider *p, const char *dest)
{
	return !dest || !*dest ? "-" : p->valid_dest(dest) ? dest : "?";
}

void
list_line(struct buf *out, const struct provider *p, const char *ip, const char *dest)
{
	buf_printf(out, "%s %s\n", ip, dest_shown(p, dest));
}

int
json_string_or_null(const json_t *obj, const char *key, const char **out)
{
	const json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -1;
	*out = json_string_value(v);
	return 0;
}

int
wait_within(struct ctx *c, int64_t ms)
{
	int64_t left = c->deadline_ms - mono_ms();

	if (ms >= left)
		return -1;
	sleep_ms(ms);
	return 0;
}
