/* libFuzzer harness for the guest config parser (lib/guestconf.c), both
 * flavours, and the helpers every tool calls on its values. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guestconf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const struct guest_conf *c)
{
	char out[256], uuid[37], mac[18];
	uint8_t back[6];

	for (size_t i = 0; i < c->nkv; i++) {
		if (!c->kv[i].key[0] || c->kv[i].line == 0)
			abort();
		prop_get(c->kv[i].value, NULL, out, sizeof out);
		prop_get(c->kv[i].value, "bridge", out, sizeof out);
		prop_get(c->kv[i].value, c->kv[i].key, out, 4);
	}
	for (size_t i = 0; i < c->nnics; i++) {
		if (!c->nics[i].has_mac)
			continue;
		mac_format(c->nics[i].mac, mac);
		if (mac_parse(mac, back) < 0 || memcmp(back, c->nics[i].mac, 6) != 0)
			abort();
	}
	if (c->nbad && c->first_bad == 0)
		abort();
	guest_conf_get(c, "net0");
	guest_conf_agent_enabled(c);
	guest_conf_lock(c);
	if (guest_conf_smbios_uuid(c, uuid) == 0 && strlen(uuid) != 36)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum guest_type types[] = { GUEST_QEMU, GUEST_LXC };
	char *s = malloc(size + 1);
	uint8_t mac[6];

	for (size_t i = 0; i < 2; i++) {
		struct guest_conf c;

		guest_conf_parse((const char *)data, size, types[i], &c);
		check(&c);
		guest_conf_free(&c);
	}
	memcpy(s, data, size);
	s[size] = '\0';
	mac_parse(s, mac);
	qemu_nic_model(s);
	free(s);
	return 0;
}
