/* OVHcloud API: every call is signed ("$1$" + SHA-1 over the application
 * secret, consumer key, method, full URL, body and timestamp) with the
 * timestamp taken from the server's clock (GET /auth/time, once a run).
 * IPs are keyed by the exact block (an address with its prefix, "/"
 * encoded as %2F in the path): GET /ip?ip=ADDR&type=failover finds the
 * block that holds an address, GET /ip/{block} reads routedTo.serviceName,
 * POST /ip/{block}/move {"to": SERVICE} starts a task (409 while another
 * move of the block is pending) that is polled with GET
 * /ip/{block}/task/{id} until it is done. Before posting, a pending move
 * (GET /ip/{block}/task?function=genericMoveFloatingIp&status=...) is
 * followed instead. The destination is the service name of the target
 * server (e.g. ns3000002.ip-198-51-100.eu), not an IP. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "failoverip.h"
#include "ipfile.h"
#include "log.h"
#include "sign.h"
#include "util.h"

struct auth {
	char *lines[4];
	const char *headers[5];
};

static int
check(const struct config *cfg, char *err, size_t errlen)
{
	if (!cfg->app_key || !cfg->app_secret || !cfg->consumer_key) {
		snprintf(err, errlen,
		         "provider ovh needs application_key, application_secret and consumer_key");
		return -1;
	}
	return 0;
}

static void
auth_free(struct auth *a)
{
	for (size_t i = 0; i < ARRAY_LEN(a->lines); i++) {
		if (!a->lines[i])
			continue;
		explicit_bzero(a->lines[i], strlen(a->lines[i]));
		free(a->lines[i]);
		a->lines[i] = NULL;
	}
}

static void
auth_init(struct ctx *c, struct auth *a, const struct api_req *r)
{
	const struct config *cfg = c->cfg;
	char *url = xasprintf("%s%s", cfg->api_url, r->path);
	long long ts = (long long)time(NULL) + c->delta;
	char sig[OVH_SIGNATURE_LEN + 1];

	ovh_signature(cfg->app_secret, cfg->consumer_key, r->method, url, r->body, ts, sig);
	a->lines[0] = xasprintf("X-Ovh-Application: %s", cfg->app_key);
	a->lines[1] = xasprintf("X-Ovh-Consumer: %s", cfg->consumer_key);
	a->lines[2] = xasprintf("X-Ovh-Timestamp: %lld", ts);
	a->lines[3] = xasprintf("X-Ovh-Signature: %s", sig);
	for (size_t i = 0; i < 4; i++)
		a->headers[i] = a->lines[i];
	a->headers[4] = NULL;
	explicit_bzero(sig, sizeof sig);
	free(url);
}

/* The server's clock minus ours; OVH refuses timestamps far off its own. */
static enum outcome
clock_delta(struct ctx *c)
{
	struct api_req r = { .method = "GET", .path = "/auth/time" };
	long long now, server;
	enum outcome o;
	json_t *j;

	if (c->have_delta)
		return OUTCOME_OK;
	o = api_send(c, &r);
	if (o != OUTCOME_OK)
		return o;
	if (!api_2xx(c))
		return api_status(c, &r, NULL);
	now = (long long)time(NULL);
	j = api_json(c, &r);
	if (!j)
		return OUTCOME_BADREPLY;
	if (!json_is_integer(j)) {
		json_decref(j);
		return api_fail(c, OUTCOME_BADREPLY, &r, "reply is not an integer");
	}
	server = (long long)json_integer_value(j);
	json_decref(j);
	c->delta = server - now;
	c->have_delta = 1;
	if (c->delta > 30 || c->delta < -30)
		log_debug("%s: server clock is %+lld s off ours", c->cfg->peer, c->delta);
	return OUTCOME_OK;
}

/* One signed request; a non-2xx answer is mapped to an outcome. Any 400
 * about the signature or a 401/403 is an authentication failure. */
static enum outcome
signed_call(struct ctx *c, struct api_req *r, json_t **reply)
{
	struct auth a = { 0 };
	enum outcome o;

	*reply = NULL;
	o = clock_delta(c);
	if (o != OUTCOME_OK)
		return o;
	auth_init(c, &a, r);
	r->auth_headers = a.headers;
	o = api_send(c, r);
	auth_free(&a);
	r->auth_headers = NULL;
	if (o != OUTCOME_OK)
		return o;
	if (!api_2xx(c)) {
		json_t *j = api_body(c);
		const char *code = json_string_value(json_object_get(j, "errorCode"));

		o = api_status(c, r, NULL);
		if (c->resp.status == 400 && code && strcmp(code, "INVALID_SIGNATURE") == 0)
			o = OUTCOME_AUTH;
		json_decref(j);
		return o;
	}
	*reply = api_json(c, r);
	return *reply ? OUTCOME_OK : OUTCOME_BADREPLY;
}

/* "/ip/" and the block, "/" encoded as %2F. */
static char *
block_path(const struct fip *ip)
{
	char *enc = http_escape(ip->block);
	char *path = xasprintf("/ip/%s", enc);

	free(enc);
	return path;
}

/* The failover block that holds ip: GET /ip?ip=IP&type=failover lists the
 * blocks that contain or equal it, and GET /ip/{block} knows only the exact
 * block (an address of a /29 is not /ip/ADDR%2F32). The narrowest of them;
 * OUTCOME_UNKNOWN when none. */
static enum outcome
resolve_block(struct ctx *c, struct fip *ip)
{
	char *enc = http_escape(ip->text);
	char *path = xasprintf("/ip?ip=%s&type=failover", enc);
	struct api_req r = { .method = "GET", .path = path };
	unsigned alen;
	struct ipaddr a;
	enum outcome o;
	json_t *blocks;

	o = signed_call(c, &r, &blocks);
	if (o == OUTCOME_OK)
		o = api_want_array(c, &r, &blocks);
	if (o == OUTCOME_OK && ipaddr_parse_net(ip->text, &a, &alen) == 0) {
		const char *best = NULL;
		unsigned best_len = 0;

		for (size_t k = 0; k < json_array_size(blocks); k++) {
			const char *b = json_string_value(json_array_get(blocks, k));
			struct ipaddr net;
			unsigned len;

			if (!b || ipaddr_parse_net(b, &net, &len) < 0 || len > alen ||
			    !ipaddr_in_net(&a, &net, len) || (best && len <= best_len))
				continue;
			best = b;
			best_len = len;
		}
		if (best) {
			char *key =
			    strchr(best, '/') ? xstrdup(best) : xasprintf("%s/%u", best, best_len);
			fip_set_block(ip, key, best_len, "block");
			free(key);
		} else {
			o = OUTCOME_UNKNOWN;
		}
	}
	json_decref(blocks);
	free(path);
	free(enc);
	return o;
}

static enum outcome
lookup_one(struct ctx *c, struct fip *ip)
{
	struct api_req r = { .method = "GET" };
	const char *svc = NULL;
	const json_t *to;
	enum outcome o;
	json_t *j;
	char *path;

	if (!ip->block && (o = resolve_block(c, ip)) != OUTCOME_OK)
		return o;
	path = block_path(ip);
	r.path = path;
	o = signed_call(c, &r, &j);
	if (o == OUTCOME_REFUSED && c->resp.status == 404) {
		o = OUTCOME_UNKNOWN;
	} else if (o == OUTCOME_OK) {
		to = json_object_get(j, "routedTo");
		if (!json_is_object(j) ||
		    (!json_is_null(to) && to && json_string_or_null(to, "serviceName", &svc) < 0))
			o = api_fail(c, OUTCOME_BADREPLY, &r, "no routedTo.serviceName");
		else
			fip_set_current(ip, svc);
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

static int
same_service(const char *a, const char *b)
{
	return a && b && strcasecmp(a, b) == 0;
}

/* The service a move task goes to, NULL when it does not say. */
static const char *
task_destination(const json_t *task)
{
	return json_string_value(
	    json_object_get(json_object_get(task, "destination"), "serviceName"));
}

static int
task_over(const char *status)
{
	return strcmp(status, "done") == 0 || strcmp(status, "cancelled") == 0 ||
	       strcmp(status, "customerError") == 0 || strcmp(status, "ovhError") == 0;
}

/* Polls the move task until it is done, fails, or the deadline passes. A
 * task that moved the block somewhere else than dest (another client's,
 * followed instead of posting a second move) leaves it to be moved again. */
static enum outcome
poll_task(struct ctx *c, struct fip *ip, const char *dest)
{
	char *base = block_path(ip);
	char *path = xasprintf("%s/task/%lld", base, ip->task_id);
	int64_t interval = (int64_t)(c->cfg->poll_interval * 1000);
	struct api_req r = { .method = "GET", .path = path };
	enum outcome o;
	json_t *j;

	for (;;) {
		const char *status, *to;

		o = signed_call(c, &r, &j);
		if (o != OUTCOME_OK)
			break;
		status = json_string_value(json_object_get(j, "status"));
		to = task_destination(j);
		if (!status) {
			o = api_fail(c, OUTCOME_BADREPLY, &r, "task without a status");
		} else if (to && !same_service(to, dest) && task_over(status)) {
			o = api_fail(c, OUTCOME_TRANSIENT, &r,
			             "task %lld (a move of %s to %s) ended %s: moving it here",
			             ip->task_id, ip->block, to, status);
			ip->task_id = 0;
		} else if (strcmp(status, "done") == 0) {
			ip->state = ST_ROUTED;
			ip->task_id = 0;
		} else if (strcmp(status, "cancelled") == 0 ||
		           strcmp(status, "customerError") == 0) {
			const char *comment = json_string_value(json_object_get(j, "comment"));
			o = api_fail(c, OUTCOME_REFUSED, &r, "task %lld ended %s%s%s", ip->task_id,
			             status, comment ? ": " : "", comment ? comment : "");
			ip->task_id = 0;
		} else if (strcmp(status, "ovhError") == 0) {
			/* OVH's own failure: try the move again. */
			o = api_fail(c, OUTCOME_TRANSIENT, &r, "task %lld ended ovhError",
			             ip->task_id);
			ip->task_id = 0;
		} else if (wait_within(c, interval) < 0) {
			o = api_fail(c, OUTCOME_TIMEOUT, &r, "task %lld still %s after %.3g s",
			             ip->task_id, status, c->cfg->timeout);
		} else {
			json_decref(j);
			continue;
		}
		json_decref(j);
		break;
	}
	free(path);
	free(base);
	return o;
}

/* A move of ip's block that is under way already (status init, todo or
 * doing): its task id in *id and destination in *to (malloc'ed, NULL when
 * the task does not say); *id 0 when there is none. OVH refuses a second
 * move of a block while one is pending (409). */
static enum outcome
pending_move(struct ctx *c, struct fip *ip, long long *id, char **to)
{
	static const char *const pending[] = { "todo", "doing", "init" };
	char *base = block_path(ip);
	enum outcome o = OUTCOME_OK;

	*id = 0;
	*to = NULL;
	for (size_t i = 0; o == OUTCOME_OK && !*id && i < ARRAY_LEN(pending); i++) {
		char *path =
		    xasprintf("%s/task?function=genericMoveFloatingIp&status=%s", base, pending[i]);
		struct api_req r = { .method = "GET", .path = path };
		json_t *ids, *task;

		o = signed_call(c, &r, &ids);
		if (o == OUTCOME_OK)
			o = api_want_array(c, &r, &ids);
		for (size_t k = 0; o == OUTCOME_OK && !*id && k < json_array_size(ids); k++) {
			json_int_t tid = json_integer_value(json_array_get(ids, k));
			char *tpath = xasprintf("%s/task/%lld", base, (long long)tid);
			struct api_req t = { .method = "GET", .path = tpath };

			if (tid > 0 && (o = signed_call(c, &t, &task)) == OUTCOME_OK) {
				const char *status =
				    json_string_value(json_object_get(task, "status"));

				if (status &&
				    (strcmp(status, "init") == 0 || strcmp(status, "todo") == 0 ||
				     strcmp(status, "doing") == 0)) {
					*id = (long long)tid;
					*to = task_destination(task)
					          ? xstrdup(task_destination(task))
					          : NULL;
				}
				json_decref(task);
			}
			free(tpath);
		}
		json_decref(ids);
		free(path);
	}
	free(base);
	return o;
}

/* Follows a pending move instead of posting another: to dest, it is our
 * move; elsewhere, it is waited for and the block moved again. */
static enum outcome
follow_pending(struct ctx *c, struct fip *ip, const char *dest, long long id, const char *to)
{
	if (to && !same_service(to, dest)) {
		log_info("%s: a move of %s to %s is under way (task %lld): waiting for it",
		         ip->text, ip->block, to, id);
	} else {
		log_info("%s: a move of %s to %s is under way (task %lld): following it, "
		         "not moving it again",
		         ip->text, ip->block, dest, id);
		ip->move_sent = 1;
	}
	ip->task_id = id;
	return poll_task(c, ip, dest);
}

static enum outcome
move_one(struct ctx *c, struct fip *ip, const char *dest)
{
	char *base, *path;
	char *body, *to = NULL;
	struct api_req r = { .method = "POST", .content_type = "application/json" };
	json_t *j, *req;
	json_int_t id;
	long long pending;
	enum outcome o;

	if (ip->task_id)
		return poll_task(c, ip, dest);
	o = pending_move(c, ip, &pending, &to);
	if (o == OUTCOME_OK && pending)
		o = follow_pending(c, ip, dest, pending, to);
	free(to);
	if (o != OUTCOME_OK || pending)
		return o;

	req = json_pack("{ss}", "to", dest);
	body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!body)
		die(EXIT_OSERR, "out of memory");
	base = block_path(ip);
	path = xasprintf("%s/move", base);
	r.path = path;
	r.body = body;
	ip->move_sent = 1;
	o = signed_call(c, &r, &j);
	if (o == OUTCOME_REFUSED && c->resp.status == 409) {
		/* a move of this block started meanwhile: follow it */
		char saved[sizeof c->msg];

		snprintf(saved, sizeof saved, "%s", c->msg);
		o = pending_move(c, ip, &pending, &to);
		if (o == OUTCOME_OK && pending)
			o = follow_pending(c, ip, dest, pending, to);
		else if (o == OUTCOME_OK) {
			snprintf(c->msg, sizeof c->msg, "%s", saved);
			o = OUTCOME_TRANSIENT;
		}
		free(to);
		pending = -1;
	}
	if (o == OUTCOME_OK && pending == 0) {
		id = json_integer_value(json_object_get(j, "taskId"));
		if (id <= 0)
			o = api_fail(c, OUTCOME_BADREPLY, &r, "reply without a taskId");
		else
			ip->task_id = (long long)id;
	}
	json_decref(j);
	free(path);
	free(base);
	free(body);
	if (o != OUTCOME_OK || pending != 0)
		return o;
	log_debug("%s: move task %lld started", ip->text, ip->task_id);
	return poll_task(c, ip, dest);
}

static enum outcome
move(struct ctx *c, struct fip **ips, size_t n, const char *dest)
{
	return api_move_each(c, ips, n, dest, move_one);
}

/* "192.0.2.10/32" is listed as the address alone, as the other providers do. */
static void
list_block(struct buf *out, const char *block, const char *svc)
{
	const char *slash = strchr(block, '/');
	char *ip = slash && (strcmp(slash, "/32") == 0 || strcmp(slash, "/128") == 0)
	               ? xstrndup(block, slash - block)
	               : xstrdup(block);

	list_line(out, &provider_ovh, ip, svc);
	free(ip);
}

static int
valid_block(const char *s)
{
	struct ipaddr net;
	unsigned len;

	return ipaddr_parse_net(s, &net, &len) == 0;
}

static int
valid_dest(const char *dest)
{
	size_t n = strlen(dest);

	if (n == 0 || n > 253 || !isalnum((unsigned char)dest[0]))
		return 0;
	for (const char *p = dest; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_')
			return 0;
	return 1;
}

static enum outcome
list(struct ctx *c, struct buf *out)
{
	struct api_req r = { .method = "GET", .path = "/ip?type=failover" };
	enum outcome o;
	json_t *blocks;
	size_t k;

	o = signed_call(c, &r, &blocks);
	if (o == OUTCOME_OK)
		o = api_want_array(c, &r, &blocks);
	if (o != OUTCOME_OK)
		return o;
	for (k = 0; k < json_array_size(blocks); k++) {
		const json_t *b = json_array_get(blocks, k);
		const char *block = json_string_value(b), *svc = NULL;
		const json_t *to;
		char *enc, *path;
		struct api_req g = { .method = "GET" };
		json_t *ip;

		if (!block || !valid_block(block))
			continue;
		enc = http_escape(block);
		path = xasprintf("/ip/%s", enc);
		g.path = path;
		o = signed_call(c, &g, &ip);
		free(enc);
		free(path);
		if (o != OUTCOME_OK)
			break;
		to = json_object_get(ip, "routedTo");
		if (json_is_object(to))
			json_string_or_null(to, "serviceName", &svc); /* NULL unless a string */
		list_block(out, block, svc);
		json_decref(ip);
	}
	json_decref(blocks);
	return o;
}

const struct provider provider_ovh = {
	.name = "ovh",
	.default_url = "https://eu.api.ovh.com/1.0",
	.batch = 0,
	.check = check,
	.valid_dest = valid_dest,
	.same_dest = same_service,
	.lookup = lookup,
	.move = move,
	.list = list,
};
