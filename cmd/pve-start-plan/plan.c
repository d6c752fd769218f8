/* The plan: one step a line, '#' starts a comment.
 *   start GUEST...
 *   wait agent GUEST [SECS]
 *   wait port GUEST|ADDRESS PORT [SECS]
 *   delay SECS
 * GUEST is a VMID or a guest's name. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "plan.h"
#include "util.h"

#define MAX_WORDS 64
#define NAME_MAX_LEN 128

static int
valid_name(const char *s)
{
	if (!isalnum((unsigned char)*s) || strlen(s) > NAME_MAX_LEN)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.')
			return 0;
	return 1;
}

/* A VMID or a name; 0 or -1 with why. */
static int
guest_word(const char *w, struct guest_ref *r, const char **why)
{
	memset(r, 0, sizeof *r);
	if (isdigit((unsigned char)*w)) {
		if (parse_vmid(w, &r->vmid) == 0)
			return 0;
		*why = "not a VMID";
		return -1;
	}
	if (!valid_name(w)) {
		*why = "neither a VMID nor a guest name";
		return -1;
	}
	r->name = xstrdup(w);
	return 0;
}

static int
address_word(const char *w, struct step *s)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)&s->addr;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&s->addr;

	if (inet_pton(AF_INET, w, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		s->addrlen = sizeof *v4;
		return 0;
	}
	if (inet_pton(AF_INET6, w, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		s->addrlen = sizeof *v6;
		return 0;
	}
	return -1;
}

static int
secs_word(const char *w, double min, double *out)
{
	return parse_seconds(w, out) == 0 && *out >= min ? 0 : -1;
}

/* One line's words into s; NULL, or why the line is bad. */
static const char *
parse_words(char **w, size_t nw, struct step *s)
{
	const char *why = NULL;
	unsigned long port;

	s->secs = -1;
	if (strcmp(w[0], "start") == 0) {
		if (nw < 2)
			return "start wants one or more guests";
		s->kind = STEP_START;
		s->guests = xcalloc(nw - 1, sizeof *s->guests);
		for (size_t i = 1; i < nw; i++, s->nguests++)
			if (guest_word(w[i], &s->guests[i - 1], &why) < 0)
				return why;
		return NULL;
	}
	if (strcmp(w[0], "delay") == 0) {
		s->kind = STEP_DELAY;
		if (nw != 2 || secs_word(w[1], 0, &s->secs) < 0)
			return "delay wants seconds";
		return NULL;
	}
	if (strcmp(w[0], "wait") != 0)
		return "unknown step (start, wait agent, wait port, delay)";
	if (nw >= 2 && strcmp(w[1], "agent") == 0) {
		s->kind = STEP_WAIT_AGENT;
		if (nw < 3 || nw > 4)
			return "wait agent wants a guest and an optional number of seconds";
		if (nw == 4 && secs_word(w[3], 0.001, &s->secs) < 0)
			return "wait agent: bad seconds (a number above 0)";
	} else if (nw >= 2 && strcmp(w[1], "port") == 0) {
		s->kind = STEP_WAIT_PORT;
		if (nw < 4 || nw > 5)
			return "wait port wants a guest or address, a port and an optional number of "
			       "seconds";
		if (parse_ulong(w[3], 65535, &port) < 0 || port == 0)
			return "wait port: bad port";
		s->port = (uint16_t)port;
		if (nw == 5 && secs_word(w[4], 0.001, &s->secs) < 0)
			return "wait port: bad seconds (a number above 0)";
		if (address_word(w[2], s) == 0)
			return NULL;
	} else {
		return "wait what? (wait agent, wait port)";
	}
	s->guests = xcalloc(1, sizeof *s->guests);
	s->nguests = 1;
	return guest_word(w[2], &s->guests[0], &why) < 0 ? why : NULL;
}

static void
step_free(struct step *s)
{
	for (size_t i = 0; i < s->nguests; i++)
		free(s->guests[i].name);
	free(s->guests);
	free(s->text);
	memset(s, 0, sizeof *s);
}

unsigned
plan_parse(const char *text, size_t len, const char *name, struct plan *p)
{
	char *copy = xstrndup(text, len), *save = NULL, *line, *next;
	unsigned bad = 0, lineno = 0;

	memset(p, 0, sizeof *p);
	for (line = copy; line; line = next) {
		char *w[MAX_WORDS];
		size_t nw = 0;
		struct step s = { 0 };
		const char *why;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		line[strcspn(line, "#")] = '\0';
		for (char *t = strtok_r(line, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
			if (nw == MAX_WORDS) {
				nw++;
				break;
			}
			w[nw++] = t;
		}
		if (nw == 0)
			continue;
		if (nw > MAX_WORDS) {
			log_err("%s:%u: more than %d words", name, lineno, MAX_WORDS);
			bad++;
			continue;
		}
		s.line = lineno;
		if ((why = parse_words(w, nw, &s))) {
			log_err("%s:%u: %s", name, lineno, why);
			bad++;
			step_free(&s);
			continue;
		}
		struct buf b = { 0 };
		for (size_t i = 0; i < nw; i++)
			buf_printf(&b, "%s%s", i ? " " : "", w[i]);
		s.text = b.data;
		p->steps = xreallocarray(p->steps, p->n + 1, sizeof *p->steps);
		p->steps[p->n++] = s;
	}
	if (memchr(text, '\0', len)) {
		log_err("%s: a NUL byte: not a text file", name);
		bad++;
	}
	free(copy);
	return bad;
}

static struct plan_guest *
find_vmid(struct plan_guest *g, size_t n, uint32_t vmid)
{
	for (size_t i = 0; i < n; i++)
		if (g[i].vmid == vmid)
			return &g[i];
	return NULL;
}

unsigned
plan_resolve(struct plan *p, const char *name, struct plan_guest *g, size_t n)
{
	unsigned bad = 0;

	for (size_t i = 0; i < p->n; i++) {
		struct step *s = &p->steps[i];
		for (size_t k = 0; k < s->nguests; k++) {
			struct guest_ref *r = &s->guests[k];
			size_t hits = 0;

			if (!r->name) {
				r->g = find_vmid(g, n, r->vmid);
				continue;
			}
			for (size_t j = 0; j < n; j++) {
				const char *gn = guest_conf_get(&g[j].conf, g[j].type == GUEST_QEMU
				                                                ? "name"
				                                                : "hostname");
				if (gn && strcmp(gn, r->name) == 0) {
					hits++;
					r->g = &g[j];
					r->vmid = g[j].vmid;
				}
			}
			if (hits > 1) {
				log_err("%s:%u: %s: %zu guests of this node have that name; use the VMID",
				        name, s->line, r->name, hits);
				bad++;
			}
		}
	}
	return bad;
}

void
plan_free(struct plan *p)
{
	for (size_t i = 0; i < p->n; i++)
		step_free(&p->steps[i]);
	free(p->steps);
	memset(p, 0, sizeof *p);
}
