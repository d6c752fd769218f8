/* One-shot mode: parse endpoints (operands or stdin), resolve names, connect
 * to all of them at once under one deadline, print one line per endpoint in
 * the order given. */
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "tcpcheck.h"
#include "util.h"

struct endpoint {
	char *host; /* as written, without brackets */
	uint16_t port;
	unsigned line; /* stdin line, 0 for operands */
	struct probe *probes;
	size_t nprobes, pending;
	enum probe_state result;
	int err;
	const char *why; /* resolver error */
	int64_t us;
	char addr[IPADDR_STRLEN]; /* the address that answered (or the first one tried) */
	int done;
};

struct run {
	struct endpoint *ep;
	size_t n, cap, next_print;
	const struct oneshot_opts *o;
	struct prober pr;
	size_t nopen, nuntried;
};

struct parse_ctx {
	struct run *r;
	const char *where; /* "stdin" or "operand" */
	unsigned line;
	char *cur_host;
	int host_has_port;
};

static int
parse_fail(struct parse_ctx *c, const char *tok, const char *why)
{
	if (c->line)
		log_err("%s:%u: %s: %s", c->where, c->line, tok, why);
	else
		log_err("%s: %s", tok, why);
	return -1;
}

static void
add_endpoint(struct parse_ctx *c, const char *host, uint16_t port)
{
	struct run *r = c->r;

	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 64;
		r->ep = xreallocarray(r->ep, r->cap, sizeof *r->ep);
	}
	memset(&r->ep[r->n], 0, sizeof r->ep[r->n]);
	r->ep[r->n].host = xstrdup(host);
	r->ep[r->n].port = port;
	r->ep[r->n].line = c->line;
	r->n++;
}

static int
end_host(struct parse_ctx *c)
{
	int rc = 0;

	if (c->cur_host && !c->host_has_port)
		rc = parse_fail(c, c->cur_host, "no port given for this host");
	free(c->cur_host);
	c->cur_host = NULL;
	c->host_has_port = 0;
	return rc;
}

static int
set_host(struct parse_ctx *c, const char *host, size_t len)
{
	if (end_host(c) < 0)
		return -1;
	c->cur_host = xstrndup(host, len);
	return 0;
}

/* One token: "[v6]:PORT", "HOST:PORT", a bare PORT (for the current host)
 * or a HOST (ports follow). */
static int
parse_token(struct parse_ctx *c, const char *tok)
{
	const char *colon = strchr(tok, ':');
	uint16_t port;

	if (tok[0] == '[') {
		const char *close = strchr(tok, ']');
		if (!close || close == tok + 1 || close[1] != ':')
			return parse_fail(c, tok, "want [ADDRESS]:PORT");
		if (parse_port(close + 2, &port) < 0)
			return parse_fail(c, tok, "bad port (1-65535)");
		if (set_host(c, tok + 1, close - tok - 1) < 0)
			return -1;
	} else if (tok[strspn(tok, "0123456789")] == '\0') {
		if (!c->cur_host)
			return parse_fail(c, tok, "a port without a host before it");
		if (parse_port(tok, &port) < 0)
			return parse_fail(c, tok, "bad port (1-65535)");
	} else if (colon && !strchr(colon + 1, ':')) {
		if (colon == tok)
			return parse_fail(c, tok, "empty host");
		if (parse_port(colon + 1, &port) < 0)
			return parse_fail(c, tok, "bad port (1-65535)");
		if (set_host(c, tok, colon - tok) < 0)
			return -1;
	} else {
		return set_host(c, tok, strlen(tok));
	}
	add_endpoint(c, c->cur_host, port);
	c->host_has_port = 1;
	return 0;
}

static int
parse_operands(struct run *r, char **argv, int n)
{
	struct parse_ctx c = { .r = r, .where = "operand" };

	for (int i = 0; i < n; i++)
		if (parse_token(&c, argv[i]) < 0)
			return free(c.cur_host), -1;
	return end_host(&c);
}

/* One endpoint (or HOST PORT...) per line; blank lines and # comments skipped. */
static int
parse_stdin(struct run *r)
{
	struct parse_ctx c = { .r = r, .where = "stdin" };
	char *line = NULL;
	size_t cap = 0;
	int rc = 0;

	while (rc == 0 && getline(&line, &cap, stdin) >= 0) {
		char *save = NULL, *tok;
		c.line++;
		line[strcspn(line, "#")] = '\0';
		for (tok = strtok_r(line, " \t\r\n", &save); tok && rc == 0;
		     tok = strtok_r(NULL, " \t\r\n", &save))
			rc = parse_token(&c, tok);
		if (rc == 0)
			rc = end_host(&c);
	}
	if (ferror(stdin)) {
		log_err("stdin: %s", strerror(errno));
		rc = -1;
	}
	free(line);
	free(c.cur_host);
	return rc;
}

void
oneshot_print(const struct oneshot_opts *o, const char *host, unsigned port, enum probe_state state,
              long ms, const char *addr, const char *error)
{
	if (o->quiet)
		return;
	if (o->json) {
		json_t *j = json_object();
		/* json_string refuses bytes that are not UTF-8 */
		json_t *h = json_string(host);
		json_object_set_new(j, "host", h ? h : json_string("?"));
		json_object_set_new(j, "port", json_integer(port));
		json_object_set_new(j, "state", json_string(probe_state_name(state)));
		json_object_set_new(j, "ms", json_integer(ms));
		if (addr && addr[0])
			json_object_set_new(j, "address", json_string(addr));
		if (state == PROBE_CLOSED && error)
			json_object_set_new(j, "error", json_string(error));
		char *s = json_dumps(j, JSON_COMPACT);
		printf("%s\n", s);
		free(s);
		json_decref(j);
	} else {
		printf("%s %u %s %ld\n", host, port, probe_state_name(state), ms);
	}
}

static void
print_ready(struct run *r)
{
	for (; r->next_print < r->n && r->ep[r->next_print].done; r->next_print++) {
		struct endpoint *e = &r->ep[r->next_print];

		oneshot_print(r->o, e->host, e->port, e->result, (long)(e->us / 1000), e->addr,
		              e->why ? e->why : strerror(e->err));
	}
	fflush(stdout);
}

static void
endpoint_done(struct run *r, struct endpoint *e)
{
	e->done = 1;
	if (e->result == PROBE_OPEN)
		r->nopen++;
	else if (e->result == PROBE_UNTRIED)
		r->nuntried++;
	if (e->result == PROBE_CLOSED && (log_verbose || e->why))
		log_warn("%s port %u: %s", e->host, e->port, e->why ? e->why : strerror(e->err));
	print_ready(r);
}

/* An endpoint with several addresses (a name with A and AAAA records) is
 * open as soon as one of them is; otherwise an address not tried leaves it
 * untried (it may be open), and timeout wins over closed. */
static int
rank(enum probe_state s)
{
	switch (s) {
	case PROBE_OPEN:
		return 4;
	case PROBE_UNTRIED:
		return 3;
	case PROBE_TIMEOUT:
		return 2;
	case PROBE_CLOSED:
		return 1;
	default:
		return 0;
	}
}

static void
on_probe(struct probe *p)
{
	struct run *r = ((void **)p->user)[0];
	struct endpoint *e = ((void **)p->user)[1];
	struct ipaddr ip;

	if (e->done)
		return;
	e->pending--;
	if (rank(p->state) > rank(e->result)) {
		e->result = p->state;
		e->err = p->err;
		e->us = p->elapsed_us;
		ipaddr_from_sockaddr((const struct sockaddr *)&p->addr, &ip);
		ipaddr_format(&ip, e->addr);
	}
	if (p->state == PROBE_OPEN) {
		for (size_t i = 0; i < e->nprobes; i++)
			if (&e->probes[i] != p)
				prober_cancel(&r->pr, &e->probes[i]);
		e->pending = 0;
	}
	if (e->pending == 0)
		endpoint_done(r, e);
}

struct resolved {
	char *host;
	struct addrinfo *ai;
	int gai_err;
};

/* Names resolve here, before the deadline starts, each distinct host once. */
static void
resolve_all(struct run *r, struct resolved **out, size_t *nout)
{
	struct resolved *res = NULL;
	size_t nres = 0;

	for (size_t i = 0; i < r->n; i++) {
		struct endpoint *e = &r->ep[i];
		struct resolved *hit = NULL;
		if (nres && strcmp(res[nres - 1].host, e->host) == 0)
			hit = &res[nres - 1];
		for (size_t j = 0; j < nres && !hit; j++)
			if (strcmp(res[j].host, e->host) == 0)
				hit = &res[j];
		if (!hit) {
			struct addrinfo hints = { .ai_family = AF_UNSPEC,
				                  .ai_socktype = SOCK_STREAM,
				                  .ai_flags = AI_NUMERICSERV };
			if (nres % 64 == 0)
				res = xreallocarray(res, nres + 64, sizeof *res);
			hit = &res[nres++];
			hit->host = e->host;
			hit->ai = NULL;
			hit->gai_err = getaddrinfo(e->host, "1", &hints, &hit->ai);
		}
		if (hit->gai_err) {
			e->why = gai_strerror(hit->gai_err);
			continue;
		}
		for (struct addrinfo *a = hit->ai; a; a = a->ai_next)
			e->nprobes++;
	}
	*out = res;
	*nout = nres;
}

/* Endpoints of one host usually come in a row: try the previous hit first. */
static const struct resolved *
find_resolved(const struct resolved *res, size_t n, const char *host, size_t hint)
{
	if (hint < n && strcmp(res[hint].host, host) == 0)
		return &res[hint];
	for (size_t i = 0; i < n; i++)
		if (strcmp(res[i].host, host) == 0)
			return &res[i];
	return NULL;
}

static void
start_all(struct run *r, const struct resolved *res, size_t nres, void **ctx)
{
	int64_t deadline = mono_ms() + r->o->timeout_ms;
	size_t hint = 0;

	/* Every probe is set up before the first starts: a start may finish
	 * (and print) at once, which looks at later endpoints. */
	for (size_t i = 0; i < r->n; i++) {
		struct endpoint *e = &r->ep[i];
		const struct resolved *h;
		size_t k = 0;

		ctx[2 * i] = r;
		ctx[2 * i + 1] = e;
		e->result = PROBE_IDLE;
		if (e->why || !(h = find_resolved(res, nres, e->host, hint))) {
			e->result = PROBE_CLOSED;
			e->err = EHOSTUNREACH;
			continue;
		}
		hint = h - res;
		e->probes = xcalloc(e->nprobes, sizeof *e->probes);
		for (struct addrinfo *a = h->ai; a; a = a->ai_next, k++) {
			struct probe *p = &e->probes[k];
			struct ipaddr ip;
			ipaddr_from_sockaddr(a->ai_addr, &ip);
			p->addrlen = ipaddr_to_sockaddr(&ip, e->port, &p->addr);
			p->deadline_ms = deadline;
			p->done = on_probe;
			p->user = &ctx[2 * i];
		}
		e->pending = e->nprobes;
	}
	for (size_t i = 0; i < r->n; i++) {
		struct endpoint *e = &r->ep[i];
		if (!e->probes) {
			endpoint_done(r, e);
			continue;
		}
		for (size_t k = 0; k < e->nprobes && !e->done; k++)
			prober_start(&r->pr, &e->probes[k]);
	}
}

/* --wait: wait.c tries the endpoints with their addresses */
static int
run_wait(const struct run *r, const struct resolved *res, size_t nres)
{
	struct wait_endpoint *w = xcalloc(r->n, sizeof *w);
	size_t hint = 0;
	int rc;

	for (size_t i = 0; i < r->n; i++) {
		const struct endpoint *e = &r->ep[i];
		const struct resolved *h = find_resolved(res, nres, e->host, hint);

		w[i] = (struct wait_endpoint){ e->host, e->port, NULL, e->why };
		if (h && !e->why) {
			w[i].ai = h->ai;
			hint = h - res;
		}
	}
	rc = wait_main(r->o, w, r->n);
	free(w);
	return rc;
}

/* 0 healthy, 1 unhealthy; 2 when endpoints not tried could still decide
 * it: with --any none of those tried is open, with --all every one tried is. */
static int
exit_status(const struct run *r)
{
	if (r->o->any)
		return r->nopen > 0 ? 0 : r->nuntried ? 2 : 1;
	if (r->nopen == r->n)
		return 0;
	return r->nopen + r->nuntried == r->n ? 2 : 1;
}

int
oneshot_main(const struct oneshot_opts *o, char **operands, int n)
{
	struct run r = { .o = o };
	struct resolved *res = NULL;
	size_t nres = 0, nprobes = 0;
	void **ctx;
	int rc;

	if (n > 0)
		rc = parse_operands(&r, operands, n);
	else
		rc = parse_stdin(&r);
	if (rc == 0 && r.n == 0) {
		log_err("stdin: no endpoints");
		rc = -1;
	}
	if (rc < 0) {
		for (size_t i = 0; i < r.n; i++)
			free(r.ep[i].host);
		free(r.ep);
		return EXIT_DATAERR;
	}
	resolve_all(&r, &res, &nres);
	/* A socket for every address at once, if the limit can be raised so. */
	for (size_t i = 0; i < r.n; i++)
		nprobes += r.ep[i].nprobes;
	raise_nofile_limit_to(nprobes + PROBE_FD_RESERVE);
	if (o->wait_s > 0) {
		rc = run_wait(&r, res, nres);
		goto out;
	}
	if (prober_init(&r.pr, open_files_budget(PROBE_FD_RESERVE)) < 0)
		die(EXIT_OSERR, "epoll: %s", strerror(errno));
	ctx = xcalloc(2 * r.n, sizeof *ctx);
	start_all(&r, res, nres, ctx);
	while (r.next_print < r.n) {
		int64_t wait = prober_next_deadline(&r.pr) - mono_ms();
		prober_poll(&r.pr, wait < 0 ? 0 : wait > 1000 ? 1000 : (int)wait);
	}

	if (r.nuntried)
		log_warn("%zu endpoint%s not tried before the deadline: at most %zu connections at "
		         "once (open-files limit %zu)",
		         r.nuntried, r.nuntried == 1 ? "" : "s", r.pr.max_inflight,
		         open_files_limit());
	rc = exit_status(&r);
	free(ctx);
	prober_free(&r.pr);
out:
	for (size_t i = 0; i < nres; i++)
		if (res[i].ai)
			freeaddrinfo(res[i].ai);
	for (size_t i = 0; i < r.n; i++) {
		free(r.ep[i].host);
		free(r.ep[i].probes);
	}
	free(res);
	free(r.ep);
	return rc;
}
