/* failoverip-set internals: the configuration, one failover IP's state, and
 * the provider interface that online.c, hetzner.c and ovh.c implement. */
#ifndef FAILOVERIP_H
#define FAILOVERIP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "ipaddr.h"

struct provider;

struct config {
	const char *path;
	const struct provider *provider;
	char *destination;
	char *destination6; /* hetzner: where IPv6 nets go (a server's IPv6 subnet) */
	char *api_url;      /* without a trailing '/' */
	char *token;
	char *user, *password;
	char *app_key, *app_secret, *consumer_key;
	char *ca_file;
	char *route_dev; /* read by the hooks; checked here so typos show up */
	double timeout, connect_timeout, retry_delay, poll_interval;
	unsigned long retries;
	char peer[256]; /* host[:port] of api_url, for messages */
	int allow_http;
};

/* How one IP (or one request) ended. Each maps to an exit status. */
enum outcome {
	OUTCOME_OK = 0,
	OUTCOME_REFUSED,   /* the API said no (1) */
	OUTCOME_AUTH,      /* credentials refused (1); the run stops at once */
	OUTCOME_UNKNOWN,   /* not a failover IP of this account (1, or skipped) */
	OUTCOME_BADREPLY,  /* an answer that does not parse (65) */
	OUTCOME_UNAVAIL,   /* TLS verification failed, unusable URL (69) */
	OUTCOME_TIMEOUT,   /* the deadline passed (2) */
	OUTCOME_TRANSIENT, /* 5xx, 429, network, locked: retried, then 75 */
	OUTCOME_CONFIG,    /* the configuration cannot serve this IP (78) */
};

enum fip_state {
	ST_PENDING,   /* not settled yet */
	ST_UNCHANGED, /* already routed to the destination */
	ST_ROUTED,    /* moved by this run */
	ST_WOULD,     /* -n: would move */
	ST_FAILED,
	ST_SKIPPED, /* unknown to the provider, --skip-unknown */
};

struct fip {
	char *text;       /* canonical address, with "/prefix" when one was given */
	char *addr;       /* canonical address alone */
	int family;       /* AF_INET or AF_INET6 */
	int prefix;       /* -1 when none was given */
	char *current;    /* destination it is routed to now, NULL when unrouted */
	char *previous;   /* destination before this run moved it */
	const char *dest; /* where this run routes it (the config's), set by the driver */
	/* What the provider moves for it, once looked up: the failover IP, net
	 * (Hetzner: its net address) or block (OVH: "ADDR/LEN") that holds
	 * the address; block_len is its prefix length. */
	char *block;
	unsigned block_len;
	enum fip_state state;
	enum outcome fail;
	int move_sent;     /* a move request went out for it in this run */
	long long task_id; /* ovh: the move task being polled, 0 = none */
};

/* The state of one run; the providers fill msg and hint_ms when a request
 * fails, the driver in main.c logs and retries. */
struct ctx {
	const struct config *cfg;
	json_t *listing; /* hetzner: the last GET /failover, for the next IPs of a run */
	struct http *http;
	struct http_response resp;
	int64_t deadline_ms; /* mono_ms() */
	int64_t hint_ms;     /* minimum wait before a retry (Retry-After...) */
	char msg[512];       /* why the last request failed, redacted */
	int have_delta;      /* ovh: server clock minus ours, from /auth/time */
	long long delta;
};

struct provider {
	const char *name;
	const char *default_url;
	/* 1: one request may move several IPs to one destination (Online). */
	int batch;
	/* 1: IPv6 goes to destination6, IPv4 to destination (Hetzner). */
	int dest6;
	/* The config keys this provider needs; 0 or -1 with a reason. */
	int (*check)(const struct config *cfg, char *err, size_t errlen);
	int (*valid_dest)(const char *dest);
	int (*same_dest)(const char *a, const char *b);
	/* Fills current for every PENDING ip, or marks one ST_FAILED (OUTCOME_UNKNOWN). */
	enum outcome (*lookup)(struct ctx *c, struct fip **ips, size_t n);
	/* Moves ips (all PENDING, all elsewhere) to dest and marks them. */
	enum outcome (*move)(struct ctx *c, struct fip **ips, size_t n, const char *dest);
	/* Appends "IP DEST" lines for every failover IP of the account. */
	enum outcome (*list)(struct ctx *c, struct buf *out);
};

/* config.c: reads and checks the file; every problem exits 78. */
void config_load(struct config *cfg, const char *path);
void config_free(struct config *cfg);

extern const struct provider provider_online, provider_hetzner, provider_ovh;

/* api.c: requests and replies shared by the providers. */
struct api_req {
	const char *method;
	const char *path;         /* appended to api_url, already escaped */
	const char *body;         /* NULL: none */
	const char *content_type; /* of the body */
	const char *const *auth_headers;
	int basic_auth; /* user/password from the config */
};

enum outcome api_send(struct ctx *c, const struct api_req *r);
/* Maps a non-2xx status to an outcome, with the peer's message in c->msg:
 * 401/403 OUTCOME_AUTH, 429/5xx OUTCOME_TRANSIENT (Retry-After as hint), others
 * OUTCOME_REFUSED. */
enum outcome api_status(struct ctx *c, const struct api_req *r, const char *detail);
/* Parses the reply body; NULL with c->msg set when it is not JSON. */
json_t *api_json(struct ctx *c, const struct api_req *r);
enum outcome api_fail(struct ctx *c, enum outcome o, const struct api_req *r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The peer's own words about an error (Hetzner error.code/message, OVH
 * errorCode/message, Online error/error_description), redacted. */
void api_error_text(const json_t *reply, char *out, size_t outlen);
/* Sets *out to the string member key of obj, NULL for a JSON null; -1 when
 * the member is missing or has another type. */
int json_string_or_null(const json_t *obj, const char *key, const char **out);

/* 1 when the last reply has a 2xx status. */
int api_2xx(const struct ctx *c);
/* The last reply's body as JSON, NULL when it is not: for error replies,
 * whose body may be anything (c->msg is left alone). */
json_t *api_body(const struct ctx *c);
/* Checks that *reply (from api_json; NULL when that failed) is an array;
 * otherwise frees it, sets it to NULL and returns OUTCOME_BADREPLY. */
enum outcome api_want_array(struct ctx *c, const struct api_req *r, json_t **reply);

/* For the providers that read and move one IP per request (Hetzner, OVH):
 * lookup_one for every PENDING ip, where OUTCOME_UNKNOWN marks that ip unknown
 * and goes on; move_one for every ip. Both stop at the first failure. */
typedef enum outcome (*lookup_one_fn)(struct ctx *c, struct fip *ip);
typedef enum outcome (*move_one_fn)(struct ctx *c, struct fip *ip, const char *dest);
enum outcome api_lookup_each(struct ctx *c, struct fip **ips, size_t n, lookup_one_fn one);
enum outcome api_move_each(struct ctx *c, struct fip **ips, size_t n, const char *dest,
                           move_one_fn one);

/* Records where ip is routed now (NULL or "": nowhere). */
void fip_set_current(struct fip *ip, const char *dest);
/* ip is not a failover IP of the account. */
void fip_set_unknown(struct fip *ip);
/* Records the IP, net or block the provider moves for ip (key as the
 * provider names it, len its prefix length), and says once when that is
 * more than the address or prefix given. */
void fip_set_block(struct fip *ip, const char *key, unsigned len, const char *what);

/* A destination as the API gave it, for the output: "-" for none, "?" for
 * one that is not valid for the provider (it could garble the line). */
const char *dest_shown(const struct provider *p, const char *dest);
/* Appends the "IP DEST" line of --list. */
void list_line(struct buf *out, const struct provider *p, const char *ip, const char *dest);

/* Waits ms milliseconds, but not past the deadline; -1 when the deadline
 * came first. */
int wait_within(struct ctx *c, int64_t ms);

/* driver.c: one run, a batch at a time, with retries; the exit status. */
int route_ips(struct ctx *c, struct fip **ips, size_t n, int dry_run, int skip_unknown);
int list_ips(struct ctx *c, struct fip **ips, size_t n, int skip_unknown);

#endif
