/* Backend "subprocess" internals that tests look at. */
#ifndef LMC_RUNTIME_SUBPROCESS_H
#define LMC_RUNTIME_SUBPROCESS_H

#include <sys/types.h>

#include "lmc/model.h"

/* The bridge's process id while it runs; 0 once it has been reaped (or for
 * a model of another backend). */
pid_t lmc_subprocess_pid(const lmc_model *m);
/* Changes the reply timeout of a loaded model (tests: a slow start-up, then
 * a short wait for the fault under test). */
void lmc_subprocess_set_timeout(lmc_model *m, double seconds);

#endif
