#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#include "node.h"

const char *
local_node_name(void)
{
	static char name[sizeof(((struct utsname *)0)->nodename)];
	struct utsname u;

	if (!name[0]) {
		if (uname(&u) < 0)
			return "localhost";
		snprintf(name, sizeof name, "%s", u.nodename);
		name[strcspn(name, ".")] = '\0';
	}
	return name;
}

int
node_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= NODE_NAME_MAX || s[0] == '-' || s[n - 1] == '-')
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-'))
			return 0;
	return 1;
}
