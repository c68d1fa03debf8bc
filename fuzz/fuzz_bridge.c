/* libFuzzer target for what lmc reads from a subprocess bridge's stdout
 * (src/runtime/subprocess.c, docs/subprocess-protocol.md): the input is
 * lines of JSON, each read as the answer to request 7 of a generation
 * stream. A line is refused with printable words for the fault (the line
 * quoted, control bytes escaped), or it is a message with a string "type"
 * whose event is a token with an id and its text, the end with a known stop
 * reason, the bridge's own error, or again a fault with printable words.
 * Each line is copied to a buffer of its own length, so AddressSanitizer
 * sees any read past it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lmc/lmc.h"
#include "runtime/subprocess.h"
#include "fuzz.h"

static bool printable(const char *s) {
    if (!*s) return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return false;
    return true;
}

static void one_line(const char *line, size_t len) {
    char *copy = malloc(len ? len : 1);
    if (!copy) return;
    memcpy(copy, line, len);
    char why[512];
    cJSON *msg = lmc_bridge_parse_line(copy, len, 7, "the next token", why, sizeof why);
    free(copy);
    if (!msg) {
        REQUIRE(printable(why));
        return;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(msg, "type");
    REQUIRE(cJSON_IsObject(msg) && cJSON_IsString(type));
    lmc_backend_event ev;
    bool is_fault = true;
    char why2[256];
    lmc_status st = lmc_bridge_stream_event(msg, 7, &ev, &is_fault, why2, sizeof why2);
    if (is_fault) {
        REQUIRE(st == LMC_ERR_FORMAT && printable(why2));
    } else if (st == LMC_OK && ev.done) {
        REQUIRE(!strcmp(type->valuestring, "done") && ev.stop_reason != LMC_STOP_NONE);
        REQUIRE(ev.metrics.prefill_seconds >= 0 && ev.metrics.prompt_tokens >= 0);
    } else if (st == LMC_OK) {
        REQUIRE(!strcmp(type->valuestring, "token") && ev.id >= 0 && ev.text && ev.len == strlen(ev.text));
    } else {
        REQUIRE(!strcmp(type->valuestring, "error") && !strncmp(lmc_last_error(), "bridge error (generate): ", 25));
    }
    cJSON_Delete(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        one_line(p, len);
        p += len + (nl != NULL);
    }
    return 0;
}
