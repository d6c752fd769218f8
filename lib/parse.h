/* Strict parsers of small values: the whole string must match; 0 or -1. */
#ifndef PVEKIT_PARSE_H
#define PVEKIT_PARSE_H

#include <stdint.h>

int parse_ulong(const char *s, unsigned long max, unsigned long *out);
/* Seconds in decimal ("5", "0.25", ".5"), 0 to PARSE_SECONDS_MAX: no sign,
 * no exponent, no hex, no "inf". */
#define PARSE_SECONDS_MAX 1e9
int parse_seconds(const char *s, double *out);
int parse_port(const char *s, uint16_t *out);  /* 1..65535, digits only */
int parse_vmid(const char *s, uint32_t *out);  /* ^[1-9][0-9]{0,8}$ */
int parse_bool(const char *s, int *out);       /* 1/0 yes/no true/false on/off */

/* Cuts spaces, tabs, CRs and newlines off both ends of s, in place;
 * returns where s now starts. */
char *trim_space(char *s);

/* Config text: past a UTF-8 byte order mark at its start, if there is one. */
const char *skip_bom(const char *text);

/* A config line's key for an error message, never more: the text before the
 * first '=' or ':' (a value may follow either, and values can be secrets),
 * blanks cut, at most KEY_EXCERPT_MAX bytes (cut at a UTF-8 character, then
 * "..."), control bytes as '?'. */
#define KEY_EXCERPT_MAX 32
#define KEY_EXCERPT_SIZE (KEY_EXCERPT_MAX + 4)
void key_excerpt(const char *line, char out[KEY_EXCERPT_SIZE]);

#endif
