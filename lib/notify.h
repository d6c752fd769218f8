/* The sd_notify protocol without libsystemd: one datagram to $NOTIFY_SOCKET.
 * A no-op when not started by systemd. */
#ifndef PVEKIT_NOTIFY_H
#define PVEKIT_NOTIFY_H

int sd_notify_msg(const char *msg); /* e.g. "READY=1", "STATUS=watching 12 guests" */
int sd_notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
