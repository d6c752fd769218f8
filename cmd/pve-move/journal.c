/* The resume journal: one JSON file per guest move,
 * STATE_DIR/SOURCE-VMID.json (0600 in a 0700 directory), rewritten
 * atomically after every finished step and disk, removed when the move is
 * done. --resume reads it to go on where the move stopped. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "move.h"

int
journal_open(struct journal *jl, const char *dir, const char *alias, uint32_t vmid)
{
	struct buf b = { 0 };
	json_error_t je;

	memset(jl, 0, sizeof *jl);
	if (mkdir_p(dir, 0700) < 0) {
		log_err("%s: %s", dir, strerror(errno));
		return -1;
	}
	jl->path = xasprintf("%s/pve-move-%s-%u.json", dir, alias, vmid);
	if (read_file(jl->path, 1 << 20, &b) == 0) {
		jl->j = json_loadb(b.data, b.len, 0, &je);
		if (!json_is_object(jl->j)) {
			log_err("%s: not a pve-move journal (%s)", jl->path, je.text);
			buf_free(&b);
			json_decref(jl->j);
			jl->j = NULL;
			return -1;
		}
	} else if (errno != ENOENT) {
		log_err("%s: %s", jl->path, strerror(errno));
		return -1;
	}
	buf_free(&b);
	if (!jl->j)
		jl->j = json_object();
	if (!json_object_get(jl->j, "disks"))
		json_object_set_new(jl->j, "disks", json_object());
	return 0;
}

const char *
journal_get(struct journal *jl, const char *key)
{
	return json_string_value(json_object_get(jl->j, key));
}

void
journal_set(struct journal *jl, const char *key, const char *value)
{
	json_object_set_new(jl->j, key, json_string(value));
}

void
journal_set_int(struct journal *jl, const char *key, long long v)
{
	json_object_set_new(jl->j, key, json_integer(v));
}

long long
journal_get_int(struct journal *jl, const char *key, long long dflt)
{
	json_t *v = json_object_get(jl->j, key);

	return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}

static json_t *
disk(struct journal *jl, const char *key)
{
	json_t *d = json_object_get(jl->j, "disks"), *e = json_object_get(d, key);

	if (!e) {
		e = json_object();
		json_object_set_new(d, key, e);
	}
	return e;
}

void
journal_disk_set(struct journal *jl, const char *key, const char *field, const char *value)
{
	if (value)
		json_object_set_new(disk(jl, key), field, json_string(value));
	else
		json_object_del(disk(jl, key), field);
}

const char *
journal_disk_get(struct journal *jl, const char *key, const char *field)
{
	return json_string_value(json_object_get(json_object_get(json_object_get(jl->j, "disks"),
	                                                         key),
	                                         field));
}

int
journal_disk_done(struct journal *jl, const char *key, const char **dst_volid)
{
	const char *st = journal_disk_get(jl, key, "state");

	if (dst_volid)
		*dst_volid = journal_disk_get(jl, key, "volid");
	return st && strcmp(st, "done") == 0;
}

void
journal_save(struct journal *jl)
{
	char *s = json_dumps(jl->j, JSON_INDENT(1) | JSON_SORT_KEYS);

	if (write_file_if_changed(jl->path, s, strlen(s), 0600) < 0)
		log_warn("%s: %s (a --resume would not know this step)", jl->path,
		         strerror(errno));
	free(s);
}

void
journal_remove(struct journal *jl)
{
	if (unlink(jl->path) < 0 && errno != ENOENT)
		log_warn("%s: %s", jl->path, strerror(errno));
}

void
journal_close(struct journal *jl)
{
	json_decref(jl->j);
	free(jl->path);
	memset(jl, 0, sizeof *jl);
}
