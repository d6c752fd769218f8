/* libFuzzer harness for the .vmlist and .version reader (lib/vmlist.c).
 *
 * Besides "never crash", it checks what a map must be (sorted, unique,
 * valid node names) and uses jansson as an oracle: a text vmlist_parse
 * accepts must be JSON that jansson reads to the same guests. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmlist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_against_jansson(const uint8_t *data, size_t size, const struct vmlist *l)
{
	json_error_t je;
	json_t *root = json_loadb((const char *)data, size, 0, &je), *ids, *v;
	const char *key;
	size_t n = 0, big = 0;

	if (!root) {
		/* We do not check UTF-8 (no field we keep can hold it) and take
		 * integers jansson's json_int_t cannot; nothing else may differ. */
		enum json_error_code c = json_error_code(&je);
		if (c != json_error_invalid_utf8 && c != json_error_numeric_overflow)
			abort();
		return;
	}
	ids = json_object_get(root, "ids");
	json_object_foreach(ids, key, v)
	{
		const char *type = json_string_value(json_object_get(v, "type"));
		/* VMIDs above 999999999 (up to 2^32-1) are left out and counted */
		if (strlen(key) == 10 && strtoull(key, NULL, 10) > 999999999)
			big++;
		else if (type && strcmp(type, "openvz") != 0)
			n++;
	}
	/* jansson keeps one of duplicate keys, we count every skipped entry */
	if (n != l->n || l->nskipped < big || (l->nskipped && !big))
		abort();
	for (size_t i = 0; i < l->n; i++) {
		char k[16];
		json_t *e, *node, *type;

		snprintf(k, sizeof k, "%u", l->e[i].vmid);
		e = json_object_get(ids, k);
		node = json_object_get(e, "node");
		type = json_object_get(e, "type");
		if (!json_is_string(node) || strcmp(json_string_value(node), l->e[i].node) != 0 ||
		    !json_is_string(type) ||
		    strcmp(json_string_value(type), guest_type_name(l->e[i].type)) != 0)
			abort();
	}
	json_decref(root);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmlist l;
	char err[256] = "";
	uint64_t v;

	if (vmlist_parse((const char *)data, size, &l, err, sizeof err) == 0) {
		for (size_t i = 0; i < l.n; i++) {
			if ((i && l.e[i].vmid <= l.e[i - 1].vmid) ||
			    !node_name_valid(l.e[i].node) || l.e[i].vmid == 0 ||
			    vmlist_find(&l, l.e[i].vmid) != &l.e[i])
				abort();
		}
		check_against_jansson(data, size, &l);
		vmlist_free(&l);
	} else if (!err[0]) {
		abort(); /* every refusal says why */
	}
	if (pve_version_parse((const char *)data, size, "vmlist", &v) == 0) {
		json_t *root = json_loadb((const char *)data, size, 0, NULL);
		json_t *j = json_object_get(root, "vmlist");

		/* jansson keeps the last of duplicate keys; we keep the first. */
		if (root && json_is_integer(j) && json_integer_value(j) >= 0 &&
		    (uint64_t)json_integer_value(j) != v) {
			const char *key;
			json_t *x;
			int dups = 0;

			json_object_foreach(root, key, x) dups += strcmp(key, "vmlist") == 0;
			if (!dups)
				abort();
		}
		json_decref(root);
	}
	return 0;
}
