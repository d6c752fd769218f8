#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "nl.h"
#include "alloc.h"
#include "clock.h"

/* The kernel fills dump messages up to 32 KiB when the reader's buffer is that large. */
#define NL_BUFSIZE 32768
#define NL_REQSIZE 256  /* our requests: a header and one address */
#define NL_DUMP_TRIES 3 /* a dump interrupted by a table change is redone */

#define NUD_USABLE (NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP)
#define NUD_SETTLED (NUD_REACHABLE | NUD_PERMANENT | NUD_NOARP)

struct rtnl {
	struct mnl_socket *nl;
	unsigned portid, seq;
	char *buf;
};

static void
rtnl_close(struct rtnl *r)
{
	if (r->nl)
		mnl_socket_close(r->nl);
	free(r->buf);
	memset(r, 0, sizeof *r);
}

/* Binds an already opened socket, with a receive deadline. */
static int
rtnl_setup(struct rtnl *r, struct mnl_socket *nl, unsigned groups, char *err, size_t errlen)
{
	struct timeval tv = { NL_TIMEOUT_MS / 1000, (NL_TIMEOUT_MS % 1000) * 1000 };

	r->nl = nl;
	r->buf = xmalloc(NL_BUFSIZE);
	r->seq = (unsigned)mono_ms();
	if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
	    mnl_socket_bind(nl, groups, MNL_SOCKET_AUTOPID) < 0) {
		snprintf(err, errlen, "netlink: %s", strerror(errno));
		rtnl_close(r);
		return -1;
	}
	r->portid = mnl_socket_get_portid(nl);
	return 0;
}

static int
rtnl_open(struct rtnl *r, unsigned groups, char *err, size_t errlen)
{
	struct mnl_socket *nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);

	memset(r, 0, sizeof *r);
	if (!nl) {
		snprintf(err, errlen, "netlink socket: %s", strerror(errno));
		return -1;
	}
	return rtnl_setup(r, nl, groups, err, errlen);
}

struct netns_open {
	int nsfd, err;
	struct mnl_socket *nl;
};

/* A netlink socket belongs to the namespace it was created in; only this
 * thread enters the foreign one, and it ends right after. */
static void *
netns_open_thread(void *arg)
{
	struct netns_open *o = arg;

	if (setns(o->nsfd, CLONE_NEWNET) < 0) {
		o->err = errno;
		return NULL;
	}
	o->nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (!o->nl)
		o->err = errno;
	return NULL;
}

static int
rtnl_open_netns(struct rtnl *r, int nsfd, char *err, size_t errlen)
{
	struct netns_open o = { .nsfd = nsfd };
	pthread_t t;
	int e;

	memset(r, 0, sizeof *r);
	if ((e = pthread_create(&t, NULL, netns_open_thread, &o)) != 0) {
		snprintf(err, errlen, "thread: %s", strerror(e));
		return -1;
	}
	pthread_join(t, NULL);
	if (!o.nl) {
		snprintf(err, errlen, "cannot enter network namespace: %s", strerror(o.err));
		return -1;
	}
	return rtnl_setup(r, o.nl, 0, err, errlen);
}

/* Runs cb over every answer to nlh (a request or a dump) until the kernel
 * says it is done. -1 with errno (EINTR: dump interrupted, EAGAIN: no
 * answer before the deadline, else the kernel's error). */
static int
rtnl_exchange(struct rtnl *r, struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
	int ret;

	nlh->nlmsg_seq = ++r->seq;
	if (mnl_socket_sendto(r->nl, nlh, nlh->nlmsg_len) < 0)
		return -1;
	do {
		ssize_t n = mnl_socket_recvfrom(r->nl, r->buf, NL_BUFSIZE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		ret = mnl_cb_run(r->buf, n, r->seq, r->portid, cb, data);
	} while (ret > 0);
	return ret < 0 ? -1 : 0;
}

static const char *
rtnl_strerror(int e)
{
	return e == EAGAIN ? "no answer from the kernel in time" : strerror(e);
}

/* --- neighbours --- */

struct neigh_list {
	struct nl_neigh *v;
	size_t n, cap;
	int all; /* keep INCOMPLETE/FAILED entries too (for the prober) */
};

static int
neigh_cb(const struct nlmsghdr *nlh, void *data)
{
	struct neigh_list *l = data;
	const struct ndmsg *ndm = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *a;
	struct nl_neigh e = { 0 };
	int have_dst = 0, have_mac = 0;

	if (nlh->nlmsg_type != RTM_NEWNEIGH)
		return MNL_CB_OK;
	if (ndm->ndm_family != AF_INET && ndm->ndm_family != AF_INET6)
		return MNL_CB_OK;
	if (ndm->ndm_flags & NTF_PROXY)
		return MNL_CB_OK;
	if (!l->all && !(ndm->ndm_state & NUD_USABLE))
		return MNL_CB_OK;
	mnl_attr_for_each(a, nlh, sizeof *ndm)
	{
		uint16_t len = mnl_attr_get_payload_len(a);
		switch (mnl_attr_get_type(a)) {
		case NDA_DST:
			if (len != (ndm->ndm_family == AF_INET ? 4 : 16))
				return MNL_CB_OK;
			e.ip.family = ndm->ndm_family;
			memcpy(e.ip.a, mnl_attr_get_payload(a), len);
			have_dst = 1;
			break;
		case NDA_LLADDR:
			if (len == 6) {
				memcpy(e.mac, mnl_attr_get_payload(a), 6);
				have_mac = 1;
			}
			break;
		}
	}
	if (!have_dst || (!l->all && !have_mac))
		return MNL_CB_OK;
	e.state = ndm->ndm_state;
	e.ifindex = ndm->ndm_ifindex;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 256;
		l->v = xreallocarray(l->v, l->cap, sizeof *l->v);
	}
	l->v[l->n++] = e;
	return MNL_CB_OK;
}

static int
neigh_dump(struct rtnl *r, struct neigh_list *l, char *err, size_t errlen)
{
	_Alignas(struct nlmsghdr) char req[NL_REQSIZE];

	for (int try = 0; try < NL_DUMP_TRIES; try++) {
		struct nlmsghdr *nlh = mnl_nlmsg_put_header(req);
		struct ndmsg *ndm;

		nlh->nlmsg_type = RTM_GETNEIGH;
		nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
		ndm = mnl_nlmsg_put_extra_header(nlh, sizeof *ndm);
		ndm->ndm_family = AF_UNSPEC;
		l->n = 0;
		if (rtnl_exchange(r, nlh, neigh_cb, l) == 0)
			return 0;
		if (errno != EINTR)
			break;
	}
	snprintf(err, errlen, "neighbour table: %s",
	         errno == EINTR ? "kept changing during the dump" : rtnl_strerror(errno));
	return -1;
}

int
nl_neigh_dump(struct nl_neigh **out, size_t *n, char *err, size_t errlen)
{
	struct neigh_list l = { 0 };
	struct rtnl r;
	int rc;

	*out = NULL;
	*n = 0;
	if (rtnl_open(&r, 0, err, errlen) < 0)
		return -1;
	rc = neigh_dump(&r, &l, err, errlen);
	rtnl_close(&r);
	if (rc < 0) {
		free(l.v);
		return -1;
	}
	*out = l.v;
	*n = l.n;
	return 0;
}

/* --- addresses --- */

struct addr_list {
	struct nl_ifaddr *v;
	size_t n, cap;
};

static int
addr_cb(const struct nlmsghdr *nlh, void *data)
{
	struct addr_list *l = data;
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *a;
	struct nl_ifaddr e = { 0 };
	const void *local = NULL, *address = NULL;
	size_t alen = ifa->ifa_family == AF_INET ? 4 : 16;

	if (nlh->nlmsg_type != RTM_NEWADDR)
		return MNL_CB_OK;
	if (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6)
		return MNL_CB_OK;
	e.flags = ifa->ifa_flags;
	mnl_attr_for_each(a, nlh, sizeof *ifa)
	{
		uint16_t len = mnl_attr_get_payload_len(a);
		switch (mnl_attr_get_type(a)) {
		case IFA_LOCAL:
			if (len == alen)
				local = mnl_attr_get_payload(a);
			break;
		case IFA_ADDRESS:
			if (len == alen)
				address = mnl_attr_get_payload(a);
			break;
		case IFA_FLAGS:
			if (len == 4)
				e.flags = mnl_attr_get_u32(a);
			break;
		}
	}
	/* On a point-to-point link IFA_ADDRESS is the peer's; ours is IFA_LOCAL. */
	if (!local)
		local = address;
	if (!local)
		return MNL_CB_OK;
	e.ip.family = ifa->ifa_family;
	memcpy(e.ip.a, local, alen);
	e.ifindex = (int)ifa->ifa_index;
	e.prefixlen = ifa->ifa_prefixlen;
	e.scope = ifa->ifa_scope;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xreallocarray(l->v, l->cap, sizeof *l->v);
	}
	l->v[l->n++] = e;
	return MNL_CB_OK;
}

int
nl_addr_dump(int netns_fd, struct nl_ifaddr **out, size_t *n, char *err, size_t errlen)
{
	_Alignas(struct nlmsghdr) char req[NL_REQSIZE];
	struct addr_list l = { 0 };
	struct rtnl r;
	int rc = -1;

	*out = NULL;
	*n = 0;
	if ((netns_fd >= 0 ? rtnl_open_netns(&r, netns_fd, err, errlen)
	                   : rtnl_open(&r, 0, err, errlen)) < 0)
		return -1;
	for (int try = 0; try < NL_DUMP_TRIES; try++) {
		struct nlmsghdr *nlh = mnl_nlmsg_put_header(req);
		struct ifaddrmsg *ifa;

		nlh->nlmsg_type = RTM_GETADDR;
		nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
		ifa = mnl_nlmsg_put_extra_header(nlh, sizeof *ifa);
		ifa->ifa_family = AF_UNSPEC;
		l.n = 0;
		if ((rc = rtnl_exchange(&r, nlh, addr_cb, &l)) == 0 || errno != EINTR)
			break;
	}
	if (rc < 0) {
		snprintf(err, errlen, "addresses: %s",
		         errno == EINTR ? "kept changing during the dump" : rtnl_strerror(errno));
		free(l.v);
		l.v = NULL;
		l.n = 0;
	}
	rtnl_close(&r);
	*out = l.v;
	*n = l.n;
	return rc;
}

/* --- probing --- */

const char *
nl_probe_state_name(enum nl_probe_state s)
{
	switch (s) {
	case NL_PROBE_PENDING:
		return "pending";
	case NL_PROBE_RESOLVED:
		return "resolved";
	case NL_PROBE_FAILED:
		return "failed";
	case NL_PROBE_TIMEOUT:
		return "timeout";
	case NL_PROBE_OFFLINK:
		return "off-link";
	case NL_PROBE_LOCAL:
		return "local";
	case NL_PROBE_NOROUTE:
		return "no-route";
	}
	return "?";
}

struct route_reply {
	int type, oif, has_gw;
	struct ipaddr gw;
};

static int
route_cb(const struct nlmsghdr *nlh, void *data)
{
	struct route_reply *rr = data;
	const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *a;

	if (nlh->nlmsg_type != RTM_NEWROUTE)
		return MNL_CB_OK;
	rr->type = rtm->rtm_type;
	mnl_attr_for_each(a, nlh, sizeof *rtm)
	{
		uint16_t len = mnl_attr_get_payload_len(a);
		switch (mnl_attr_get_type(a)) {
		case RTA_OIF:
			if (len == 4)
				rr->oif = (int)mnl_attr_get_u32(a);
			break;
		case RTA_GATEWAY:
			if (len == 4 || len == 16) {
				rr->has_gw = 1;
				rr->gw.family = len == 4 ? AF_INET : AF_INET6;
				memcpy(rr->gw.a, mnl_attr_get_payload(a), len);
			}
			break;
		case RTA_VIA:
			rr->has_gw = 1;
			break;
		}
	}
	return MNL_CB_STOP;
}

/* Sets p->ifindex from the route to p->ip, or settles p when the address
 * is not a neighbour (local, off-link, unroutable). */
static void
probe_route(struct rtnl *r, struct nl_probe *p)
{
	_Alignas(struct nlmsghdr) char req[NL_REQSIZE];
	char gw[IPADDR_STRLEN], dev[IF_NAMESIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(req);
	struct route_reply rr = { 0 };
	struct rtmsg *rtm;
	size_t alen = p->ip.family == AF_INET ? 4 : 16;

	nlh->nlmsg_type = RTM_GETROUTE;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof *rtm);
	rtm->rtm_family = p->ip.family;
	rtm->rtm_dst_len = (unsigned char)(alen * 8);
	mnl_attr_put(nlh, RTA_DST, alen, p->ip.a);
	if (rtnl_exchange(r, nlh, route_cb, &rr) < 0) {
		p->state = NL_PROBE_NOROUTE;
		snprintf(p->detail, sizeof p->detail, "%s", rtnl_strerror(errno));
		return;
	}
	if (rr.type == RTN_LOCAL) {
		p->state = NL_PROBE_LOCAL;
		snprintf(p->detail, sizeof p->detail, "an address of this host");
	} else if (rr.type != RTN_UNICAST || !rr.oif) {
		p->state = NL_PROBE_NOROUTE;
		snprintf(p->detail, sizeof p->detail, "no unicast route");
	} else if (rr.has_gw) {
		p->state = NL_PROBE_OFFLINK;
		if (rr.gw.family)
			ipaddr_format(&rr.gw, gw);
		else
			snprintf(gw, sizeof gw, "a gateway");
		snprintf(p->detail, sizeof p->detail, "routed via %s on %s", gw,
		         if_indextoname((unsigned)rr.oif, dev) ? dev : "?");
	} else {
		p->ifindex = rr.oif;
	}
}

static const struct nl_neigh *
neigh_find(const struct neigh_list *l, const struct ipaddr *ip, int ifindex)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].ifindex == ifindex && ipaddr_cmp(&l->v[i].ip, ip) == 0)
			return &l->v[i];
	return NULL;
}

/* Starts resolution of p; -1 (and err) only when we are not allowed to. */
static int
probe_start(struct rtnl *r, struct nl_probe *p, const struct nl_neigh *cur, char *err,
            size_t errlen)
{
	_Alignas(struct nlmsghdr) char req[NL_REQSIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(req);
	struct ndmsg *ndm;

	nlh->nlmsg_type = RTM_NEWNEIGH;
	/* A new entry only with EXCL: if somebody adds a static one meanwhile,
	 * NTF_USE must not turn it into a dynamic one. */
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (cur ? 0 : NLM_F_CREATE | NLM_F_EXCL);
	ndm = mnl_nlmsg_put_extra_header(nlh, sizeof *ndm);
	ndm->ndm_family = p->ip.family;
	ndm->ndm_ifindex = p->ifindex;
	ndm->ndm_state = NUD_NONE;
	ndm->ndm_flags = NTF_USE;
	mnl_attr_put(nlh, NDA_DST, p->ip.family == AF_INET ? 4 : 16, p->ip.a);
	if (rtnl_exchange(r, nlh, NULL, NULL) == 0)
		return 0;
	if (errno == EPERM || errno == EACCES) {
		snprintf(err, errlen, "neighbour probe: %s (needs CAP_NET_ADMIN)", strerror(errno));
		return -1;
	}
	if (errno != EEXIST) {
		p->state = NL_PROBE_NOROUTE;
		snprintf(p->detail, sizeof p->detail, "%s", rtnl_strerror(errno));
	}
	return 0;
}

/* Applies one neighbour state to the probes waiting for it. */
static void
probe_update(struct nl_probe *p, size_t n, const struct ipaddr *ip, int ifindex, unsigned state)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i].state != NL_PROBE_PENDING || p[i].ifindex != ifindex ||
		    ipaddr_cmp(&p[i].ip, ip) != 0)
			continue;
		if (state & NUD_SETTLED)
			p[i].state = NL_PROBE_RESOLVED;
		else if (state & NUD_FAILED) {
			p[i].state = NL_PROBE_FAILED;
			snprintf(p[i].detail, sizeof p[i].detail, "no answer");
		}
	}
}

static size_t
probes_pending(const struct nl_probe *p, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		k += p[i].state == NL_PROBE_PENDING;
	return k;
}

/* Reads neighbour events until every probe settled or the deadline. */
static void
probe_wait(struct rtnl *events, struct rtnl *r, struct nl_probe *p, size_t n, int64_t deadline)
{
	int fd = mnl_socket_get_fd(events->nl);
	struct neigh_list l = { .all = 1 };
	char err[128];

	while (probes_pending(p, n)) {
		int64_t left = deadline - mono_ms();
		struct pollfd pfd = { fd, POLLIN, 0 };

		if (left <= 0)
			break;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		int len = (int)recv(fd, events->buf, NL_BUFSIZE, MSG_DONTWAIT);
		if (len < 0 && errno == ENOBUFS) {
			/* Events were lost: ask for the whole table instead. */
			if (neigh_dump(r, &l, err, sizeof err) == 0)
				for (size_t i = 0; i < l.n; i++)
					probe_update(p, n, &l.v[i].ip, l.v[i].ifindex,
					             l.v[i].state);
			continue;
		}
		if (len <= 0)
			continue;
		for (const struct nlmsghdr *nlh = (struct nlmsghdr *)events->buf;
		     mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
			l.n = 0;
			neigh_cb(nlh, &l);
			if (l.n)
				probe_update(p, n, &l.v[0].ip, l.v[0].ifindex, l.v[0].state);
		}
	}
	free(l.v);
}

int
nl_probe(struct nl_probe *p, size_t n, int timeout_ms, char *err, size_t errlen)
{
	int64_t deadline = mono_ms() + timeout_ms;
	struct neigh_list cur = { .all = 1 };
	struct rtnl r, events;
	int rc = -1;

	for (size_t i = 0; i < n; i++) {
		p[i].state = NL_PROBE_PENDING;
		p[i].ifindex = 0;
		p[i].detail[0] = '\0';
	}
	if (rtnl_open(&r, 0, err, errlen) < 0)
		return -1;
	/* Subscribe before the first probe goes out, so no answer is missed. */
	if (rtnl_open(&events, 1u << (RTNLGRP_NEIGH - 1), err, errlen) < 0) {
		rtnl_close(&r);
		return -1;
	}
	if (neigh_dump(&r, &cur, err, errlen) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		const struct nl_neigh *e;

		probe_route(&r, &p[i]);
		if (p[i].state != NL_PROBE_PENDING)
			continue;
		e = neigh_find(&cur, &p[i].ip, p[i].ifindex);
		if (e && (e->state & NUD_SETTLED)) {
			p[i].state = NL_PROBE_RESOLVED;
			continue;
		}
		if (probe_start(&r, &p[i], e, err, errlen) < 0)
			goto out;
	}
	probe_wait(&events, &r, p, n, deadline);
	/* Whatever is still open: one last look at the table. */
	if (probes_pending(p, n) && neigh_dump(&r, &cur, err, errlen) == 0)
		for (size_t i = 0; i < cur.n; i++)
			probe_update(p, n, &cur.v[i].ip, cur.v[i].ifindex, cur.v[i].state);
	for (size_t i = 0; i < n; i++) {
		if (p[i].state != NL_PROBE_PENDING)
			continue;
		p[i].state = NL_PROBE_TIMEOUT;
		snprintf(p[i].detail, sizeof p[i].detail, "no answer in %d ms", timeout_ms);
	}
	rc = 0;
out:
	free(cur.v);
	rtnl_close(&events);
	rtnl_close(&r);
	return rc;
}
