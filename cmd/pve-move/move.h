/* pve-move: move guests between Proxmox clusters (a drop-in for proxmove).
 *
 * rc.c      ~/.proxmoverc, read with Python configparser's rules
 * api.c     the Proxmox API: tickets + CSRF or API tokens, tasks
 * guest.c   finding the guest, translating its config, the plan
 * disk.c    one disk: allocate through the API, copy (NBD, stream, ZFS)
 * relay.c   the bytes between the two ssh sessions: count, limit, progress
 * ssh.c     ssh command lines and remote shell quoting
 * journal.c the resume journal
 * steps.c   the steps of one move (create, stop, copy, finish), containers,
 *           --native
 * main.c    options */
#ifndef PVE_MOVE_H
#define PVE_MOVE_H

#include <jansson.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "proc.h"
#include "util.h"

/* exit codes besides lib/log.h's */
#define EXIT_FAILED 1 /* a move failed; the guest is left as the message says */

/* ---- rc.c ---- */
struct rc_storage {
	char *alias, *name, *node; /* node NULL: every node */
	char *ssh;                 /* user@host, NULL: this host (no ssh) */
	int ssh_port;              /* 0: ssh's default */
	char *path, *temp;         /* accepted, not needed */
	int line;
};

struct rc_cluster {
	char *alias;
	char *host;
	int port;
	char *user, *password;        /* ticket login */
	char *token_id, *token_secret; /* USER@REALM!ID and its secret */
	char *fingerprint, *ca;
	int line;
};

struct rc {
	const char *file;
	struct rc_cluster *clusters;
	size_t nclusters;
	struct rc_storage *storages;
	size_t nstorages;
};

/* Reads the file; any problem ends the program with exit 78. */
void rc_load(struct rc *rc, const char *file);
void rc_free(struct rc *rc);
const struct rc_cluster *rc_cluster(const struct rc *rc, const char *alias);
/* The storage section for NAME on NODE: [storage:ALIAS:NAME@NODE], else
 * [storage:ALIAS:NAME]; NULL when neither is there. */
const struct rc_storage *rc_storage(const struct rc *rc, const char *alias, const char *name,
                                    const char *node);
/* The configparser reader: per section in file order, one callback with
 * key NULL (the section itself), then one per (key, value), DEFAULT's
 * keys merged in; 0, or -1 with a message in err. */
struct ini_item {
	const char *section, *key, *value;
	int line;
};
int ini_parse(const char *text, size_t len, int (*cb)(const struct ini_item *, void *), void *arg,
              char *err, size_t errlen);

/* ---- api.c ---- */
struct api_error {
	long status; /* HTTP status, 0 when none came */
	char msg[512];
};

struct api {
	const char *alias;
	char *base; /* https://host:port/api2/json */
	const struct rc_cluster *c;
	struct http *h;
	int insecure;
	char *ticket, *csrf, *auth_header, *cookie;
	int64_t ticket_ms;
	int is_root; /* logged in as root@pam with a password */
};

void api_open(struct api *a, const struct rc_cluster *c, int insecure);
void api_close(struct api *a);
/* Logs in (or checks the token) with GET /version; -1 and err on failure. */
int api_login(struct api *a, struct api_error *err);
/* One call. form: "k=v&k=v" (values escaped with form_add) or NULL.
 * Returns the "data" member (new reference; json null for none), or NULL
 * with err filled in. */
json_t *api_call(struct api *a, const char *method, const char *path, const char *form,
                 struct api_error *err);
/* Waits for the task the UPID names to end; 0 OK (warnings are logged),
 * -1 with its exit status or the API's error in err. */
int api_task_wait(struct api *a, const char *upid, int64_t timeout_ms, struct api_error *err);
/* Appends "&key=value" (escaped) to a form. */
void form_add(struct buf *form, const char *key, const char *value);

/* ---- ssh.c ---- */
struct host {
	const char *label;   /* "source storage local-lvm" for messages */
	const char *target;  /* user@host, NULL: run here */
	int port;
	int forward_agent;   /* --direct: ssh -A, a connection of its own */
};

struct ssh_opts {
	const char *config;  /* -F, NULL: ssh's own */
	const char *ciphers; /* -c, NULL: ssh's own */
	int debug;
};

extern struct ssh_opts ssh_opts;

/* One ssh connection per host for the whole run: later commands open a
 * session on it instead of logging in again (ControlMaster, its socket in
 * a private directory). Commands with forwards (-L/-R) log in on their own,
 * so that no forward outlives its command. ssh_mux_stop() ends the masters
 * (also run at exit); a master whose pve-move was killed ends 30 s after
 * its last session. Without ssh_mux_start() every command logs in. */
void ssh_mux_start(void);
void ssh_mux_stop(void);

/* Single-quotes s for the remote shell. Returns malloc'ed memory. */
char *shq(const char *s);
/* argv for running the shell command cmd on h (ssh, or sh -c here);
 * extra: more ssh options (-L/-R...), NULL-terminated, may be NULL. */
char **host_argv(const struct host *h, const char *cmd, char *const *extra);
void argv_free(char **argv);
/* Runs cmd on h and returns its stdout (at most max bytes) in out; stderr
 * is kept in errout. 0 when it exited 0, else -1. */
int host_run(const struct host *h, const char *cmd, int64_t timeout_ms, struct buf *out,
             struct buf *errout);
/* The last line of a command's stderr (redacted), or "WHAT failed...". */
const char *first_line_of(const struct buf *b, const char *what);
/* The command as one printable line, for -n and --debug. */
char *argv_line(char *const *argv);
char *direct_script(const struct host *dh, const char *scmd, const char *dcmd, char *why,
                    size_t whylen);

/* ---- relay.c ---- */
struct progress {
	const char *what;  /* "web1 scsi0" */
	uint64_t total;    /* bytes expected (virtual size), 0 unknown */
	uint64_t done;     /* bytes of the guest data processed */
	uint64_t wire;     /* bytes that crossed */
	int64_t start_ms, last_ms;
};

extern volatile sig_atomic_t interrupted;
extern uint64_t bwlimit_bps; /* bytes per second, 0: none */

void progress_start(struct progress *p, const char *what, uint64_t total);
/* Prints the line when it is time (live on a terminal, every few seconds
 * otherwise); force: now, and end the line. */
void progress_show(struct progress *p, int force);

/* A command's stdout piped into another's stdin through us (counted,
 * limited), with the remote ends' stderr collected for messages.
 * Returns 0 when both exited 0. */
struct pipe_cmd {
	char **src_argv, **dst_argv;
	int64_t idle_ms; /* no byte for this long: give up */
	/* the source reports how far it got as "@OFFSET" lines on stderr */
	int src_positions;
	/* filled in */
	struct buf src_err, dst_err;
	int src_rc, dst_rc;
	char why[256];
};
int relay_pipe(struct pipe_cmd *pc, struct progress *p);
int relay_straight(struct pipe_cmd *pc, struct progress *p);
int relay_direct(struct pipe_cmd *pc, struct progress *p);

/* NBD: the source command serves a socket, forwarded to local_src; the
 * target command connects to its own end of a forward that reaches
 * local_dst, where we listen. Bytes flow through us. */
struct nbd_cmd {
	char **src_argv, **dst_argv;
	const char *local_src, *local_dst; /* local socket paths */
	int64_t idle_ms;
	struct buf src_err, dst_err, dst_out;
	int src_rc, dst_rc;
	char why[256];
};
int relay_nbd(struct nbd_cmd *nc, struct progress *p);

/* ---- guest.c ---- */
enum disk_kind {
	DK_DISK,     /* a volume to copy */
	DK_CLOUDINIT, /* recreated on the target */
	DK_CDROM,    /* an ISO or a drive: set to none */
	DK_NONE,     /* "none" already */
};

struct vol {
	char *key;       /* scsi0, efidisk0, rootfs, mp0 */
	char *value;     /* the config value as read */
	char *volid;     /* storage:volname */
	char *storage;   /* source storage */
	char *opts;      /* the options after the volume (",..."), never NULL */
	enum disk_kind kind;
	/* resolved */
	char *path, *format;
	uint64_t size;
	char *stype;     /* source storage type */
	char *dst_storage, *dst_stype, *dst_format;
	const struct rc_storage *src_rc, *dst_rc;
	char *method;    /* "sparse", "nbd", "stream", "zfs", "vzdump" */
	uint64_t file_size; /* stream: the source file's length */
	/* progress of the copy (journal) */
	char *dst_volid;
	int done;
};

struct guest {
	char *type;   /* qemu or lxc */
	uint32_t vmid;
	char *name;   /* without a suffix */
	char *cur_name; /* as found (may carry a suffix) */
	char *node;
	char *status;
	char *pool;
	json_t *config; /* as read */
	json_t *create; /* translated config for the create call (qemu) */
	struct vol *vols;
	size_t nvols;
	char **warnings;
	size_t nwarnings;
	int running;
	/* destination */
	uint32_t dst_vmid;
	int vmid_fixed; /* --vmid or kept from the journal */
};

struct move;
/* Finds the guest named or numbered by arg on the source. 0, or -1 after a
 * message; *code the exit code. */
int guest_find(struct move *m, const char *arg, struct guest *g, int *code);
/* Reads its config, refuses what cannot move, translates, resolves the
 * disks. 0, or -1 after a message. */
int guest_prepare(struct move *m, struct guest *g, int *code);
void guest_free(struct guest *g);
const char *map_lookup(char *const *map, size_t n, const char *key);

/* ---- journal.c ---- */
struct journal {
	char *path;
	json_t *j;
};
int journal_open(struct journal *jl, const char *dir, const char *alias, uint32_t vmid);
const char *journal_get(struct journal *jl, const char *key);
void journal_set(struct journal *jl, const char *key, const char *value);
void journal_set_int(struct journal *jl, const char *key, long long v);
long long journal_get_int(struct journal *jl, const char *key, long long dflt);
int journal_disk_done(struct journal *jl, const char *key, const char **dst_volid);
void journal_disk_set(struct journal *jl, const char *key, const char *field, const char *value);
const char *journal_disk_get(struct journal *jl, const char *key, const char *field);
void journal_save(struct journal *jl);
void journal_remove(struct journal *jl);
void journal_close(struct journal *jl);

/* ---- the run ---- */
struct move {
	struct rc rc;
	struct api src, dst;
	const char *src_alias, *dst_alias, *node, *storage;
	char **bridge_map, **storage_map;
	size_t nbridge_map, nstorage_map;
	uint32_t vmid_opt;
	const char *state_dir;
	int dry_run, skip_disks, skip_start, wait_before_stop, ignore_exists;
	int resume, native, verify, debug, direct;
	int64_t shutdown_timeout_ms;
	int src_root, dst_root;
	json_t *src_resources, *dst_resources;
};

/* ---- steps.c ---- */
/* Moves one guest; 0, or the exit code after a message. */
int move_guest(struct move *m, const char *arg);
/* In a dry run: prints one plan line on stdout. */
void plan(struct move *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- ct.c ---- */
int restore_ct(struct move *m, struct guest *g, struct journal *jl);

/* ---- native.c ---- */
/* Checks that Proxmox's remote_migrate can take the guest; 0, or an exit
 * code after a message naming what stands in the way. */
int native_check(struct move *m, struct guest *g);
/* Runs remote_migrate and follows its task. */
int native_move(struct move *m, struct guest *g, struct journal *jl);

/* ---- disk.c ---- */
/* Allocates the target volume (once), copies, sets it on the target
 * guest. stage 1: ZFS first pass while running (others: nothing).
 * 0, or an exit code after a message. */
/* sparse.c: raw to raw, data only (see there): the commands each end
 * runs. */
char *sparse_send_cmd(const struct vol *v, uint64_t bps);
char *sparse_receive_cmd(const struct vol *v, const char *dpath);

int disk_move(struct move *m, struct guest *g, struct vol *v, struct journal *jl, int stage);
int direct_check(struct move *m, struct guest *g);
/* Removes pvekit's ZFS snapshots of v on both ends (after the last stage). */
void disk_zfs_cleanup(struct move *m, struct guest *g, struct vol *v, struct journal *jl);
/* the target volume's path, through the API; NULL after a message */
char *dst_path(struct move *m, struct vol *v);
int is_lvm(const char *stype);

/* ---- zfs.c ---- */
int zfs_move(struct move *m, struct guest *g, struct vol *v, const char *dpath,
             struct journal *jl, int stage);
struct host src_host(struct move *m, const struct guest *g, const struct vol *v);
struct host dst_host(struct move *m, const struct vol *v);

#endif
