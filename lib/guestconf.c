#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "guestconf.h"
#include "alloc.h"
#include "buf.h"
#include "file.h"
#include "parse.h"

static const char *const nic_models[] = {
	"e1000",  "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e",
	"i82551", "i82557b",       "i82559er",      "ne2k_isa",      "ne2k_pci",
	"pcnet",  "rtl8139",       "virtio",        "vmxnet3",
};

const char *
guest_type_name(enum guest_type t)
{
	return t == GUEST_LXC ? "lxc" : "qemu";
}

const char *
guest_type_dir(enum guest_type t)
{
	return t == GUEST_LXC ? "lxc" : "qemu-server";
}

int
guest_type_parse(const char *s, enum guest_type *t)
{
	if (strcmp(s, "qemu") == 0)
		*t = GUEST_QEMU;
	else if (strcmp(s, "lxc") == 0)
		*t = GUEST_LXC;
	else
		return -1;
	return 0;
}

int
qemu_nic_model(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(nic_models); i++)
		if (strcmp(name, nic_models[i]) == 0)
			return 1;
	return 0;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
mac_parse(const char *s, uint8_t mac[6])
{
	for (int i = 0; i < 6; i++) {
		int hi = hexval((unsigned char)s[0]),
		    lo = hi < 0 ? -1 : hexval((unsigned char)s[1]);
		if (hi < 0 || lo < 0)
			return -1;
		mac[i] = (uint8_t)(hi << 4 | lo);
		s += 2;
		if (i < 5 && *s++ != ':')
			return -1;
	}
	return *s ? -1 : 0;
}

void
mac_format(const uint8_t mac[6], char out[18])
{
	snprintf(out, 18, "%02X:%02X:%02X:%02X:%02X:%02X", mac[0], mac[1], mac[2], mac[3], mac[4],
	         mac[5]);
}

/* Finds key (or, with key NULL, the first positional token) in a
 * comma-separated property string. */
int
prop_get(const char *props, const char *key, char *out, size_t outlen)
{
	size_t klen = key ? strlen(key) : 0;

	for (const char *p = props; *p;) {
		size_t n = strcspn(p, ",");
		const char *eq = memchr(p, '=', n);
		const char *val = NULL;
		size_t vlen = 0;

		if (!key && !eq) {
			val = p;
			vlen = n;
		} else if (key && eq && (size_t)(eq - p) == klen && memcmp(p, key, klen) == 0) {
			val = eq + 1;
			vlen = n - klen - 1;
		}
		if (val) {
			if (vlen >= outlen)
				return -1;
			memcpy(out, val, vlen);
			out[vlen] = '\0';
			return 0;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return -1;
}

/* Splits "key: value" per Proxmox's rule ^([a-z][a-z_\-]*\d*):\s*(.+?)\s*$
 * (lxc also ^lxc\.[a-z0-9_\-.]+ with ':' or '='). Returns 0 and sets the
 * key/value spans, or -1. */
static int
split_line(char *line, enum guest_type type, char **key, char **value)
{
	char *p = line, *end;
	int raw_lxc = type == GUEST_LXC && strncmp(line, "lxc.", 4) == 0;

	if (raw_lxc) {
		p += 4;
		while (islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_' ||
		       *p == '-' || *p == '.')
			p++;
		if (p == line + 4)
			return -1;
	} else {
		if (!islower((unsigned char)*p))
			return -1;
		while (islower((unsigned char)*p) || *p == '_' || *p == '-')
			p++;
		while (isdigit((unsigned char)*p))
			p++;
	}
	end = p;
	while (raw_lxc && (*p == ' ' || *p == '\t'))
		p++;
	if (*p != ':' && !(raw_lxc && *p == '='))
		return -1;
	if (!raw_lxc && end != p)
		return -1;
	*end = '\0';
	p++;
	while (isspace((unsigned char)*p))
		p++;
	char *v = p + strlen(p);
	while (v > p && isspace((unsigned char)v[-1]))
		*--v = '\0';
	if (!*p && !raw_lxc)
		return -1;
	*key = line;
	*value = p;
	return 0;
}

static void
add_nic(struct guest_conf *c, const char *key, const char *value, unsigned line)
{
	struct guest_nic nic = { .line = line };
	char mac[64] = "";

	nic.index = (unsigned)strtoul(key + 3, NULL, 10);
	if (c->type == GUEST_LXC) {
		snprintf(nic.model, sizeof nic.model, "veth");
		prop_get(value, "hwaddr", mac, sizeof mac);
	} else {
		/* The first token is MODEL=MAC (or a bare MODEL); "model=" and
		 * "macaddr=" are the long spelling. */
		size_t n = strcspn(value, ",");
		const char *eq = memchr(value, '=', n);
		size_t klen = eq ? (size_t)(eq - value) : n;
		char tok[sizeof nic.model];

		if (klen < sizeof tok) {
			memcpy(tok, value, klen);
			tok[klen] = '\0';
			if (qemu_nic_model(tok)) {
				memcpy(nic.model, tok, klen + 1); /* a known model: fits */
				if (eq && n - klen - 1 < sizeof mac) {
					memcpy(mac, eq + 1, n - klen - 1);
					mac[n - klen - 1] = '\0';
				}
			}
		}
		/* PVE takes MODEL=MAC at any position (a key alias), as in a
		 * hand-edited "bridge=vmbr0,virtio=MAC". */
		for (size_t i = 0; !nic.model[0] && i < ARRAY_LEN(nic_models); i++)
			if (prop_get(value, nic_models[i], mac, sizeof mac) == 0)
				snprintf(nic.model, sizeof nic.model, "%s", nic_models[i]);
		if (!nic.model[0])
			prop_get(value, "model", nic.model, sizeof nic.model);
		if (!mac[0])
			prop_get(value, "macaddr", mac, sizeof mac);
	}
	prop_get(value, "bridge", nic.bridge, sizeof nic.bridge);
	if (mac_parse(mac, nic.mac) == 0)
		nic.has_mac = 1;
	else if (mac[0] && !c->nbad++) /* no MAC is fine; a bad one is not */
		c->first_bad = line;
	c->nics = xreallocarray(c->nics, c->nnics + 1, sizeof *c->nics);
	c->nics[c->nnics++] = nic;
}

static int
is_net_key(const char *key)
{
	if (strncmp(key, "net", 3) != 0 || !isdigit((unsigned char)key[3]))
		return 0;
	for (const char *p = key + 3; *p; p++)
		if (!isdigit((unsigned char)*p))
			return 0;
	return 1;
}

/* The length of the live config: up to the first line starting with '['. */
static size_t
live_len(const char *text, size_t len)
{
	for (const char *p = text, *end = text + len; p < end;) {
		const char *nl;

		if (*p == '[')
			return p - text;
		if (!(nl = memchr(p, '\n', end - p)))
			break;
		p = nl + 1;
	}
	return len;
}

/* One copy of the live text, cut into lines in place, which keys and values
 * point into: a node's thousands of configs are read with a few allocations
 * each, not two per line. */
void
guest_conf_parse(const char *text, size_t len, enum guest_type type, struct guest_conf *out)
{
	size_t n = live_len(text, len), cap = 0;
	char *p, *end;
	unsigned lineno = 0;

	memset(out, 0, sizeof *out);
	out->type = type;
	out->text = xmalloc(n + 1);
	memcpy(out->text, text, n);
	out->text[n] = '\0';
	for (p = out->text, end = p + n; p < end;) {
		char *nl = memchr(p, '\n', end - p), *line = p, *s, *key, *value;
		size_t linelen = nl ? (size_t)(nl - p) : (size_t)(end - p);

		lineno++;
		line[linelen] = '\0';
		p += linelen + 1;
		if (strlen(line) != linelen) { /* an embedded NUL */
			if (!out->nbad++)
				out->first_bad = lineno;
			continue;
		}
		for (s = line; isspace((unsigned char)*s); s++)
			;
		if (!*s || line[0] == '#')
			continue;
		if (split_line(line, type, &key, &value) < 0) {
			if (!out->nbad++)
				out->first_bad = lineno;
			continue;
		}
		if (out->nkv == cap) {
			cap = cap ? cap * 2 : 16;
			out->kv = xreallocarray(out->kv, cap, sizeof *out->kv);
		}
		out->kv[out->nkv++] = (struct guest_kv){ key, value, lineno };
		if (is_net_key(key))
			add_nic(out, key, value, lineno);
	}
}

int
guest_conf_read(const char *path, struct buf *out)
{
	return read_file(path, GUEST_CONF_MAX, out);
}

int
guest_conf_load(const char *path, enum guest_type type, struct guest_conf *out)
{
	struct buf b = { 0 };

	memset(out, 0, sizeof *out);
	out->type = type;
	if (guest_conf_read(path, &b) < 0) {
		int e = errno;

		buf_free(&b);
		errno = e;
		return -1;
	}
	guest_conf_parse(b.data, b.len, type, out);
	buf_free(&b);
	return 0;
}

void
guest_conf_free(struct guest_conf *c)
{
	free(c->text);
	free(c->kv);
	free(c->nics);
	memset(c, 0, sizeof *c);
}

const char *
guest_conf_get(const struct guest_conf *c, const char *key)
{
	for (size_t i = c->nkv; i-- > 0;)
		if (strcmp(c->kv[i].key, key) == 0)
			return c->kv[i].value;
	return NULL;
}

int
guest_conf_agent_enabled(const struct guest_conf *c)
{
	const char *v = guest_conf_get(c, "agent");
	char tok[16];
	int on;

	if (!v)
		return 0;
	if (prop_get(v, "enabled", tok, sizeof tok) < 0 && prop_get(v, NULL, tok, sizeof tok) < 0)
		return 0;
	return parse_bool(tok, &on) == 0 && on;
}

const char *
guest_conf_lock(const struct guest_conf *c)
{
	return guest_conf_get(c, "lock");
}

int
guest_conf_smbios_uuid(const struct guest_conf *c, char out[37])
{
	const char *v = guest_conf_get(c, "smbios1");

	if (!v || prop_get(v, "uuid", out, 37) < 0 || strlen(out) != 36)
		return -1;
	for (int i = 0; i < 36; i++) {
		int dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? out[i] != '-' : !isxdigit((unsigned char)out[i]))
			return -1;
	}
	return 0;
}
