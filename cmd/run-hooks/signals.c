/* run-hooks' stop signals (SIGTERM, SIGINT, SIGHUP): blocked except while
 * the runner waits in ppoll(), so they are seen there and nowhere else, and
 * a hook's run is never cut in the middle of our own bookkeeping. */
#include <signal.h>

#include "run-hooks.h"

volatile sig_atomic_t stop_signal;
sigset_t poll_mask;

static void
on_stop(int sig)
{
	stop_signal = sig;
}

/* Stop signals are blocked except inside ppoll(), so they are seen there. */
void
setup_signals(void)
{
	static const int stops[] = { SIGTERM, SIGINT, SIGHUP };
	sigset_t set;

	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&set);
	for (size_t i = 0; i < ARRAY_LEN(stops); i++) {
		sigaddset(&set, stops[i]);
		on_signal(stops[i], on_stop);
	}
	sigprocmask(SIG_BLOCK, &set, &poll_mask);
	for (size_t i = 0; i < ARRAY_LEN(stops); i++)
		sigdelset(&poll_mask, stops[i]);
}

void
take_stop_signals(void)
{
	sigset_t old;

	sigprocmask(SIG_SETMASK, &poll_mask, &old);
	sigprocmask(SIG_SETMASK, &old, NULL);
}
