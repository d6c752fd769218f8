/* Clocks: monotonic time for deadlines, real time for output. */
#ifndef PVEKIT_CLOCK_H
#define PVEKIT_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds and microseconds; CLOCK_REALTIME in ns. */
int64_t mono_ms(void);
int64_t mono_us(void);
int64_t real_ns(void);
/* Sleeps ms milliseconds, going on after signals. */
void sleep_ms(int64_t ms);

/* The time now in UTC as "2024-05-01T12:00:00.123", with digits (1 to 9)
 * digits of the second's fraction. */
void utc_time_now(char *out, size_t len, int digits);

#endif
