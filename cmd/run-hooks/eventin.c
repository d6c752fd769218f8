/* run-hooks --events: the input, "EVENT VMID TYPE PEER CONF" lines, or
 * "SEQ EVENT VMID TYPE PEER CONF" from pve-watch-conf --seq, taken in whole
 * lines, journaled in one synced write per read, then confirmed to the
 * watcher (STATE/run-hooks/confirmed) and queued. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "events.h"
#include "log.h"
#include "seqfile.h"

static int
parse_event(struct event *e, char *err, size_t errlen)
{
	char *f[4], *p;

	p = e->fields = xstrdup(e->je.line);
	if (*p >= '0' && *p <= '9') {
		/* pve-watch-conf --seq: the event's number first */
		char *end;

		errno = 0;
		e->wseq = strtoull(p, &end, 10);
		if (errno || *end != ' ' || e->wseq == 0) {
			snprintf(err, errlen, "bad sequence number \"%.64s\"", p);
			return -1;
		}
		p = end + 1;
	}
	for (int i = 0; i < 4; i++) {
		char *sp = strchr(p, ' ');
		if (!sp || sp == p) {
			snprintf(err, errlen, "want \"EVENT VMID TYPE PEER CONF\"");
			return -1;
		}
		*sp = '\0';
		f[i] = p;
		p = sp + 1;
	}
	if (!*p) {
		snprintf(err, errlen, "want \"EVENT VMID TYPE PEER CONF\"");
		return -1;
	}
	if (guest_event_parse(f[0], &e->kind) < 0) {
		snprintf(err, errlen, "unknown event \"%.64s\"", f[0]);
		return -1;
	}
	if (parse_vmid(f[1], &e->vmid) < 0) {
		snprintf(err, errlen, "bad VMID \"%.64s\"", f[1]);
		return -1;
	}
	if (strcmp(f[2], "qemu") != 0 && strcmp(f[2], "lxc") != 0) {
		snprintf(err, errlen, "unknown type \"%.64s\", want qemu or lxc", f[2]);
		return -1;
	}
	e->type = f[2];
	e->peer = strcmp(f[3], "-") == 0 ? "" : f[3];
	e->conf = p;
	return 0;
}

void
event_free(struct event *e)
{
	free(e->je.line);
	free(e->fields);
	free(e);
}

/* A new event from stdin or the journal; NULL (and a message) when bad. */
struct event *
event_new(char *line, const char *where)
{
	struct event *e = xcalloc(1, sizeof *e);
	char err[128];

	e->je.line = line;
	if (parse_event(e, err, sizeof err) == 0)
		return e;
	log_err("%s: %s; skipped", where, err);
	event_free(e);
	return NULL;
}

/* Takes the complete lines out of the input buffer (and, at EOF, a last line
 * without its newline): journaled in one synced write, then queued. */
static void
take_lines(struct events *evs, int at_eof)
{
	struct journal_entry **batch = NULL;
	struct event **events = NULL;
	size_t n = 0, off = 0;
	char where[32];

	while (off < evs->input.len) {
		char *start = evs->input.data + off, *nl = memchr(start, '\n', evs->input.len - off);
		size_t len = nl ? (size_t)(nl - start) : evs->input.len - off;
		struct event *e;

		if (evs->skipping_long) {
			off += len + (nl != NULL);
			evs->skipping_long = !nl;
			continue;
		}
		if (!nl && len > MAX_LINE) {
			log_err("stdin:%lu: line longer than %d bytes; skipped", ++evs->lineno,
			        MAX_LINE);
			evs->bad_input = 1;
			evs->skipping_long = 1;
			off = evs->input.len;
			break;
		}
		if (!nl && !at_eof)
			break;
		off += len + (nl != NULL);
		evs->lineno++;
		if (len > MAX_LINE) {
			log_err("stdin:%lu: line longer than %d bytes; skipped", evs->lineno, MAX_LINE);
			evs->bad_input = 1;
			continue;
		}
		if (memchr(start, '\0', len)) {
			log_err("stdin:%lu: NUL byte in line; skipped", evs->lineno);
			evs->bad_input = 1;
			continue;
		}
		snprintf(where, sizeof where, "stdin:%lu", evs->lineno);
		e = event_new(xstrndup(start, len), where);
		if (!e) {
			evs->bad_input = 1;
			continue;
		}
		events = xreallocarray(events, n + 1, sizeof *events);
		batch = xreallocarray(batch, n + 1, sizeof *batch);
		events[n] = e;
		batch[n++] = &e->je;
	}
	buf_consume(&evs->input, off);
	if (n && journal_add(&evs->journal, batch, n) == 0) {
		uint64_t top = 0;

		for (size_t i = 0; i < n; i++)
			if (events[i]->wseq > top)
				top = events[i]->wseq;
		confirm_upto(evs, top);
	}
	for (size_t i = 0; i < n; i++)
		enqueue(evs, events[i]);
	free(batch);
	free(events);
}

void
confirm_upto(struct events *evs, uint64_t seq)
{
	if (seq <= evs->confirmed)
		return;
	if (seqfile_write(evs->confirm_path, seq) < 0) {
		/* Not confirmed: the watcher prints them again, nothing is lost. */
		if (!evs->confirm_failing)
			log_err("%s: %s; the watcher will print these events again", evs->confirm_path,
			        strerror(errno));
		evs->confirm_failing = 1;
		return;
	}
	if (evs->confirm_failing)
		log_info("%s: writable again", evs->confirm_path);
	evs->confirm_failing = 0;
	evs->confirmed = seq;
}

/* One read; 0 at EOF or a read error (which ends the input too). */
int
read_input(struct events *evs)
{
	char chunk[65536];
	ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 1;
	if (n < 0) {
		log_err("stdin: %s", strerror(errno));
		evs->bad_input = 1;
	}
	if (n <= 0) {
		take_lines(evs, 1);
		evs->reading = 0;
		return 0;
	}
	buf_append(&evs->input, chunk, n);
	take_lines(evs, 0);
	return 1;
}

/* On a stop signal: journal what the watcher has already written, so the
 * pipe loses nothing, then stop reading. */
void
drain_input(struct events *evs)
{
	for (int i = 0; i < 4096 && evs->reading; i++) {
		struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
		if (poll(&p, 1, 0) <= 0 || !read_input(evs))
			break;
	}
	if (evs->reading && evs->input.len)
		log_warn("stdin: dropping an incomplete line at stop");
	evs->reading = 0;
}
