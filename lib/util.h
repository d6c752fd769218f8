/* The basics most programs use, in one include: memory, buffers, files,
 * clocks, small parsers, node names, open-file limits and signal handlers.
 * Code in lib/ includes the headers it needs one by one. */
#ifndef PVEKIT_UTIL_H
#define PVEKIT_UTIL_H

#include "alloc.h"
#include "buf.h"
#include "clock.h"
#include "fdbudget.h"
#include "file.h"
#include "node.h"
#include "parse.h"
#include "signals.h"

#endif
