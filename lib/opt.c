#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "log.h"
#include "node.h"
#include "opt.h"
#include "parse.h"

static const char *usage_text = "";
static const char *help_text;

void
opt_usage(const char *usage, const char *help)
{
	usage_text = usage;
	help_text = help;
}

void
opt_help(void)
{
	fputs(usage_text, stdout);
	if (help_text)
		printf("\n%s", help_text);
	exit(0);
}

void
opt_version(void)
{
	print_version();
	exit(0);
}

void
opt_bad(void)
{
	fputs(usage_text, stderr);
	exit(EXIT_USAGE);
}

void
usage_error(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_err("%s", msg);
	opt_bad();
}

void
opt_no_operands(int argc, char *const argv[])
{
	if (optind < argc)
		usage_error("%s: unexpected argument", argv[optind]);
}

double
opt_seconds(const char *opt, const char *arg, double min, double max)
{
	double v;

	if (parse_seconds(arg, &v) == 0 && v >= min && v <= max)
		return v;
	/* %.10g: 1e9 as 1000000000, 0.05 as 0.05 */
	usage_error("%s %s: want seconds from %.10g to %.10g", opt, arg, min, max);
}

int64_t
opt_duration_ms(const char *opt, const char *arg, int64_t min_ms, int64_t max_ms)
{
	size_t n = strlen(arg);
	double v;
	int rc;

	if (n > 2 && strcmp(arg + n - 2, "ms") == 0) {
		char *num = xstrndup(arg, n - 2);
		rc = parse_seconds(num, &v);
		free(num);
		v /= 1000;
	} else {
		rc = parse_seconds(arg, &v);
	}
	if (rc == 0 && v * 1000 <= (double)max_ms && (int64_t)(v * 1000 + 0.5) >= min_ms)
		return (int64_t)(v * 1000 + 0.5);
	usage_error("%s %s: want seconds from %.10g to %.10g, or milliseconds as in 500ms", opt,
	            arg, min_ms / 1000.0, max_ms / 1000.0);
}

static unsigned long
whole_number(const char *opt, const char *arg, unsigned long min, unsigned long max,
             const char *unit)
{
	unsigned long v;

	if (parse_ulong(arg, max, &v) < 0 || v < min)
		usage_error("%s %s: want %s from %lu to %lu", opt, arg, unit, min, max);
	return v;
}

unsigned long
opt_ms(const char *opt, const char *arg, unsigned long min, unsigned long max)
{
	return whole_number(opt, arg, min, max, "milliseconds");
}

unsigned long
opt_count(const char *opt, const char *arg, unsigned long min, unsigned long max)
{
	return whole_number(opt, arg, min, max, "a number");
}

const char *
opt_node(const char *arg)
{
	if (!node_name_valid(arg))
		usage_error("--node %s: not a node name (letters, digits, '-')", arg);
	return arg;
}
