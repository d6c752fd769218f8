/* Strict parsers of small values: the whole string must match; 0 or -1. */
#ifndef PVEKIT_PARSE_H
#define PVEKIT_PARSE_H

#include <stdint.h>

int parse_ulong(const char *s, unsigned long max, unsigned long *out);
int parse_seconds(const char *s, double *out); /* "5", "0.25": >= 0, finite */
int parse_port(const char *s, uint16_t *out);  /* 1..65535, digits only */
int parse_vmid(const char *s, uint32_t *out);  /* ^[1-9][0-9]{0,8}$ */
int parse_bool(const char *s, int *out);       /* 1/0 yes/no true/false on/off */

/* Cuts spaces, tabs, CRs and newlines off both ends of s, in place;
 * returns where s now starts. */
char *trim_space(char *s);

#endif
