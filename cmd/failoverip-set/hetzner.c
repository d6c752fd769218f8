/* Hetzner Robot webservice: Basic auth. GET /failover lists the account's
 * failover IPs and nets ({"failover": {ip, netmask, active_server_ip...}}),
 * 404 NOT_FOUND when it has none; POST /failover/IP (form
 * active_server_ip=DEST) switches one and answers only when the switch is
 * done (40-60 s). A failover net is switched as a whole and named by its
 * net address, so an address inside one is looked up in the list first.
 * An IPv4 failover goes to the destination server's main IPv4, an IPv6 net
 * to the destination server's own IPv6 subnet (destination6).
 *
 * Errors carry error.code, and the code decides, not the status:
 * FAILOVER_ALREADY_ROUTED is success, FAILOVER_LOCKED and
 * RATE_LIMIT_EXCEEDED mean later, 401 is never retried (three bad logins
 * block the client address for ten minutes). RATE_LIMIT_EXCEEDED says how
 * many requests Robot allows (max_request) in a window of how many seconds
 * (interval): the window's length, not a time to wait. One IP per request;
 * the driver moves them in sequence, within the 50 switches an hour, and
 * one GET /failover serves every IP of a run until a request fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "failoverip.h"
#include "ipfile.h"
#include "log.h"
#include "util.h"

/* After RATE_LIMIT_EXCEEDED the next try waits this long at least (the
 * window's length when that is shorter), as community.hrobot's client
 * does: the window may free up at any moment, and polling it every few
 * seconds costs one request each time. */
#define RATE_LIMIT_PACE_MS 5000

static int
check(const struct config *cfg, char *err, size_t errlen)
{
	struct ipaddr a;

	if (!cfg->user || !cfg->password) {
		snprintf(err, errlen, "provider hetzner needs user and password");
		return -1;
	}
	if (cfg->destination && (ipaddr_parse(cfg->destination, &a) < 0 || a.family != AF_INET)) {
		snprintf(err, errlen,
		         "destination: want this server's main IPv4 address, not '%s' (an IPv6 "
		         "net goes to destination6, this server's IPv6 subnet)",
		         cfg->destination);
		return -1;
	}
	if (cfg->destination6 &&
	    (ipaddr_parse(cfg->destination6, &a) < 0 || a.family != AF_INET6)) {
		snprintf(err, errlen,
		         "destination6: want this server's IPv6 subnet (such as "
		         "2a01:4f8:111:4221::), not '%s'",
		         cfg->destination6);
		return -1;
	}
	return 0;
}

static void
drop_listing(struct ctx *c)
{
	json_decref(c->listing);
	c->listing = NULL;
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
	json_int_t max, interval;

	drop_listing(c);
	if (code && strcmp(code, "RATE_LIMIT_EXCEEDED") == 0) {
		/* A 403 that is not about credentials. */
		max = json_integer_value(json_object_get(err, "max_request"));
		interval = json_integer_value(json_object_get(err, "interval"));
		c->hint_ms = interval > 0 && interval * 1000 < RATE_LIMIT_PACE_MS
		                 ? (int64_t)interval * 1000
		                 : RATE_LIMIT_PACE_MS;
		if (max > 0 && interval > 0)
			return api_fail(c, OUTCOME_TRANSIENT, r,
			                "%ld RATE_LIMIT_EXCEEDED: over Robot's limit of %lld "
			                "request%s in %lld s",
			                c->resp.status, (long long)max, max == 1 ? "" : "s",
			                (long long)interval);
		return api_fail(c, OUTCOME_TRANSIENT, r, "%ld RATE_LIMIT_EXCEEDED", c->resp.status);
	}
	if (code && strcmp(code, "FAILOVER_LOCKED") == 0)
		return api_fail(c, OUTCOME_TRANSIENT, r,
		                "%ld FAILOVER_LOCKED (a switch is running)", c->resp.status);
	return api_status(c, r, NULL);
}

/* GET /failover, or the copy from earlier in this run. An account without
 * failover IPs gets 404 NOT_FOUND: an empty list. */
static enum outcome
fetch_listing(struct ctx *c, json_t **out)
{
	struct api_req r = { .method = "GET", .path = "/failover", .basic_auth = 1 };
	enum outcome o;
	json_t *j;

	*out = c->listing;
	if (c->listing)
		return OUTCOME_OK;
	o = api_send(c, &r);
	if (o != OUTCOME_OK)
		return o;
	if (!api_2xx(c)) {
		const json_t *err;
		const char *code;

		j = api_body(c);
		code = error_code(j, &err);
		if (c->resp.status == 404 && code && strcmp(code, "NOT_FOUND") == 0)
			c->listing = json_array();
		else
			o = failure(c, &r, j);
		json_decref(j);
	} else {
		j = api_json(c, &r);
		o = api_want_array(c, &r, &j);
		c->listing = j;
	}
	*out = c->listing;
	return o;
}

struct entry {
	struct ipaddr net;
	unsigned len;
	const char *key;    /* the net address as Robot gave it */
	const char *active; /* NULL when unrouted */
	json_t *obj;        /* the "failover" object */
};

/* One list element; -1 when it is not a failover object we can read. The
 * netmask is "255.255.255.248" or "ffff:ffff:ffff:ffff::" (one client reads
 * a numeric "mask" instead: taken too); without either, the address alone. */
static int
entry_read(json_t *e, struct entry *out)
{
	json_t *fo = json_object_get(e, "failover");
	const json_t *mask = json_object_get(fo, "netmask");
	struct ipaddr m;

	if (!json_is_object(fo) || json_string_or_null(fo, "ip", &out->key) < 0 || !out->key ||
	    ipaddr_parse(out->key, &out->net) < 0 ||
	    json_string_or_null(fo, "active_server_ip", &out->active) < 0)
		return -1;
	out->obj = fo;
	out->len = out->net.family == AF_INET ? 32 : 128;
	if (json_is_string(mask)) {
		int len;

		if (ipaddr_parse(json_string_value(mask), &m) < 0 || m.family != out->net.family ||
		    (len = ipaddr_mask_len(&m)) < 0)
			return -1;
		out->len = (unsigned)len;
	} else if (json_is_integer(mask = json_object_get(fo, "mask"))) {
		if (json_integer_value(mask) < 0 || json_integer_value(mask) > (json_int_t)out->len)
			return -1;
		out->len = (unsigned)json_integer_value(mask);
	}
	return 0;
}

/* The failover IP or net of the listing that holds ip (and, for a prefix
 * given, all of it); the narrowest when several do. */
static int
entry_for(json_t *listing, const struct fip *ip, struct entry *out)
{
	struct ipaddr a;
	unsigned alen;
	int found = 0;

	if (ipaddr_parse_net(ip->text, &a, &alen) < 0)
		return 0;
	for (size_t k = 0; k < json_array_size(listing); k++) {
		struct entry e;

		if (entry_read(json_array_get(listing, k), &e) < 0 || e.len > alen ||
		    !ipaddr_in_net(&a, &e.net, e.len))
			continue;
		if (!found || e.len > out->len)
			*out = e;
		found = 1;
	}
	return found;
}

static enum outcome
lookup(struct ctx *c, struct fip **ips, size_t n)
{
	enum outcome o;
	json_t *listing;

	o = fetch_listing(c, &listing);
	if (o != OUTCOME_OK)
		return o;
	for (size_t i = 0; i < n; i++) {
		struct entry e;

		if (ips[i]->state != ST_PENDING)
			continue;
		if (!entry_for(listing, ips[i], &e)) {
			fip_set_unknown(ips[i]);
			continue;
		}
		fip_set_block(ips[i], e.key, e.len, "net");
		fip_set_current(ips[i], e.active);
	}
	return OUTCOME_OK;
}

/* Keeps the listing of this run true after a switch. */
static void
listing_routed(struct ctx *c, const char *key, const char *dest)
{
	for (size_t k = 0; k < json_array_size(c->listing); k++) {
		struct entry e;

		if (entry_read(json_array_get(c->listing, k), &e) == 0 && strcmp(e.key, key) == 0) {
			json_object_set_new(e.obj, "active_server_ip", json_string(dest));
			return;
		}
	}
}

static enum outcome
move_one(struct ctx *c, struct fip *ip, const char *dest)
{
	char *path = xasprintf("/failover/%s", ip->block);
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
	if (o != OUTCOME_OK) {
		drop_listing(c);
	} else {
		const json_t *err;
		json_t *j = api_body(c);
		const char *code = error_code(j, &err);

		if (code && strcmp(code, "FAILOVER_ALREADY_ROUTED") == 0) {
			ip->state = ST_UNCHANGED;
			listing_routed(c, ip->block, dest);
		} else if (api_2xx(c)) {
			const char *active = NULL;
			const json_t *fo = json_object_get(j, "failover");

			if (!j || json_string_or_null(fo, "active_server_ip", &active) < 0)
				log_warn("%s: %s: switched, but the reply shows no route", ip->text,
				         c->cfg->peer);
			else if (!ipaddr_same(active, dest))
				log_warn("%s: %s: switched, but the reply shows it at %s", ip->text,
				         c->cfg->peer, active ? active : "nowhere");
			ip->state = ST_ROUTED;
			listing_routed(c, ip->block, dest);
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
	enum outcome o;
	json_t *listing;

	o = fetch_listing(c, &listing);
	if (o != OUTCOME_OK)
		return o;
	for (size_t k = 0; k < json_array_size(listing); k++) {
		char text[IPADDR_STRLEN + 8];
		struct entry e;

		if (entry_read(json_array_get(listing, k), &e) < 0)
			continue;
		if (e.len == (e.net.family == AF_INET ? 32u : 128u))
			snprintf(text, sizeof text, "%s", e.key);
		else
			snprintf(text, sizeof text, "%s/%u", e.key, e.len);
		list_line(out, &provider_hetzner, text, e.active);
	}
	return OUTCOME_OK;
}

const struct provider provider_hetzner = {
	.name = "hetzner",
	.default_url = "https://robot-ws.your-server.de",
	.batch = 0,
	.dest6 = 1,
	.check = check,
	.valid_dest = ipaddr_valid,
	.same_dest = ipaddr_same,
	.lookup = lookup,
	.move = move,
	.list = list,
};
