/* Diagnostics on stderr, one line each: "prog: context: reason".
 * Under systemd (stderr is the journal stream) the line also carries a <N>
 * priority prefix. */
#ifndef PVEKIT_LOG_H
#define PVEKIT_LOG_H

#include <stddef.h>

/* Exit codes shared by every program; each man page lists the ones it uses. */
enum {
	EXIT_TIMEOUT = 2,
	EXIT_USAGE = 64,
	EXIT_DATAERR = 65,
	EXIT_UNAVAILABLE = 69,
	EXIT_SOFTWARE = 70,
	EXIT_OSERR = 71,
	EXIT_CANTCREAT = 73, /* a file the file system refused for good (EPERM) */
	EXIT_TEMPFAIL = 75,
	EXIT_NOPERM = 77, /* refused: not allowed */
	EXIT_CONFIG = 78,
};

extern const char *log_prog;
extern int log_verbose;

void log_init(const char *prog);
void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "prefix: line" at info, line being len bytes of a child's output: a NUL
 * shows as '?' like any control byte, instead of ending the line there. */
void log_info_bytes(const char *prefix, const char *line, size_t len);
_Noreturn void die(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn)); /* the attribute for cppcheck */

/* Prints "prog VERSION" on stdout (for -V). */
void print_version(void);

#endif
