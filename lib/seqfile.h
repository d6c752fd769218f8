/* The confirmation between pve-watch-conf --seq and run-hooks --events:
 * STATE_DIR/run-hooks/confirmed holds the sequence number of the last event
 * run-hooks has put in its journal and synced, as one decimal number and a
 * newline. run-hooks writes it (atomically, synced) after each journal
 * write; the watcher reads it and forgets the events up to that number, so
 * whatever is not confirmed is printed again after a restart. */
#ifndef PVEKIT_SEQFILE_H
#define PVEKIT_SEQFILE_H

#include <stdint.h>

#define SEQFILE_NAME "run-hooks/confirmed"

/* STATE_DIR/run-hooks/confirmed, allocated. */
char *seqfile_path(const char *state_dir);

/* 1 and *seq; 0 when the file does not exist; -1 with errno (EINVAL: not
 * one number and a newline). */
int seqfile_read(const char *path, uint64_t *seq);

/* Writes seq (temp file, fsync, rename, directory fsync). 0, or -1 with
 * errno. */
int seqfile_write(const char *path, uint64_t seq);

#endif
