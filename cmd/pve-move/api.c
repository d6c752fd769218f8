/* The Proxmox API (research/proxmox.md §4): JSON under /api2/json, a ticket
 * (cookie PVEAuthCookie, CSRFPreventionToken header on every write) or an
 * API token (Authorization: PVEAPIToken=USER@REALM!ID=SECRET, no CSRF).
 * Errors come as the status line's reason and the body's "message", plus
 * "errors" (parameter -> reason) for a 400. Secrets stay in headers and
 * bodies; every text that reaches a message goes through http_redact(). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "log.h"
#include "move.h"

#define CONNECT_MS 10000
#define CALL_MS 120000
#define TICKET_RENEW_MS (90LL * 60 * 1000) /* tickets live 2 hours */

void
form_add(struct buf *form, const char *key, const char *value)
{
	char *k = http_escape(key), *v = http_escape(value);

	buf_printf(form, "%s%s=%s", form->len ? "&" : "", k, v);
	free(k);
	free(v);
}

void
api_open(struct api *a, const struct rc_cluster *c, int insecure)
{
	memset(a, 0, sizeof *a);
	a->alias = c->alias;
	a->c = c;
	a->insecure = insecure;
	a->h = http_new();
	if (strchr(c->host, ':'))
		a->base = xasprintf("https://[%s]:%d/api2/json", c->host, c->port);
	else
		a->base = xasprintf("https://%s:%d/api2/json", c->host, c->port);
	if (c->token_id) {
		a->auth_header = xasprintf("Authorization: PVEAPIToken=%s=%s", c->token_id,
		                           c->token_secret);
		http_add_secret(a->auth_header + strlen("Authorization: "));
	}
}

static void
wipe_free(char **p)
{
	if (*p) {
		explicit_bzero(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

void
api_close(struct api *a)
{
	http_free(a->h);
	wipe_free(&a->ticket);
	wipe_free(&a->csrf);
	wipe_free(&a->auth_header);
	wipe_free(&a->cookie);
	free(a->base);
}

/* The reason on the status line ("HTTP/1.1 500 VM 100 already exists"). */
static void
status_reason(const struct http_response *r, char *out, size_t len)
{
	const char *p = r->headers.data ? r->headers.data : "", *e;

	out[0] = '\0';
	p = strchr(p, ' ');
	if (!p || !(p = strchr(p + 1, ' ')))
		return;
	p++;
	e = p + strcspn(p, "\r\n");
	snprintf(out, len, "%.*s", (int)(e - p), p);
}

static void
fill_error(const struct http_response *r, json_t *body, struct api_error *err)
{
	char reason[256], raw[512];
	const char *msg = NULL;
	json_t *errors = body ? json_object_get(body, "errors") : NULL;
	struct buf b = { 0 };

	err->status = r->status;
	status_reason(r, reason, sizeof reason);
	if (body && json_is_string(json_object_get(body, "message")))
		msg = json_string_value(json_object_get(body, "message"));
	buf_puts(&b, msg && *msg ? msg : reason[0] ? reason : "no reason given");
	while (b.len && isspace((unsigned char)b.data[b.len - 1]))
		b.data[--b.len] = '\0';
	if (json_is_object(errors)) {
		const char *k;
		json_t *v;
		int first = 1;

		json_object_foreach(errors, k, v)
		{
			char *t = json_is_string(v) ? xstrdup(json_string_value(v)) : json_dumps(v, 0);

			for (char *q = t; q && *q; q++)
				if (*q == '\n')
					*q = ' ';
			buf_printf(&b, "%s%s: %s", first ? " (" : "; ", k, t ? trim_space(t) : "");
			first = 0;
			free(t);
		}
		if (!first)
			buf_puts(&b, ")");
	}
	snprintf(raw, sizeof raw, "%ld %s", r->status, b.data);
	http_redact(raw, err->msg, sizeof err->msg);
	buf_free(&b);
}

static json_t *
call_once(struct api *a, const char *method, const char *path, const char *form,
          struct api_error *err, int *transient)
{
	struct http_request req = { 0 };
	struct http_response resp = { 0 };
	const char *hdrs[5];
	size_t nh = 0;
	char *url = xasprintf("%s%s", a->base, path);
	json_t *body = NULL, *data = NULL;
	json_error_t je;
	enum http_result hr;

	if (a->auth_header)
		hdrs[nh++] = a->auth_header;
	if (a->cookie)
		hdrs[nh++] = a->cookie;
	if (a->csrf && strcmp(method, "GET") != 0)
		hdrs[nh++] = a->csrf;
	if (form)
		hdrs[nh++] = "Content-Type: application/x-www-form-urlencoded";
	hdrs[nh] = NULL;
	req.method = method;
	req.url = url;
	req.headers = hdrs;
	req.body = form;
	req.body_len = form ? strlen(form) : 0;
	req.ca_file = a->c->ca;
	req.fingerprint = a->c->fingerprint;
	req.insecure = a->insecure && !a->c->fingerprint && !a->c->ca;
	req.connect_timeout_ms = CONNECT_MS;
	req.timeout_ms = CALL_MS;
	*transient = 0;
	if (log_verbose)
		log_debug("%s: %s %s", a->alias, method, path);
	hr = http_do(a->h, &req, &resp);
	free(url);
	if (hr != HTTP_OK) {
		err->status = 0;
		snprintf(err->msg, sizeof err->msg, "%s", resp.error);
		*transient = hr == HTTP_NETWORK;
		http_response_free(&resp);
		return NULL;
	}
	if (resp.body.len)
		body = json_loadb(resp.body.data, resp.body.len, 0, &je);
	if (resp.status / 100 != 2) {
		fill_error(&resp, body, err);
		*transient = resp.status >= 502 && resp.status <= 504;
	} else if (!json_is_object(body) || !json_object_get(body, "data")) {
		err->status = resp.status;
		snprintf(err->msg, sizeof err->msg, "%ld: the answer is not Proxmox JSON",
		         resp.status);
	} else {
		data = json_incref(json_object_get(body, "data"));
	}
	json_decref(body);
	if (resp.body.data)
		explicit_bzero(resp.body.data, resp.body.len);
	http_response_free(&resp);
	return data;
}

static int
ticket_login(struct api *a, struct api_error *err)
{
	struct buf form = { 0 };
	json_t *d;
	int tr;
	const char *t, *c;

	wipe_free(&a->cookie);
	wipe_free(&a->csrf);
	form_add(&form, "username", a->c->user);
	form_add(&form, "password", a->c->password);
	d = call_once(a, "POST", "/access/ticket", form.data, err, &tr);
	explicit_bzero(form.data, form.len);
	buf_free(&form);
	if (!d)
		return -1;
	t = json_string_value(json_object_get(d, "ticket"));
	c = json_string_value(json_object_get(d, "CSRFPreventionToken"));
	if (!t || !c) {
		snprintf(err->msg, sizeof err->msg, "%s",
		         json_object_get(d, "NeedTFA") ? "the account wants a second factor, "
		                                          "which pve-move cannot give: use an "
		                                          "API token"
		                                        : "no ticket in the answer");
		json_decref(d);
		return -1;
	}
	a->cookie = xasprintf("Cookie: PVEAuthCookie=%s", t);
	a->csrf = xasprintf("CSRFPreventionToken: %s", c);
	http_add_secret(t);
	http_add_secret(c);
	a->ticket_ms = mono_ms();
	a->is_root = strcmp(a->c->user, "root@pam") == 0;
	json_decref(d);
	return 0;
}

int
api_login(struct api *a, struct api_error *err)
{
	json_t *v;

	if (!a->c->token_id && ticket_login(a, err) < 0)
		return -1;
	v = api_call(a, "GET", "/version", NULL, err);
	if (!v)
		return -1;
	json_decref(v);
	return 0;
}

json_t *
api_call(struct api *a, const char *method, const char *path, const char *form,
         struct api_error *err)
{
	int transient = 0;
	json_t *d;

	if (a->cookie && mono_ms() - a->ticket_ms > TICKET_RENEW_MS && ticket_login(a, err) < 0)
		return NULL;
	/* Only reads are tried again: a write may have been done. */
	for (int attempt = 0;; attempt++) {
		d = call_once(a, method, path, form, err, &transient);
		if (d || !transient || strcmp(method, "GET") != 0 || attempt >= 3 || interrupted)
			break;
		sleep_ms(500LL << attempt);
	}
	if (!d && err->status == 401 && a->cookie) {
		/* the ticket was dropped (a restarted pveproxy keeps them; an
		 * expired one is renewed above): log in once more */
		if (ticket_login(a, err) == 0)
			d = call_once(a, method, path, form, err, &transient);
	}
	return d;
}

/* UPID:node:pid:pstart:starttime:type:id:user: (pve-common UPID.pm) */
static int
upid_node(const char *upid, char *node, size_t len)
{
	const char *p, *e;

	if (strncmp(upid, "UPID:", 5) != 0)
		return -1;
	p = upid + 5;
	e = strchr(p, ':');
	if (!e || e == p || (size_t)(e - p) >= len)
		return -1;
	memcpy(node, p, (size_t)(e - p));
	node[e - p] = '\0';
	return 0;
}

int
api_task_wait(struct api *a, const char *upid, int64_t timeout_ms, struct api_error *err)
{
	char node[128], *path, *eu;
	int64_t until = mono_ms() + timeout_ms, delay = 200;
	int rc = -1;

	if (upid_node(upid, node, sizeof node) < 0) {
		err->status = 0;
		snprintf(err->msg, sizeof err->msg, "not a task id: %.200s", upid);
		return -1;
	}
	eu = http_escape(upid);
	path = xasprintf("/nodes/%s/tasks/%s/status", node, eu);
	free(eu);
	for (;;) {
		json_t *st = api_call(a, "GET", path, NULL, err);
		const char *status, *exit;

		if (!st)
			break;
		status = json_string_value(json_object_get(st, "status"));
		exit = json_string_value(json_object_get(st, "exitstatus"));
		if (status && strcmp(status, "stopped") == 0) {
			if (exit && strcmp(exit, "OK") == 0) {
				rc = 0;
			} else if (exit && strncmp(exit, "WARNINGS", 8) == 0) {
				log_warn("%s: task %s ended with %s", a->alias, upid, exit);
				rc = 0;
			} else {
				char raw[400];

				err->status = 0;
				snprintf(raw, sizeof raw, "task failed: %s", exit ? exit : "?");
				http_redact(raw, err->msg, sizeof err->msg);
			}
			json_decref(st);
			break;
		}
		json_decref(st);
		if (interrupted) {
			err->status = 0;
			snprintf(err->msg, sizeof err->msg, "interrupted while task %s runs", upid);
			break;
		}
		if (mono_ms() > until) {
			err->status = 0;
			snprintf(err->msg, sizeof err->msg, "task %s still running after %llds",
			         upid, (long long)(timeout_ms / 1000));
			break;
		}
		sleep_ms(delay);
		if (delay < 2000)
			delay *= 2;
	}
	free(path);
	return rc;
}
