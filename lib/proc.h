/* Child commands with a deadline that nothing they start can escape.
 *
 * proc_spawn() forks a small supervisor that starts the command and waits for
 * it. The supervisor is a child subreaper (PR_SET_CHILD_SUBREAPER), so every
 * process the command starts stays below it, even one that double-forks into
 * a new session. When the deadline passes, on proc_abort(), or when the
 * caller dies, the supervisor sends SIGTERM (and SIGCONT) to the command's
 * process group and to every process below it, SIGKILL to whatever is left
 * kill_after_ms later, and reports only when nothing is left. A command that
 * ends by itself is reported as soon as its main process exits; processes it
 * left running in the background are not touched then. A supervisor whose
 * caller died before it could arm PR_SET_PDEATHSIG starts nothing.
 *
 * The command starts with an empty signal mask and SIGPIPE at its default.
 * Instead of a file to execute it may be a function of the caller (fn),
 * run in a forked child that ends with its return value: code that decides
 * and runs commands step by step gets the same deadline.
 * The caller polls proc.fd (readable once the result is ready), then calls
 * proc_collect(); proc_run() does both. The caller must not ignore SIGCHLD,
 * and must not reap children it did not start itself (waitpid(-1, ...)). */
#ifndef PVEKIT_PROC_H
#define PVEKIT_PROC_H

#include <stdint.h>
#include <sys/types.h>

enum proc_group {
	PROC_SAME_GROUP, /* stays in the caller's process group */
	PROC_NEW_GROUP,  /* setpgid(0, 0) */
	PROC_NEW_SESSION /* setsid() */
};

#define PROC_INHERIT (-1) /* fd_in/fd_out/fd_err: keep the caller's */
#define PROC_DEVNULL (-2) /* fd_in/fd_out/fd_err: /dev/null */
#define PROC_PIPE (-3)    /* fd_out/fd_err: a pipe, read end in proc.out/proc.err */
#define PROC_TO_OUT (-4)  /* fd_err: wherever fd_out goes (one pipe for both) */

struct proc_spec {
	const char *path;  /* file to execute */
	char *const *argv; /* argv[0] included */
	char *const *envp; /* NULL: the caller's environment */
	int search_path;   /* a path without '/' is looked up in PATH */
	int (*fn)(void *arg); /* instead of path: fn(arg) in a forked child */
	void *arg;
	int fd_in, fd_out, fd_err;
	int fd_keep; /* 0, or one more descriptor (above 2) an fn child keeps */
	/* 0, or a descriptor (above 2, such as a lock) that the supervisor
	 * keeps open until its result is written: until the command and, when
	 * it was stopped, everything it started are gone. The command never
	 * gets it. A lock taken through it is held while a command of a
	 * caller that died still runs. */
	int fd_hold;
	enum proc_group group;
	int64_t timeout_ms;    /* 0: no deadline */
	int64_t kill_after_ms; /* SIGKILL this long after SIGTERM */
};

struct proc {
	pid_t pid;    /* the supervisor */
	int fd;       /* readable when the result is ready */
	int out, err; /* PROC_PIPE read ends (non-blocking, the caller closes
	               * them), else -1 */
};

struct proc_status {
	int wstatus;    /* of the command's main process, as waitpid(2) gives it */
	int exec_errno; /* the command could not be started */
	int timed_out;  /* the deadline passed while it ran */
	int aborted;    /* proc_abort() or the caller's death stopped it */
	int killed;     /* SIGKILL was needed */
	int lost;       /* the supervisor died; wstatus is its status */
	int64_t ms;     /* run time of the main process */
};

/* Starts the command; 0, or -1 with errno (the supervisor could not start). */
int proc_spawn(struct proc *p, const struct proc_spec *s);

/* Stops the command and everything it started (SIGTERM, then SIGKILL). */
void proc_abort(const struct proc *p);

/* Waits for the result (at once when proc.fd polled readable), reaps the
 * supervisor and closes proc.fd. */
void proc_collect(struct proc *p, struct proc_status *st);

/* proc_spawn() and proc_collect(); 0, or -1 with errno. */
int proc_run(const struct proc_spec *s, struct proc_status *st);

/* The status as a shell reports it: the exit code, 128+N for signal N, 126
 * (127 for ENOENT) when it could not be executed. A command that timed out
 * or was aborted and still exited 0 reports 128+SIGTERM: it did not finish. */
int proc_exit_code(const struct proc_status *st);

/* "exited with return code 3", "exited because of uncaught signal 15",
 * "could not be executed: No such file or directory" into buf. */
const char *proc_describe(const struct proc_status *st, char *buf, size_t len);

#endif
