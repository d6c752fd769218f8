/* Open files: how many sockets a program that opens many at once may keep. */
#ifndef PVEKIT_FDBUDGET_H
#define PVEKIT_FDBUDGET_H

#include <stddef.h>

/* Raises the soft open-files limit to the hard limit. */
void raise_nofile_limit(void);
/* The same, and past the hard limit to want (at most the kernel's
 * fs.nr_open) when the hard limit is lower and we may (CAP_SYS_RESOURCE). */
void raise_nofile_limit_to(size_t want);
/* The soft limit as it is now. */
size_t open_files_limit(void);
/* The limit, raised, less reserve for everything else (at least 16, at
 * most 1000000). */
size_t open_files_budget(size_t reserve);

#endif
