/* Signal handlers for the programs that take signals asynchronously. */
#ifndef PVEKIT_SIGNALS_H
#define PVEKIT_SIGNALS_H

/* Installs handler for sig with sigaction and no SA_RESTART. */
void on_signal(int sig, void (*handler)(int));

#endif
