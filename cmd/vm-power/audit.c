/* Who called, and the audit line: one journal entry per call, sent to
 * journald's native socket with fields of its own, so it lands in the
 * node's journal even though vm-power's stderr goes back to the ssh client. */
#include <errno.h>
#include <openssl/evp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "vm-power.h"

#define AUTH_MAX (64 * 1024)
#define KEYS_MAX (4 * 1024 * 1024)

void
printable(const char *s, char *out, size_t len)
{
	size_t o = 0;

	for (; *s && o + 5 < len; s++) {
		unsigned char c = (unsigned char)*s;
		if (c >= 0x20 && c < 0x7f && c != '\\')
			out[o++] = (char)c;
		else
			o += snprintf(out + o, len - o, "\\x%02x", c);
	}
	out[o] = '\0';
}

/* "SHA256:" and the unpadded base64 of the SHA-256 of the key blob, as
 * ssh-keygen -l and sshd's log show it. 0 or -1. */
static int
fingerprint(const char *b64, char *out, size_t len)
{
	size_t n = strlen(b64), pad = 0;
	unsigned char *blob, md[EVP_MAX_MD_SIZE], text[64];
	unsigned int mdlen;
	int bl;

	if (n == 0 || n % 4 || n > AUTH_MAX)
		return -1;
	pad = (b64[n - 1] == '=') + (b64[n - 2] == '=');
	blob = xmalloc(n / 4 * 3 + 1);
	bl = EVP_DecodeBlock(blob, (const unsigned char *)b64, (int)n);
	if (bl < 0 || !EVP_Digest(blob, (size_t)bl - pad, md, &mdlen, EVP_sha256(), NULL)) {
		free(blob);
		return -1;
	}
	free(blob);
	EVP_EncodeBlock(text, md, (int)mdlen);
	text[strcspn((char *)text, "=")] = '\0';
	snprintf(out, len, "SHA256:%.56s", text); /* 43 characters */
	return 0;
}

/* The comment after blob on its line of the authorized_keys file. */
static int
key_comment(const char *path, const char *blob, char *out, size_t len)
{
	struct buf b = { 0 };
	size_t bl = strlen(blob);
	char *p;
	int rc = -1;

	if (read_file(path, KEYS_MAX, &b) < 0) {
		log_debug("%s: %m", path);
		return -1;
	}
	for (p = b.data; (p = strstr(p, blob)); p += bl) {
		char *end = p + bl, *eol;
		if (p == b.data || (p[-1] != ' ' && p[-1] != '\t') ||
		    (*end && *end != ' ' && *end != '\t' && *end != '\n' && *end != '\r'))
			continue;
		eol = end + strcspn(end, "\n");
		*eol = '\0';
		printable(*trim_space(end) ? trim_space(end) : "-", out, len);
		rc = 0;
		break;
	}
	buf_free(&b);
	return rc;
}

static const char *
home_dir(void)
{
	const char *h = getenv("HOME");
	const struct passwd *pw;

	if (h && *h)
		return h;
	pw = getpwuid(getuid());
	return pw ? pw->pw_dir : "/";
}

void
caller_identify(struct caller *c, const char *key_name, const char *authorized_keys)
{
	const char *auth = getenv("SSH_USER_AUTH"), *conn = getenv("SSH_CONNECTION");
	struct buf b = { 0 };

	snprintf(c->key, sizeof c->key, "-");
	c->fp[0] = '\0';
	snprintf(c->from, sizeof c->from, "-");
	if (conn && *conn) {
		char addr[64];
		snprintf(addr, sizeof addr, "%.*s", (int)strcspn(conn, " "), conn);
		printable(addr, c->from, sizeof c->from);
	}
	if (key_name)
		printable(key_name, c->key, sizeof c->key);
	/* ExposeAuthInfo: "publickey TYPE BASE64" for the key that logged in. */
	if (!auth || !*auth || read_file(auth, AUTH_MAX, &b) < 0)
		return;
	for (char *save = NULL, *l = strtok_r(b.data, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save)) {
		char type[64], blob[8192];
		if (sscanf(l, "publickey %63s %8191s", type, blob) != 2)
			continue;
		fingerprint(blob, c->fp, sizeof c->fp);
		if (!key_name) {
			char *dflt = xasprintf("%s/.ssh/authorized_keys", home_dir());
			key_comment(authorized_keys ? authorized_keys : dflt, blob, c->key,
			            sizeof c->key);
			free(dflt);
		}
		break;
	}
	buf_free(&b);
}

/* NAME=value; the values were made printable already, so this only
 * guards the entry's framing. */
static void
field(struct buf *b, const char *name, const char *value)
{
	buf_printf(b, "%s=", name);
	for (; *value; value++)
		buf_append(b, *value == '\n' ? "?" : value, 1);
	buf_puts(b, "\n");
}

void
audit_send(const char *journal, const struct caller *c, const struct audit *a)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct buf msg = { 0 }, b = { 0 };
	char vmid[16] = "-";
	int fd, sent = -1, refused = strcmp(a->outcome, "refused") == 0;

	if (a->vmid)
		snprintf(vmid, sizeof vmid, "%u", a->vmid);
	buf_printf(&msg, "key %s%s%s%s from %s: ", c->key, c->fp[0] ? " (" : "", c->fp,
	           c->fp[0] ? ")" : "", c->from);
	if (a->verb && !refused)
		buf_printf(&msg, "%s %s: %s", a->verb, vmid, a->outcome);
	else
		buf_printf(&msg, "\"%s\": %s", a->command, a->outcome);
	if (a->detail[0])
		buf_printf(&msg, ": %s", a->detail);

	field(&b, "MESSAGE", msg.data);
	buf_printf(&b, "PRIORITY=%d\n", strcmp(a->outcome, "ok") == 0 ? 6 : 4);
	field(&b, "SYSLOG_IDENTIFIER", "vm-power");
	field(&b, "PVEKIT_KEY", c->key);
	if (c->fp[0])
		field(&b, "PVEKIT_KEY_FINGERPRINT", c->fp);
	field(&b, "PVEKIT_FROM", c->from);
	field(&b, "PVEKIT_COMMAND", a->command);
	field(&b, "PVEKIT_VERB", a->verb ? a->verb : "-");
	field(&b, "PVEKIT_VMID", vmid);
	field(&b, "PVEKIT_OUTCOME", a->outcome);

	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && strlen(journal) < sizeof sa.sun_path) {
		strcpy(sa.sun_path, journal);
		sent = (int)sendto(fd, b.data, b.len, MSG_NOSIGNAL, (struct sockaddr *)&sa,
		                   sizeof sa);
	}
	if (fd >= 0)
		close(fd);
	if (sent < 0) {
		log_debug("%s: %m: the audit line goes to stderr", journal);
		log_info("audit: %s", msg.data);
	}
	buf_free(&msg);
	buf_free(&b);
}
