/* Hetzner Robot webservice: Basic auth, GET /failover/IP reads the route,
 * POST /failover/IP (form active_server_ip=MAIN_IP) switches it and answers
 * only when the switch is done (40-60 s). Errors carry error.code, and the
 * code decides, not the status: FAILOVER_ALREADY_ROUTED is success,
 * FAILOVER_LOCKED and RATE_LIMIT_EXCEEDED mean later, 401 is never retried
 * (three bad logins block the client address for ten minutes). One IP per
 * request; the driver moves them in sequence, which keeps a run well inside
 * the 50 switches an hour. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failoverip.h"
#include "log.h"
#include "util.h"

static int
check(const struct config *cfg, char *err, size_t errlen)
{
	if (!cfg->user || !cfg->password) {
		snprintf(err, errlen, "provider hetzner needs user and password");
		return -1;
	}
	return 0;
}

/* The error object of a reply, if there is one: {"error":{"code":...}}. */
static const char *
error_code(const json_t *reply, const json_t **err)
{
	*err = json_object_get(reply, "error");
	return json_string_value(json_object_get(*err, "code"));
}

/* Turns a non-2xx answer into an outcome, keyed on error.code. */
static enum outcome
failure(struct ctx *c, const struct api_req *r, const json_t *reply)
{
	const json_t *err;
	const char *code = error_code(reply, &err);
	json_int_t interval;

	if (code && strcmp(code, "RATE_LIMIT_EXCEEDED") == 0) {
		/* A 403 that is not about credentials: wait for the interval. */
		interval = json_integer_value(json_object_get(err, "interval"));
		c->hint_ms = interval > 0 && interval < 86400 ? (int64_t)interval * 1000 : 0;
		return api_fail(c, OUT_TRANSIENT, r, "%ld RATE_LIMIT_EXCEEDED (wait %lld s)",
		                c->resp.status, (long long)interval);
	}
	if (code && strcmp(code, "FAILOVER_LOCKED") == 0)
		return api_fail(c, OUT_TRANSIENT, r, "%ld FAILOVER_LOCKED (a switch is running)",
		                c->resp.status);
	return api_status(c, r, NULL);
}

static enum outcome
lookup_one(struct ctx *c, struct fip *ip)
{
	char *path = xasprintf("/failover/%s", ip->addr);
	struct api_req r = { .method = "GET", .path = path, .basic_auth = 1 };
	const char *active;
	json_t *j = NULL, *fo;
	enum outcome o;

	o = api_send(c, &r);
	if (o == OUT_OK && !api_2xx(c)) {
		const json_t *err;
		const char *code;

		j = api_body(c);
		code = error_code(j, &err);
		if (c->resp.status == 404 && (!code || strcmp(code, "NOT_FOUND") == 0))
			o = OUT_UNKNOWN;
		else
			o = failure(c, &r, j);
	} else if (o == OUT_OK) {
		j = api_json(c, &r);
		fo = json_object_get(j, "failover");
		if (!j)
			o = OUT_BADREPLY;
		else if (!json_is_object(fo) ||
		         json_string_or_null(fo, "active_server_ip", &active) < 0)
			o = api_fail(c, OUT_BADREPLY, &r, "no failover.active_server_ip");
		else
			fip_set_current(ip, active);
	}
	json_decref(j);
	free(path);
	return o;
}

static enum outcome
lookup(struct ctx *c, struct fip **ips, size_t n)
{
	return api_lookup_each(c, ips, n, lookup_one);
}

static enum outcome
move_one(struct ctx *c, struct fip *ip, const char *dest)
{
	char *path = xasprintf("/failover/%s", ip->addr);
	char *d = http_escape(dest);
	char *body = xasprintf("active_server_ip=%s", d);
	struct api_req r = { .method = "POST",
		             .path = path,
		             .body = body,
		             .content_type = "application/x-www-form-urlencoded",
		             .basic_auth = 1 };
	enum outcome o;

	ip->move_sent = 1;
	o = api_send(c, &r);
	if (o == OUT_OK) {
		const json_t *err;
		json_t *j = api_body(c);
		const char *code = error_code(j, &err);

		if (code && strcmp(code, "FAILOVER_ALREADY_ROUTED") == 0) {
			ip->state = ST_UNCHANGED;
		} else if (api_2xx(c)) {
			const char *active = NULL;
			const json_t *fo = json_object_get(j, "failover");

			if (!j || json_string_or_null(fo, "active_server_ip", &active) < 0)
				log_warn("%s: %s: switched, but the reply shows no route", ip->text,
				         c->cfg->peer);
			else if (!same_address(active, dest))
				log_warn("%s: %s: switched, but the reply shows it at %s", ip->text,
				         c->cfg->peer, active ? active : "nowhere");
			ip->state = ST_ROUTED;
		} else {
			o = failure(c, &r, j);
		}
		json_decref(j);
	}
	free(body);
	free(d);
	free(path);
	return o;
}

static enum outcome
move(struct ctx *c, struct fip **ips, size_t n, const char *dest)
{
	return api_move_each(c, ips, n, dest, move_one);
}

static enum outcome
list(struct ctx *c, struct buf *out)
{
	struct api_req r = { .method = "GET", .path = "/failover", .basic_auth = 1 };
	enum outcome o;
	json_t *j;
	size_t k;

	o = api_send(c, &r);
	if (o != OUT_OK)
		return o;
	if (!api_2xx(c)) {
		j = api_body(c);
		o = failure(c, &r, j);
		json_decref(j);
		return o;
	}
	j = api_json(c, &r);
	if ((o = api_want_array(c, &r, &j)) != OUT_OK)
		return o;
	for (k = 0; k < json_array_size(j); k++) {
		const json_t *e = json_array_get(j, k);
		const json_t *fo = json_object_get(e, "failover");
		const char *ip, *active;

		if (json_string_or_null(fo, "ip", &ip) < 0 || !ip || !valid_ip(ip) ||
		    json_string_or_null(fo, "active_server_ip", &active) < 0)
			continue;
		list_line(out, &provider_hetzner, ip, active);
	}
	json_decref(j);
	return OUT_OK;
}

const struct provider provider_hetzner = {
	.name = "hetzner",
	.default_url = "https://robot-ws.your-server.de",
	.batch = 0,
	.check = check,
	.valid_dest = valid_ip,
	.same_dest = same_address,
	.lookup = lookup,
	.move = move,
	.list = list,
};
