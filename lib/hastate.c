#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "buf.h"
#include "file.h"
#include "hastate.h"

/* pmxcfs keeps files below 1 MiB. */
#define MANAGER_STATUS_MAX (1024 * 1024)

int
ha_disarm_read(const char *pve_dir, enum ha_disarm *out, char *mode, size_t modelen, char *err,
               size_t errlen)
{
	char *path = xasprintf("%s/ha/manager_status", pve_dir);
	struct buf b = { 0 };
	json_error_t je;
	json_t *root = NULL, *disarm, *m;
	int rc = -1;

	*out = HA_ARMED;
	if (modelen)
		mode[0] = '\0';
	if (read_file(path, MANAGER_STATUS_MAX, &b) < 0) {
		if (errno == ENOENT)
			rc = 0;
		else
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (b.len == 0) {
		rc = 0;
		goto out;
	}
	if (!(root = json_loadb(b.data, b.len, 0, &je)) || !json_is_object(root)) {
		snprintf(err, errlen, "%s: not a JSON object%s%s", path, root ? "" : ": ",
		         root ? "" : je.text);
		goto out;
	}
	rc = 0;
	disarm = json_object_get(root, "disarm");
	if (!disarm || json_is_null(disarm))
		goto out;
	/* As pve-ha-manager's check: a disarm record whose mode is "ignore"
	 * hands the resources back; anything else keeps them HA's. */
	m = json_is_object(disarm) ? json_object_get(disarm, "mode") : NULL;
	snprintf(mode, modelen, "%s", json_is_string(m) ? json_string_value(m) : "unknown");
	*out = json_is_string(m) && strcmp(json_string_value(m), "ignore") == 0 ? HA_DISARM_IGNORE
	                                                                        : HA_DISARM_OTHER;
out:
	json_decref(root);
	buf_free(&b);
	free(path);
	return rc;
}
