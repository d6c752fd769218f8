/* Online.net / Scaleway Dedibox API v1: Bearer token, GET /server/failover
 * lists every failover IP with its destination, POST /server/failover/edit
 * (form source=IP[,IP...]&destination=MAIN_IP) moves them, several in one
 * call (IPs sharing a virtual MAC can only move together). 200 with the
 * body true is success (Online's clients read the body as a boolean): false
 * is a refusal, any other body an answer nobody can trust. 409 "Address
 * already provisioned" means it was there already. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "failoverip.h"
#include "log.h"
#include "util.h"

struct auth {
	char *line;
	const char *headers[2];
};

static void
auth_init(struct ctx *c, struct auth *a)
{
	a->line = xasprintf("Authorization: Bearer %s", c->cfg->token);
	a->headers[0] = a->line;
	a->headers[1] = NULL;
}

static void
auth_free(struct auth *a)
{
	explicit_bzero(a->line, strlen(a->line));
	free(a->line);
}

static int
check(const struct config *cfg, char *err, size_t errlen)
{
	if (!cfg->token) {
		snprintf(err, errlen, "provider online needs token");
		return -1;
	}
	return 0;
}

/* GET /server/failover: the array of {"source","destination",...}. */
static enum outcome
fetch_list(struct ctx *c, struct auth *a, json_t **list)
{
	struct api_req r = { .method = "GET",
		             .path = "/server/failover",
		             .auth_headers = a->headers };
	enum outcome o;

	*list = NULL;
	o = api_send(c, &r);
	if (o != OUTCOME_OK)
		return o;
	if (!api_2xx(c))
		return api_status(c, &r, NULL);
	*list = api_json(c, &r);
	return api_want_array(c, &r, list);
}

static int
entry_fields(const json_t *e, const char **src, const char **dst)
{
	if (!json_is_object(e) || json_string_or_null(e, "source", src) < 0 || !*src)
		return -1;
	return json_string_or_null(e, "destination", dst);
}

static enum outcome
lookup(struct ctx *c, struct fip **ips, size_t n)
{
	struct auth a;
	json_t *entries;
	enum outcome o;
	size_t i, k;

	auth_init(c, &a);
	o = fetch_list(c, &a, &entries);
	auth_free(&a);
	if (o != OUTCOME_OK)
		return o;
	for (i = 0; i < n; i++) {
		int found = 0;

		if (ips[i]->state != ST_PENDING)
			continue;
		for (k = 0; k < json_array_size(entries); k++) {
			const json_t *e = json_array_get(entries, k);
			const char *src, *dst;

			if (entry_fields(e, &src, &dst) < 0 || !ipaddr_same(src, ips[i]->addr))
				continue;
			fip_set_current(ips[i], dst);
			found = 1;
			break;
		}
		if (!found)
			fip_set_unknown(ips[i]);
	}
	json_decref(entries);
	return OUTCOME_OK;
}

static int
already_provisioned(struct ctx *c)
{
	char text[300];
	json_t *j;

	j = api_body(c);
	if (!j)
		return 0;
	api_error_text(j, text, sizeof text);
	json_decref(j);
	return strcasestr(text, "already provisioned") != NULL;
}

/* The body of a 2xx answer to the edit: true, false, or something else. */
static enum outcome
edit_answer(struct ctx *c, const struct api_req *r)
{
	char raw[80], shown[80];
	size_t len = c->resp.body.len;
	const char *body = c->resp.body.data ? c->resp.body.data : "";

	while (len > 0 && (body[len - 1] == '\n' || body[len - 1] == '\r' || body[len - 1] == ' '))
		len--;
	if (len == 4 && memcmp(body, "true", 4) == 0)
		return OUTCOME_OK;
	if (len == 5 && memcmp(body, "false", 5) == 0)
		return api_fail(c, OUTCOME_REFUSED, r, "%ld false: the edit was refused",
		                c->resp.status);
	snprintf(raw, sizeof raw, "%.*s%s", (int)(len < 60 ? len : 60), body,
	         len > 60 ? "..." : "");
	http_redact(raw, shown, sizeof shown);
	return api_fail(c, OUTCOME_BADREPLY, r,
	                "%ld with the body '%s', not true: whether the IPs moved is unknown "
	                "(check with --list)",
	                c->resp.status, shown);
}

static enum outcome
move(struct ctx *c, struct fip **ips, size_t n, const char *dest)
{
	struct api_req r = { .method = "POST",
		             .path = "/server/failover/edit",
		             .content_type = "application/x-www-form-urlencoded" };
	struct buf body = { 0 };
	char *d = http_escape(dest);
	struct auth a;
	enum outcome o;

	/* The seed and Online's own examples send the list with bare commas. */
	buf_puts(&body, "source=");
	for (size_t i = 0; i < n; i++) {
		char *s = http_escape(ips[i]->addr);
		buf_printf(&body, "%s%s", i ? "," : "", s);
		free(s);
	}
	buf_printf(&body, "&destination=%s", d);
	free(d);
	r.body = body.data;

	auth_init(c, &a);
	r.auth_headers = a.headers;
	for (size_t i = 0; i < n; i++)
		ips[i]->move_sent = 1;
	o = api_send(c, &r);
	auth_free(&a);
	if (o == OUTCOME_OK) {
		if (api_2xx(c)) {
			o = edit_answer(c, &r);
			for (size_t i = 0; o == OUTCOME_OK && i < n; i++)
				ips[i]->state = ST_ROUTED;
		} else if (c->resp.status == 409 && already_provisioned(c)) {
			for (size_t i = 0; i < n; i++)
				ips[i]->state = ST_UNCHANGED;
		} else {
			o = api_status(c, &r, NULL);
		}
	}
	buf_free(&body);
	return o;
}

static enum outcome
list(struct ctx *c, struct buf *out)
{
	struct auth a;
	json_t *l;
	enum outcome o;
	size_t k;

	auth_init(c, &a);
	o = fetch_list(c, &a, &l);
	auth_free(&a);
	if (o != OUTCOME_OK)
		return o;
	for (k = 0; k < json_array_size(l); k++) {
		const json_t *e = json_array_get(l, k);
		const char *src, *dst;

		if (entry_fields(e, &src, &dst) < 0 || !ipaddr_valid(src))
			continue;
		list_line(out, &provider_online, src, dst);
	}
	json_decref(l);
	return OUTCOME_OK;
}

const struct provider provider_online = {
	.name = "online",
	.default_url = "https://api.online.net/api/v1",
	.batch = 1,
	.check = check,
	.valid_dest = ipaddr_valid,
	.same_dest = ipaddr_same,
	.lookup = lookup,
	.move = move,
	.list = list,
};
