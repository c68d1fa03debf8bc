/* libFuzzer target for JSON mode's recogniser (src/runtime/json_constraint.c):
 * the input is fed byte by byte. Whatever it accepts as a whole object, cJSON
 * parses as one (the recogniser is at least as strict as JSON), it never
 * accepts anything after the object, and a copy of the state mid-way behaves
 * as the original (the mask tries tokens on copies). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "runtime/json_constraint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lmc_json_state s, copy;
    lmc_json_init(&s, NULL);
    copy = s;
    size_t n = 0;
    while (n < size && lmc_json_step(&s, data[n])) {
        n++;
        if (n == size / 2) copy = s;
        if (lmc_json_done(&s)) break;
    }
    if (n < size && lmc_json_done(&s)) {
        lmc_json_state after = s;
        REQUIRE(!lmc_json_step(&after, data[n]) || n + 1 > size);
    }
    if (lmc_json_done(&s) && n <= size) {
        char *text = malloc(n + 1);
        REQUIRE(text != NULL);
        memcpy(text, data, n);
        text[n] = 0;
        cJSON *j = memchr(text, 0, n) ? NULL : cJSON_ParseWithOpts(text, NULL, true);
        REQUIRE(memchr(text, 0, n) || cJSON_IsObject(j));
        cJSON_Delete(j);
        free(text);
    }
    /* the copy taken half-way reaches the same verdict on the rest */
    if (size >= 2 && n >= size / 2) {
        size_t k = size / 2;
        while (k < size && lmc_json_step(&copy, data[k])) {
            k++;
            if (lmc_json_done(&copy)) break;
        }
        REQUIRE(k == n && lmc_json_done(&copy) == lmc_json_done(&s));
    }
    return 0;
}
