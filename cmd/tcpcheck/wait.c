/* tcpcheck --wait: the one-shot check for endpoints that are still coming
 * up. Every endpoint that is not open is tried again and again, quietly,
 * until all are open (0) or the deadline has passed (2, naming those that
 * were not); never longer. The waiting is lib/ready's, the one
 * pve-start-plan uses. An endpoint's addresses (a name with A and AAAA
 * records) are tried at once and one that opens is enough. */
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "ipaddr.h"
#include "log.h"
#include "ready.h"
#include "tcpcheck.h"
#include "util.h"

/* The targets of endpoint i are in a row, group i + 1: the first that
 * opened, else the last one tried; NULL when it has none. */
static const struct ready *
outcome(const struct ready *t, size_t nt, size_t *k, size_t i)
{
	const struct ready *x = NULL;

	for (; *k < nt && t[*k].group == i + 1; (*k)++)
		if (!x || !x->ok)
			x = &t[*k];
	return x;
}

int
wait_main(const struct oneshot_opts *o, const struct wait_endpoint *ep, size_t n)
{
	int64_t wait_ms = (int64_t)(o->wait_s * 1000), t0, took;
	struct ready *t = NULL;
	struct buf late = { 0 };
	size_t nt = 0, left = 0;

	for (size_t i = 0; i < n; i++) {
		for (const struct addrinfo *a = ep[i].ai; a; a = a->ai_next) {
			struct ipaddr ip;
			struct sockaddr_storage sa;
			socklen_t len;

			ipaddr_from_sockaddr(a->ai_addr, &ip);
			len = ipaddr_to_sockaddr(&ip, ep[i].port, &sa);
			t = xreallocarray(t, nt + 1, sizeof *t);
			ready_port(&t[nt], (struct sockaddr *)&sa, len);
			t[nt++].group = (unsigned)i + 1;
		}
	}
	t0 = mono_ms();
	ready_wait(t, nt, wait_ms, o->timeout_ms, READY_RETRY_MS);
	took = mono_ms() - t0;
	if (took > wait_ms)
		took = wait_ms; /* a not-ready line says how long it was waited for */

	for (size_t i = 0, k = 0; i < n; i++) {
		const struct ready *x = outcome(t, nt, &k, i);
		enum probe_state st = !x             ? PROBE_CLOSED
		                      : x->ok        ? PROBE_OPEN
		                      : x->timed_out ? PROBE_TIMEOUT
		                                     : PROBE_CLOSED;
		const char *why = x ? x->why : ep[i].why;
		char addr[IPADDR_STRLEN] = "";

		if (x) {
			struct ipaddr ip;
			ipaddr_from_sockaddr((const struct sockaddr *)&x->addr, &ip);
			ipaddr_format(&ip, addr);
		}
		oneshot_print(o, ep[i].host, ep[i].port, st,
		              st == PROBE_OPEN ? (long)x->ms : (long)took, addr, why);
		if (st == PROBE_OPEN)
			continue;
		left++;
		buf_printf(&late, strchr(ep[i].host, ':') ? " [%s]:%u" : " %s:%u", ep[i].host,
		           ep[i].port);
		if (!o->quiet)
			log_warn("%s port %u: %s", ep[i].host, ep[i].port, why ? why : "not open");
	}
	fflush(stdout);
	if (left && took < wait_ms)
		log_err("not open (no address to try):%s", late.data);
	else if (left)
		log_err("not open after %g s:%s", o->wait_s, late.data);
	buf_free(&late);
	free(t);
	return left ? EXIT_TIMEOUT : 0;
}
