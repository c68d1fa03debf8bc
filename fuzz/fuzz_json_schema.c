/* libFuzzer target for json_schema (src/runtime/json_schema.c and the
 * schema side of json_constraint.c): the input is a schema, a NUL byte and a
 * document. A schema that does not compile leaves an error and nothing
 * allocated; one that does is followed byte by byte: whatever the recogniser
 * takes as a whole document, cJSON parses as one object or array, nothing is
 * taken after it, and a copy of the state taken mid-way reaches the same
 * verdict (the mask tries tokens on copies). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fuzz.h"
#include "runtime/json_constraint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    if (!nul) return 0;
    lmc_json_schema *schema = NULL;
    if (lmc_json_schema_compile((const char *)data, &schema) != LMC_OK) {
        REQUIRE(schema == NULL && lmc_last_error()[0]);
        return 0;
    }
    const uint8_t *doc = nul + 1;
    size_t n_doc = size - (size_t)(doc - data), n = 0, half = n_doc / 2;
    lmc_json_state s, copy;
    lmc_json_init(&s, schema);
    copy = s;
    while (n < n_doc && lmc_json_step(&s, doc[n])) {
        n++;
        if (n == half) copy = s;
        if (lmc_json_done(&s)) break;
    }
    if (lmc_json_done(&s)) {
        if (n < n_doc) {
            lmc_json_state after = s;
            REQUIRE(!lmc_json_step(&after, doc[n]));
        }
        char *text = malloc(n + 1);
        REQUIRE(text != NULL);
        memcpy(text, doc, n);
        text[n] = 0;
        if (!memchr(text, 0, n)) {
            cJSON *j = cJSON_ParseWithOpts(text, NULL, true);
            REQUIRE(cJSON_IsObject(j) || cJSON_IsArray(j));
            cJSON_Delete(j);
        }
        free(text);
    }
    if (n_doc >= 2 && n >= half) {
        size_t k = half;
        while (k < n_doc && lmc_json_step(&copy, doc[k])) {
            k++;
            if (lmc_json_done(&copy)) break;
        }
        REQUIRE(k == n && lmc_json_done(&copy) == lmc_json_done(&s));
    }
    lmc_json_schema_free(schema);
    return 0;
}
