/* The parts of a command line every program shares: the usage text, -h and
 * -V, usage errors (one log line, the usage on stderr, exit 64), and the
 * checks of option values, worded the same everywhere:
 *   "--interval 0: want seconds from 0.05 to 86400"
 * getopt_long itself stays in each program: a getopt switch is its own. */
#ifndef PVEKIT_OPT_H
#define PVEKIT_OPT_H

#include <stdint.h>

#include "parse.h"

/* opt_seconds' max for "no upper bound" (parse_seconds' own limit). */
#define OPT_NO_MAX PARSE_SECONDS_MAX

/* Registers the usage (lines ending in '\n') that -h and every usage error
 * print, and an optional help text (options, one a line) that -h prints
 * after it, following a blank line. Call it before parsing. */
void opt_usage(const char *usage, const char *help);

/* These end the program, and say so twice: cppcheck knows only the
 * attribute. */
/* -h: the usage and the help on stdout, exit 0. */
_Noreturn void opt_help(void) __attribute__((noreturn));
/* -V: "prog VERSION" on stdout, exit 0. */
_Noreturn void opt_version(void) __attribute__((noreturn));
/* "prog: MESSAGE" (a log line), the usage on stderr, exit 64. */
_Noreturn void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* After getopt_long has said what is wrong (an unknown option, a missing
 * value): the usage on stderr, exit 64. */
_Noreturn void opt_bad(void) __attribute__((noreturn));
/* For a program that takes no operands: a usage error naming the first one
 * left after getopt_long (argv[optind]), if there is one. */
void opt_no_operands(int argc, char *const argv[]);

/* Option values; a bad one is a usage error that names the option and the
 * value. opt is the long option's name as the user knows it ("--timeout"). */
/* Seconds in decimal, fractions allowed, from min to max (OPT_NO_MAX: as
 * far as parse_seconds goes); the message names the range either way. */
double opt_seconds(const char *opt, const char *arg, double min, double max);
/* Whole milliseconds from min to max. */
unsigned long opt_ms(const char *opt, const char *arg, unsigned long min, unsigned long max);
/* A duration in seconds ("5", "0.5") or milliseconds ("500ms"), returned
 * in whole milliseconds (rounded), from min_ms to max_ms. */
int64_t opt_duration_ms(const char *opt, const char *arg, int64_t min_ms, int64_t max_ms);
/* A count from min to max. */
unsigned long opt_count(const char *opt, const char *arg, unsigned long min, unsigned long max);
/* A Proxmox node name (letters, digits, '-'); returns arg. */
const char *opt_node(const char *arg);

#endif
