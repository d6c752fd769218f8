/* Open files: how many sockets a program that opens many at once may keep. */
#ifndef PVEKIT_FDBUDGET_H
#define PVEKIT_FDBUDGET_H

#include <stddef.h>

/* Raises the soft open-files limit to the hard limit. */
void raise_nofile_limit(void);
/* The limit, raised, less reserve for everything else (at least 16, at
 * most 1000000). */
size_t open_files_budget(size_t reserve);

#endif
