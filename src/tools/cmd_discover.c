/* lmc discover: model folders under a directory. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "lmc/model.h"
#include "tools/cli.h"

int cmd_discover(int argc, char **argv) {
    const char *dir = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: lmc discover DIR [--json]\n");
            return 0;
        } else if (argv[i][0] != '-' && !dir) dir = argv[i];
        else {
            fprintf(stderr, "lmc discover: unknown argument '%s'\nusage: lmc discover DIR [--json]\n", argv[i]);
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "usage: lmc discover DIR [--json]\n");
        return 2;
    }
    lmc_discovered_model *list;
    size_t n;
    if (lmc_discover(dir, &list, &n) != LMC_OK) {
        fprintf(stderr, "lmc discover: %s\n", lmc_last_error());
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        const lmc_discovered_model *d = &list[i];
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "path", d->path);
            cJSON_AddStringToObject(o, "architecture", d->architecture);
            cJSON_AddNumberToObject(o, "quant_bits", d->quant_bits);
            cJSON_AddNumberToObject(o, "quant_group_size", d->quant_group_size);
            cJSON_AddNumberToObject(o, "safetensors_files", d->num_safetensors);
            if (d->error) cJSON_AddStringToObject(o, "error", d->error);
            else cJSON_AddNullToObject(o, "error");
            char *s = cJSON_PrintUnformatted(o);
            printf("%s\n", s ? s : "{}");
            cJSON_free(s);
            cJSON_Delete(o);
        } else if (d->error) {
            printf("%s\terror: %s\n", d->path, d->error);
        } else {
            char q[32] = "bf16/f16/f32";
            if (d->quant_bits) snprintf(q, sizeof q, "%d-bit g%d", d->quant_bits, d->quant_group_size);
            printf("%s\t%s\t%s\t%d file%s\n", d->path, d->architecture, q, d->num_safetensors,
                   d->num_safetensors == 1 ? "" : "s");
        }
    }
    lmc_discovered_free(list, n);
    return 0;
}
