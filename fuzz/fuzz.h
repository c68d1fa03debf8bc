/* What every libFuzzer target here shares: the entry point's prototype
 * (-Wmissing-prototypes) and REQUIRE for invariants. */
#ifndef LMC_FUZZ_FUZZ_H
#define LMC_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* A broken invariant is a bug: crash so libFuzzer keeps the input. */
#define REQUIRE(cond)                  \
    do {                               \
        if (!(cond)) __builtin_trap(); \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
