/* /etc/pvekit/failoverip.conf: "key = value" lines, '#' comments. It holds
 * API credentials, so it must be private (0600, ours or root's), and no
 * message ever quotes a secret value. Every problem is fatal (exit 78) and
 * names the file and line. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "failoverip.h"
#include "log.h"
#include "util.h"

#define CONFIG_MAX (64 * 1024)

enum kind {
	K_PROVIDER,
	K_STRING, /* destination, checked once the provider is known */
	K_SECRET, /* never quoted */
	K_URL,
	K_PATH,
	K_IFNAME,
	K_SECONDS,
	K_COUNT,
};

static const struct key {
	const char *name;
	enum kind kind;
	size_t off;
	double min, max; /* K_SECONDS, K_COUNT */
} keys[] = {
	{ "provider", K_PROVIDER, 0, 0, 0 },
	{ "destination", K_STRING, offsetof(struct config, destination), 0, 0 },
	{ "destination6", K_STRING, offsetof(struct config, destination6), 0, 0 },
	{ "api_url", K_URL, offsetof(struct config, api_url), 0, 0 },
	{ "token", K_SECRET, offsetof(struct config, token), 0, 0 },
	{ "user", K_SECRET, offsetof(struct config, user), 0, 0 },
	{ "password", K_SECRET, offsetof(struct config, password), 0, 0 },
	{ "application_key", K_SECRET, offsetof(struct config, app_key), 0, 0 },
	{ "application_secret", K_SECRET, offsetof(struct config, app_secret), 0, 0 },
	{ "consumer_key", K_SECRET, offsetof(struct config, consumer_key), 0, 0 },
	{ "ca_file", K_PATH, offsetof(struct config, ca_file), 0, 0 },
	{ "route_dev", K_IFNAME, offsetof(struct config, route_dev), 0, 0 },
	{ "timeout", K_SECONDS, offsetof(struct config, timeout), 0.001, 86400 },
	{ "connect_timeout", K_SECONDS, offsetof(struct config, connect_timeout), 0.001, 600 },
	{ "retry_delay", K_SECONDS, offsetof(struct config, retry_delay), 0.001, 3600 },
	{ "poll_interval", K_SECONDS, offsetof(struct config, poll_interval), 0.001, 600 },
	{ "retries", K_COUNT, offsetof(struct config, retries), 0, 100 },
};

static const struct provider *const providers[] = {
	&provider_online,
	&provider_hetzner,
	&provider_ovh,
};

static int
valid_ifname(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 15 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return 0;
	for (; *s; s++)
		if (*s == '/' || *s == ':' || *s <= ' ' || *s == 0x7f)
			return 0;
	return 1;
}

/* The port of an authority host[:port] or [v6][:port], if it has one: 1
 * when it is empty ("host:" would be port 80 to libcurl), not decimal or
 * out of range, or when something else follows "]". */
static int
bad_port(const char *host, const char *end)
{
	const char *colon;
	char port[8];
	uint16_t p;

	if (*host == '[') {
		const char *close = memchr(host, ']', end - host);
		if (!close)
			return 1;
		colon = close + 1;
		if (colon == end)
			return 0;
		if (*colon != ':')
			return 1;
	} else {
		colon = memchr(host, ':', end - host);
		if (!colon)
			return 0;
	}
	colon++;
	if (end - colon < 1 || end - colon >= (ptrdiff_t)sizeof port)
		return 1;
	snprintf(port, sizeof port, "%.*s", (int)(end - colon), colon);
	return parse_port(port, &p) < 0;
}

/* An http(s) URL whose authority carries no credentials, with no query or
 * fragment; sets the peer name (host[:port]) used in messages. */
static const char *
check_url(struct config *cfg, char *url)
{
	const char *rest, *end;
	size_t n;

	if (strncmp(url, "https://", 8) == 0) {
		rest = url + 8;
	} else if (strncmp(url, "http://", 7) == 0) {
		rest = url + 7;
		cfg->allow_http = 1;
	} else {
		return "must start with https:// (or http:// for tests)";
	}
	end = rest + strcspn(rest, "/");
	if (end == rest)
		return "has no host";
	if (memchr(rest, '@', end - rest))
		return "must not carry credentials: set them with their own keys";
	if (bad_port(rest, end))
		return "bad port (want 1-65535 after the host)";
	if (strpbrk(url, "?# "))
		return "must not have a query, fragment or spaces";
	n = strlen(url);
	while (n > 0 && url[n - 1] == '/')
		url[--n] = '\0';
	snprintf(cfg->peer, sizeof cfg->peer, "%.*s", (int)(end - rest), rest);
	return NULL;
}

static int
has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

static void
set_key(struct config *cfg, const struct key *k, char *value, int lineno)
{
	const char *path = cfg->path, *why;
	char **str = (char **)((char *)cfg + k->off);
	double d;
	unsigned long u;

	switch (k->kind) {
	case K_PROVIDER:
		for (size_t i = 0; i < ARRAY_LEN(providers); i++)
			if (strcmp(value, providers[i]->name) == 0)
				cfg->provider = providers[i];
		if (!cfg->provider)
			die(EXIT_CONFIG,
			    "%s:%d: provider: unknown provider '%s' (online, hetzner, ovh)", path,
			    lineno, value);
		return;
	case K_SECRET:
		if (!*value)
			die(EXIT_CONFIG, "%s:%d: %s: empty", path, lineno, k->name);
		break;
	case K_URL:
		if ((why = check_url(cfg, value)))
			die(EXIT_CONFIG, "%s:%d: api_url: %s", path, lineno, why);
		break;
	case K_PATH:
		if (value[0] != '/')
			die(EXIT_CONFIG, "%s:%d: %s: not an absolute path", path, lineno, k->name);
		break;
	case K_IFNAME:
		if (*value && !valid_ifname(value))
			die(EXIT_CONFIG, "%s:%d: %s: not an interface name: '%s'", path, lineno,
			    k->name, value);
		break;
	case K_SECONDS:
		if (parse_seconds(value, &d) < 0 || d < k->min || d > k->max)
			die(EXIT_CONFIG, "%s:%d: %s: want seconds from %g to %g, not '%s'", path,
			    lineno, k->name, k->min, k->max, value);
		memcpy((char *)cfg + k->off, &d, sizeof d);
		return;
	case K_COUNT:
		if (parse_ulong(value, (unsigned long)k->max, &u) < 0)
			die(EXIT_CONFIG, "%s:%d: %s: want a number from 0 to %g, not '%s'", path,
			    lineno, k->name, k->max, value);
		memcpy((char *)cfg + k->off, &u, sizeof u);
		return;
	case K_STRING:
		break;
	}
	free(*str);
	*str = *value ? xstrdup(value) : NULL;
}

void
config_load(struct config *cfg, const char *path)
{
	unsigned seen = 0;
	int fd, lineno = 0, dest_line = 0, dest6_line = 0;
	struct buf b = { 0 };
	char err[256], name[KEY_EXCERPT_SIZE], *line, *next;

	memset(cfg, 0, sizeof *cfg);
	cfg->path = path;
	cfg->timeout = 180;
	cfg->connect_timeout = 10;
	cfg->retry_delay = 1;
	cfg->poll_interval = 5;
	cfg->retries = 8;

	/* Non-blocking: a FIFO under that name is refused, not waited for. */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		die(EXIT_CONFIG, "%s: %m", path);
	if (check_private_file(fd, err, sizeof err) < 0)
		die(EXIT_CONFIG, "%s: %s", path, err);
	if (read_fd(fd, CONFIG_MAX, &b) < 0) {
		if (errno == EFBIG)
			die(EXIT_CONFIG, "%s: larger than %d bytes", path, CONFIG_MAX);
		die(EXIT_CONFIG, "%s: %m", path);
	}
	close(fd);
	if (memchr(b.data, '\0', b.len))
		die(EXIT_CONFIG, "%s: contains a NUL byte", path);

	for (line = (char *)skip_bom(b.data); line; line = next) {
		char *eq, *key, *value;
		const struct key *k = NULL;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		key = trim_space(line);
		if (!*key || *key == '#')
			continue;
		eq = strchr(key, '=');
		if (!eq)
			die(EXIT_CONFIG, "%s:%d: not a key=value line", path, lineno);
		/* Messages name at most the text before the first '=' or ':':
		 * "token: s3cr3t=..." has a secret after it. */
		key_excerpt(key, name);
		for (size_t i = 0; i < ARRAY_LEN(keys); i++)
			if (strcmp(name, keys[i].name) == 0)
				k = &keys[i];
		if (!k)
			die(EXIT_CONFIG, "%s:%d: unknown key '%s'", path, lineno, name);
		*eq = '\0';
		key = trim_space(key);
		if (strcmp(key, k->name) != 0)
			die(EXIT_CONFIG, "%s:%d: %s: want '%s=value', not ':'", path, lineno,
			    k->name, k->name);
		value = trim_space(eq + 1);
		if (seen & (1u << (k - keys)))
			die(EXIT_CONFIG, "%s:%d: %s: set twice", path, lineno, k->name);
		seen |= 1u << (k - keys);
		if (has_control(value))
			die(EXIT_CONFIG, "%s:%d: %s: control characters in the value", path, lineno,
			    k->name);
		if (k->off == offsetof(struct config, destination))
			dest_line = lineno;
		else if (k->off == offsetof(struct config, destination6))
			dest6_line = lineno;
		set_key(cfg, k, value, lineno);
	}
	explicit_bzero(b.data, b.len);
	buf_free(&b);

	if (!cfg->provider)
		die(EXIT_CONFIG, "%s: provider is not set (online, hetzner or ovh)", path);
	if (cfg->destination6 && !cfg->provider->dest6)
		die(EXIT_CONFIG,
		    "%s:%d: destination6: provider %s routes IPv6 to destination (only hetzner has "
		    "a destination6)",
		    path, dest6_line, cfg->provider->name);
	if (cfg->destination && !cfg->provider->valid_dest(cfg->destination))
		die(EXIT_CONFIG, "%s:%d: destination: not a valid %s destination: '%s'", path,
		    dest_line, cfg->provider->name, cfg->destination);
	if (cfg->provider->check(cfg, err, sizeof err) < 0)
		die(EXIT_CONFIG, "%s: %s", path, err);
	if (!cfg->api_url) {
		cfg->api_url = xstrdup(cfg->provider->default_url);
		check_url(cfg, cfg->api_url);
	}
	if (cfg->connect_timeout > cfg->timeout)
		cfg->connect_timeout = cfg->timeout;
}

static void
wipe(char **s)
{
	if (*s) {
		explicit_bzero(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

void
config_free(struct config *cfg)
{
	wipe(&cfg->destination);
	wipe(&cfg->destination6);
	wipe(&cfg->api_url);
	wipe(&cfg->token);
	wipe(&cfg->user);
	wipe(&cfg->password);
	wipe(&cfg->app_key);
	wipe(&cfg->app_secret);
	wipe(&cfg->consumer_key);
	wipe(&cfg->ca_file);
	wipe(&cfg->route_dev);
}
