#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

const char *log_prog = "pvekit";
int log_verbose;
static int to_journal;

/* systemd sets JOURNAL_STREAM=dev:ino; it only applies while fd 2 is that stream. */
static int
stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) < 0)
		return 0;
	return st.st_dev == (dev_t)dev && st.st_ino == (ino_t)ino;
}

void
log_init(const char *prog)
{
	log_prog = prog;
	to_journal = stderr_is_journal();
}

/* One write(2) per line, so lines of concurrent processes never interleave;
 * control characters (a newline in a file name) are shown as '?'. */
static void vlog(int prio, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void
vlog(int prio, const char *fmt, va_list ap)
{
	char line[2048];
	int n, off, saved = errno;

	/* The name stays under journald too: a unit may run several programs
	 * (pve-watch-conf | run-hooks) under one SyslogIdentifier. */
	if (to_journal)
		off = snprintf(line, sizeof line, "<%d>%s: ", prio, log_prog);
	else
		off = snprintf(line, sizeof line, "%s: ", log_prog);
	errno = saved; /* for %m */
	n = vsnprintf(line + off, sizeof line - off - 1, fmt, ap);
	if (n < 0)
		return;
	n = off + n;
	if (n > (int)sizeof line - 2)
		n = sizeof line - 2;
	for (int i = off; i < n; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = '?';
	line[n++] = '\n';
	while (write(STDERR_FILENO, line, n) < 0 && errno == EINTR)
		;
}

#define DEFINE_LOG(name, prio, cond)                                                               \
	void name(const char *fmt, ...)                                                            \
	{                                                                                          \
		va_list ap;                                                                        \
		int saved = errno;                                                                 \
		if (!(cond))                                                                       \
			return;                                                                    \
		va_start(ap, fmt);                                                                 \
		vlog(prio, fmt, ap);                                                               \
		va_end(ap);                                                                        \
		errno = saved;                                                                     \
	}

DEFINE_LOG(log_err, 3, 1)
DEFINE_LOG(log_warn, 4, 1)
DEFINE_LOG(log_info, 6, 1)
DEFINE_LOG(log_debug, 7, log_verbose > 0)

void
log_info_bytes(const char *prefix, const char *line, size_t len)
{
	char text[2048];

	if (len > sizeof text)
		len = sizeof text; /* vlog cuts the line shorter still */
	for (size_t i = 0; i < len; i++)
		text[i] = (unsigned char)line[i] < 0x20 || line[i] == 0x7f ? '?' : line[i];
	log_info("%s: %.*s", prefix, (int)len, text);
}

void
die(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(3, fmt, ap);
	va_end(ap);
	exit(code);
}

void
print_version(void)
{
	printf("%s %s\n", log_prog, PVEKIT_VERSION);
}
