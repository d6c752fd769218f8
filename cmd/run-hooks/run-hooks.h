/* run-hooks: run-parts with timeouts, and guest events from pve-watch-conf. */
#ifndef RUN_HOOKS_H
#define RUN_HOOKS_H

#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "proc.h"
#include "util.h"

enum name_rule { NAMES_CLASSIC, NAMES_LSBSYSINIT, NAMES_REGEX };

struct opts {
	int test, list, report, verbose, reverse, exit_on_error, new_session;
	int systemd_run; /* each hook as a transient service of PID 1 (lib/sdrun) */
	enum name_rule names;
	const char *regex;
	char **args; /* -a/--arg and the operands after DIR */
	size_t nargs;
	mode_t umask;
	int64_t timeout_ms; /* -1: not given */
	int64_t kill_after_ms;
	const char *events; /* HOOKS dir: --events mode */
	unsigned long jobs;
	const char *state_dir;
	const char *node;
};

/* scan.c: which files of a directory are hooks, as run-parts decides. */
struct names {
	char **v;
	size_t n;
};
int names_init(const struct opts *o, char *err, size_t errlen);
int name_ok(const char *name);
/* The matching entries of dir in strcmp order; -1 with errno if unreadable. */
int names_scan(const char *dir, struct names *out);
void names_free(struct names *n);

enum entry_kind {
	ENTRY_RUN,     /* executable regular file */
	ENTRY_LISTED,  /* readable regular file, not executable: --list only */
	ENTRY_SKIP,    /* directory, or neither readable nor executable */
	ENTRY_NOSTAT,  /* stat failed (broken symlink): errno says why */
	ENTRY_NOTPLAIN /* fifo, socket, device */
};
enum entry_kind entry_classify(const char *path);

/* hookrun.c: one running hook and its output. */
enum out_mode {
	OUT_INHERIT, /* the hook writes to our stdout and stderr */
	OUT_REPORT,  /* run-parts --report: "PATH:" before its first output */
	OUT_LOG      /* each line logged as "LABEL: line" */
};

struct hookrun {
	struct proc proc;
	int fd[2]; /* stdout, stderr read ends */
	char *unit;            /* --systemd-run: the hook's transient unit */
	int stopper_fd;        /* pidfd of "systemctl stop UNIT", once systemd-run was given up */
	pid_t stopper_pid;
	struct proc_status st; /* systemd-run's, kept while the stopper runs */
	int aborting;
	int64_t timeout_ms;
	struct buf partial[2];
	enum out_mode mode;
	const char *path;
	const char *label; /* the caller's, kept while the hook runs */
	int header_done;
	int64_t started;
};

struct hookspec {
	const char *path;
	char *const *argv;
	char *const *envp;
	enum out_mode mode;
	const char *label; /* OUT_LOG */
	int stdin_null;
	uint32_t vmid; /* --systemd-run: part of the unit's name, 0: none */
	int hold_fd;   /* 0, or a descriptor the supervisor keeps (lib/proc fd_hold) */
};

/* Each running hook uses three pollfd slots. */
#define HOOKRUN_NPOLL 3

int hookrun_start(struct hookrun *r, const struct hookspec *h, const struct opts *o);
void hookrun_pollfds(const struct hookrun *r, struct pollfd *pfd);
/* Handles poll results; 1 when the hook has finished (st filled), else 0. */
int hookrun_handle(struct hookrun *r, const struct pollfd *pfd, struct proc_status *st);
void hookrun_abort(struct hookrun *r);

/* signals.c */
extern volatile sig_atomic_t stop_signal; /* the stop signal taken, 0: none */
extern sigset_t poll_mask;    /* the mask ppoll() runs with: stop signals open */
void setup_signals(void);     /* blocks the stop signals, installs their handler */
void take_stop_signals(void); /* lets a pending stop signal set stop_signal */

/* events.c */
int events_run(const struct opts *o);

/* journal.c: events read but not finished, kept across a crash. */
struct journal {
	int fd, lock_fd, dir_fd;
	/* STATE/run-hooks/hooks.lock: held by run-hooks and by each hook's
	 * supervisor (lib/proc fd_hold) until its hook and all it started are
	 * gone, so a restart waits for the hooks of a run that was killed. */
	int hooks_fd;
	char *path;
	off_t size;
	uint64_t next_seq;
	int failing; /* the last write failed: said once */
};
struct journal_entry {
	uint64_t seq;
	char *line;
};
/* Opens (creating) STATE_DIR/run-hooks/journal and returns the unfinished
 * entries in order. 0, -1 with a message already logged and *code set. */
int journal_open(struct journal *j, const char *state_dir, struct journal_entry **pending,
                 size_t *npending, int *code);
/* Appends "E" entries, assigning their seq numbers, and syncs. 0, or -1
 * when they could not be written (said once). */
int journal_add(struct journal *j, struct journal_entry *const *e, size_t n);
void journal_done(struct journal *j, uint64_t seq);
/* Called when nothing is outstanding: empties the journal. */
void journal_clear(struct journal *j);
/* Rewrites the journal with only the given entries, when it grew large. */
int journal_needs_compacting(const struct journal *j);
void journal_rewrite(struct journal *j, const struct journal_entry *const *e, size_t n);
void journal_close(struct journal *j);

#endif
