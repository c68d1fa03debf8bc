/* JSON Schema in generation (lmc_generate_options.json_schema): the
 * compiler's errors name the place and the keyword; tables of documents
 * each schema must take (every proper prefix open, the whole done) and
 * must refuse; random mutations of valid documents, where whatever the
 * recogniser takes whole is checked by an independent validator written
 * here from the JSON Schema rules; and sampled replies of a tiny Qwen3 model
 * (real tokenizer), stream and batch alike, that the validator accepts. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "lmc/lmc.h"
#include "runtime/json_constraint.h"
#include "runtime/model_internal.h"
#include "model_fixture.h"
#include "test_util.h"

static lmc_json_schema *compile_ok(const char *text) {
    lmc_json_schema *s = NULL;
    lmc_status st = lmc_json_schema_compile(text, &s);
    CHECKF(st == LMC_OK, "compile %s: %s", text, lmc_last_error());
    return s;
}

/* Whether the recogniser takes text whole (*done) or as a prefix. */
static bool accepts(const lmc_json_schema *schema, const char *text, size_t n, bool *done) {
    lmc_json_state s;
    lmc_json_init(&s, schema);
    for (size_t i = 0; i < n; i++)
        if (!lmc_json_step(&s, (unsigned char)text[i])) return false;
    *done = lmc_json_done(&s);
    return true;
}

/* --- an independent validator of the subset (JSON Schema semantics) ------- */

static const cJSON *resolve(const cJSON *root, const cJSON *sch) {
    for (int hops = 0; hops < 32; hops++) {
        const cJSON *ref = cJSON_GetObjectItemCaseSensitive(sch, "$ref");
        if (!cJSON_IsString(ref)) return sch;
        const char *r = ref->valuestring;
        if (!strcmp(r, "#")) sch = root;
        else if (!strncmp(r, "#/$defs/", 8)) sch = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "$defs"), r + 8);
        else sch = NULL;
        if (!sch) return NULL;
    }
    return NULL;
}

static bool type_is(const cJSON *v, const char *t) {
    if (!strcmp(t, "object")) return cJSON_IsObject(v);
    if (!strcmp(t, "array")) return cJSON_IsArray(v);
    if (!strcmp(t, "string")) return cJSON_IsString(v);
    if (!strcmp(t, "number")) return cJSON_IsNumber(v);
    if (!strcmp(t, "integer")) return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble);
    if (!strcmp(t, "boolean")) return cJSON_IsBool(v);
    if (!strcmp(t, "null")) return cJSON_IsNull(v);
    return false;
}

static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static bool valid(const cJSON *root, const cJSON *sch, const cJSON *v) {
    sch = resolve(root, sch);
    if (!sch) return false;
    if (cJSON_IsTrue(sch)) return true;
    const cJSON *k;
    if ((k = cJSON_GetObjectItemCaseSensitive(sch, "anyOf")) || (k = cJSON_GetObjectItemCaseSensitive(sch, "oneOf"))) {
        int hits = 0;
        for (const cJSON *a = k->child; a; a = a->next) hits += valid(root, a, v);
        return hits >= 1;
    }
    if ((k = cJSON_GetObjectItemCaseSensitive(sch, "enum"))) {
        for (const cJSON *e = k->child; e; e = e->next)
            if (cJSON_Compare(e, v, true)) return true;
        return false;
    }
    if ((k = cJSON_GetObjectItemCaseSensitive(sch, "const"))) return cJSON_Compare(k, v, true);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(sch, "type");
    if (cJSON_IsString(type) && !type_is(v, type->valuestring)) return false;
    if (cJSON_IsArray(type)) {
        bool any = false;
        for (const cJSON *t = type->child; t; t = t->next) any |= type_is(v, t->valuestring);
        if (!any) return false;
    }
    if (cJSON_IsString(v)) {
        size_t n = utf8_chars(v->valuestring);
        if ((k = cJSON_GetObjectItemCaseSensitive(sch, "minLength")) && n < (size_t)k->valuedouble) return false;
        if ((k = cJSON_GetObjectItemCaseSensitive(sch, "maxLength")) && n > (size_t)k->valuedouble) return false;
    }
    if (cJSON_IsArray(v)) {
        int n = cJSON_GetArraySize(v);
        if ((k = cJSON_GetObjectItemCaseSensitive(sch, "minItems")) && n < (int)k->valuedouble) return false;
        if ((k = cJSON_GetObjectItemCaseSensitive(sch, "maxItems")) && n > (int)k->valuedouble) return false;
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(sch, "items");
        for (const cJSON *e = v->child; items && e; e = e->next)
            if (!valid(root, items, e)) return false;
    }
    if (cJSON_IsObject(v)) {
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(sch, "properties");
        const cJSON *add = cJSON_GetObjectItemCaseSensitive(sch, "additionalProperties");
        for (const cJSON *r = cJSON_GetObjectItemCaseSensitive(sch, "required") ? cJSON_GetObjectItemCaseSensitive(sch, "required")->child : NULL; r; r = r->next)
            if (!cJSON_GetObjectItemCaseSensitive(v, r->valuestring)) return false;
        for (const cJSON *m = v->child; m; m = m->next) {
            const cJSON *p = props ? cJSON_GetObjectItemCaseSensitive(props, m->string) : NULL;
            if (p && !valid(root, p, m)) return false;
            if (!p && cJSON_IsFalse(add)) return false;
            for (const cJSON *o = m->next; o; o = o->next) /* duplicate names: refused */
                if (!strcmp(o->string, m->string)) return false;
        }
    }
    return true;
}

/* --- compiler errors ----------------------------------------------------------------- */

static void test_compile_errors(void) {
    static const struct {
        const char *schema, *expect;
    } bad[] = {
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"pattern\":\"x\"}}}", "/properties/a: unsupported keyword pattern"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":0}}}", "unsupported keyword minimum"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"str\"}}}", "unknown type str"},
        {"{\"type\":\"object\",\"properties\":{\"a\":true},\"required\":[\"b\"]}", "required property is not in 'properties': b"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}}}", "different JSON types"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"anyOf\":[{\"enum\":[\"x\"]},{\"type\":\"string\"}]}}}", "different JSON types"},
        /* objects are told apart only by a property of one name, required, a string const, all different */
        {"{\"anyOf\":[{\"properties\":{\"t\":{\"const\":\"a\"}},\"required\":[\"t\"]},{\"properties\":{\"t\":{\"const\":\"a\"}},"
         "\"required\":[\"t\"]}]}", "different JSON types"},
        {"{\"anyOf\":[{\"properties\":{\"t\":{\"const\":\"a\"}},\"required\":[\"t\"]},{\"properties\":{\"u\":{\"const\":\"b\"}},"
         "\"required\":[\"u\"]}]}", "different JSON types"},
        {"{\"anyOf\":[{\"properties\":{\"t\":{\"const\":\"a\"},\"u\":{\"const\":\"x\"}},\"required\":[\"t\",\"u\"]},"
         "{\"properties\":{\"u\":{\"const\":\"x\"},\"t\":{\"const\":\"a\"}},\"required\":[\"u\",\"t\"]}]}", "different JSON types"},
        {"{\"anyOf\":[{\"properties\":{\"t\":{\"const\":\"a\"}}},{\"properties\":{\"t\":{\"const\":\"b\"}}}]}", "different JSON types"},
        {"{\"anyOf\":[{\"properties\":{\"t\":{\"const\":1}},\"required\":[\"t\"]},{\"properties\":{\"t\":{\"const\":2}},"
         "\"required\":[\"t\"]}]}", "different JSON types"},
        {"{\"anyOf\":[{\"properties\":{\"t\":{\"enum\":[\"a\",\"c\"]}},\"required\":[\"t\"]},{\"properties\":{\"t\":{\"const\":\"b\"}},"
         "\"required\":[\"t\"]}]}", "different JSON types"},
        {"{\"type\":\"string\"}", "root must be an object or an array"},
        {"{\"anyOf\":[{\"type\":\"object\"},{\"type\":\"null\"}]}", "root must be an object or an array"},
        {"{}", "root must be an object or an array"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/nope\"}}}", "no such definition: #/$defs/nope"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"http://x/y\"}}}", "only local references"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}},\"additionalProperties\":true}", "additionalProperties"},
        {"{\"type\":\"array\",\"items\":[{\"type\":\"string\"}]}", "/items: a list of schemas"},
        {"{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", "minItems is above maxItems"},
        {"{\"type\":\"array\",\"maxItems\":-1}", "/maxItems: must be a whole number"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"enum\":[]}}}", "at least one value"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"enum\":[\"x\"],\"anyOf\":[]}}}", "cannot be combined"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"allOf\":[]}}}", "unsupported keyword allOf"},
        {"{\"type\":\"object\",\"properties\":{\"a\":5}}", "/properties/a: a schema must be an object or true"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"maxLength\":3}}}", "without 'type'"},
        {"{\"type\":\"object\"", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        lmc_json_schema *s = NULL;
        lmc_status st = lmc_json_schema_compile(bad[i].schema, &s);
        CHECKF(st == LMC_ERR_INVALID_ARGUMENT && !s && strstr(lmc_last_error(), bad[i].expect), "%s: %s (wanted '%s')",
               bad[i].schema, st == LMC_OK ? "compiled" : lmc_last_error(), bad[i].expect);
        lmc_json_schema_free(s);
    }
    /* at most 64 enum values and 64 properties */
    char many[4096] = "{\"type\":\"object\",\"properties\":{\"e\":{\"enum\":[0";
    for (int i = 1; i < 65; i++) snprintf(many + strlen(many), sizeof many - strlen(many), ",%d", i);
    strcat(many, "]}}}");
    lmc_json_schema *ms = NULL;
    CHECK(lmc_json_schema_compile(many, &ms) == LMC_ERR_INVALID_ARGUMENT && !ms &&
          strstr(lmc_last_error(), "/properties/e: more than 64 values"));
    strcpy(many, "{\"type\":\"object\",\"properties\":{");
    for (int i = 0; i < 65; i++) snprintf(many + strlen(many), sizeof many - strlen(many), "%s\"p%d\":true", i ? "," : "", i);
    strcat(many, "}}");
    CHECK(lmc_json_schema_compile(many, &ms) == LMC_ERR_INVALID_ARGUMENT && !ms && strstr(lmc_last_error(), "more than 64 properties"));
    /* nesting is bounded (the compiler recurses) */
    char deep[2048] = "";
    for (int i = 0; i < 70; i++) strcat(deep, "{\"type\":\"array\",\"items\":");
    strcat(deep, "true");
    for (int i = 0; i < 70; i++) strcat(deep, "}");
    lmc_json_schema *ds = NULL;
    CHECK(lmc_json_schema_compile(deep, &ds) == LMC_ERR_INVALID_ARGUMENT && !ds && strstr(lmc_last_error(), "too deeply"));
    /* the same check where generation starts */
    lmc_generate_options o = lmc_generate_options_default();
    o.json_schema = bad[0].schema;
    CHECK(lmc_generate_check_options(&o) == LMC_ERR_INVALID_ARGUMENT && strstr(lmc_last_error(), "pattern"));
}

/* --- documents each schema takes and refuses ----------------------------------------- */

static const struct {
    const char *schema;
    const char *good[6];
    const char *bad[10];
} cases[] = {
    {"{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":3},"
     "\"age\":{\"type\":\"integer\"},\"note\":{\"type\":\"string\"}},\"required\":[\"name\",\"age\"],\"title\":\"T\"}",
     {"{\"name\":\"ab\",\"age\":3}", "{ \"name\" : \"\\u00e9x\" , \"age\" : -10 , \"note\" : \"\" }", "{\"name\":\"\xc3\xa9t\xc3\xa9\",\"age\":0}",
      "{\"name\":\"\\ud83d\\ude00\",\"age\":7}"},
     {"{\"age\":3,\"name\":\"ab\"}", "{\"name\":\"\",\"age\":3}", "{\"name\":\"abcd\",\"age\":3}", "{\"name\":\"ab\",\"age\":3.5}",
      "{\"name\":\"ab\",\"age\":1e3}", "{\"name\":\"ab\"}", "{\"name\":\"ab\",\"age\":3,\"x\":1}", "{\"name\":\"ab\",\"age\":3,\"age\":4}",
      "{\"name\":1,\"age\":3}", "{\"name\":\"caf\xc3\xa9\",\"age\":0}"}},
    {"{\"type\":\"array\",\"items\":{\"enum\":[\"red\",\"green\",1,12,1.5,true,null,{\"a\":[1]}]},\"minItems\":1,\"maxItems\":3}",
     {"[\"red\"]", "[1, 12, 1.5]", "[true,null,{\"a\":[1]}]", "[12 ,\"green\"]"},
     {"[]", "[\"re\"]", "[\"blue\"]", "[2]", "[1.2]", "[1,1,1,1]", "[false]", "[{\"a\":[2]}]", "[{\"a\": [1]}]", "[\"red\"x]"}},
    {"{\"type\":\"object\",\"properties\":{\"v\":{\"type\":[\"number\",\"null\"]},\"w\":{\"anyOf\":[{\"type\":\"boolean\"},"
     "{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":1}}]}},\"required\":[\"v\",\"w\"],\"additionalProperties\":false}",
     {"{\"v\":null,\"w\":true}", "{\"v\":-0.5e-3,\"w\":[\"a\",\"\"]}", "{\"v\":10,\"w\":[]}"},
     {"{\"v\":\"1\",\"w\":true}", "{\"v\":null,\"w\":[\"ab\"]}", "{\"v\":null,\"w\":1}", "{\"v\":null}", "{\"w\":true,\"v\":null}"}},
    {"{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"kids\":{\"type\":\"array\","
     "\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"id\"]}},\"$ref\":\"#/$defs/node\"}",
     {"{\"id\":1}", "{\"id\":1,\"kids\":[{\"id\":2},{\"id\":3,\"kids\":[{\"id\":4,\"kids\":[]}]}]}"},
     {"{\"kids\":[]}", "{\"id\":1,\"kids\":[{\"kids\":[]}]}", "{\"id\":1,\"kids\":[1]}"}},
    {"{\"type\":\"object\",\"properties\":{\"meta\":{\"type\":\"object\"},\"any\":{},\"c\":{\"const\":\"x\\\"y\"},"
     "\"list\":{\"type\":\"array\"}},\"required\":[\"meta\",\"any\",\"c\"]}",
     {"{\"meta\":{\"k\":[1,{\"z\":null}]},\"any\":[true],\"c\":\"x\\\"y\"}", "{\"meta\":{},\"any\":\"s\",\"c\":\"x\\\"y\",\"list\":[1,\"2\",[]]}"},
     {"{\"meta\":[],\"any\":1,\"c\":\"x\\\"y\"}", "{\"meta\":{},\"any\":1,\"c\":\"xy\"}", "{\"meta\":{},\"c\":\"x\\\"y\"}"}},
    /* a tagged union (a forced call of one of several tools): the first property's value picks the rest */
    {"{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"get\"},\"arguments\":{\"type\":\"object\","
     "\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}},\"required\":[\"name\",\"arguments\"]},"
     "{\"properties\":{\"name\":{\"const\":\"get_all\"},\"arguments\":{\"type\":\"object\",\"properties\":{\"n\":"
     "{\"type\":\"integer\"}},\"required\":[\"n\"]}},\"required\":[\"name\",\"arguments\"],\"additionalProperties\":false},"
     "{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"ping\"},\"opt\":{\"type\":\"boolean\"}},"
     "\"required\":[\"name\"]}]}",
     {"{\"name\":\"get\",\"arguments\":{\"city\":\"x\"}}", "{\"name\":\"get_all\",\"arguments\":{\"n\":3}}", "{\"name\":\"ping\"}",
      "{ \"name\" : \"get_all\" , \"arguments\" : { \"n\" : -1 } }", "{\"name\":\"ping\",\"opt\":true}"},
     {"{\"name\":\"get\",\"arguments\":{\"n\":3}}", "{\"name\":\"get_all\",\"arguments\":{\"city\":\"x\"}}",
      "{\"name\":\"ping\",\"arguments\":{}}", "{\"name\":\"pong\"}", "{\"arguments\":{\"city\":\"x\"},\"name\":\"get\"}",
      "{\"name\":\"get\"}", "{}", "{\"name\":\"ge\",\"arguments\":{\"city\":\"x\"}}", "{\"name\":\"get_all\",\"opt\":true}",
      "{\"name\":\"ping\",\"opt\":true,\"name\":\"get\"}"}},
    /* Pydantic's discriminated union: $refs, the tag not first in one alternative (generated first), a
     * "discriminator" annotation */
    {"{\"$defs\":{\"Cat\":{\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":5},\"pet_type\":{\"const\":\"cat\","
     "\"title\":\"Pet Type\"},\"meows\":{\"type\":\"integer\"}},\"required\":[\"pet_type\",\"meows\"],\"title\":\"Cat\","
     "\"type\":\"object\"},\"Dog\":{\"properties\":{\"pet_type\":{\"const\":\"dog\"},\"barks\":{\"type\":\"number\"}},"
     "\"required\":[\"pet_type\",\"barks\"],\"type\":\"object\"}},\"properties\":{\"pet\":{\"discriminator\":{\"mapping\":"
     "{\"cat\":\"#/$defs/Cat\",\"dog\":\"#/$defs/Dog\"},\"propertyName\":\"pet_type\"},\"oneOf\":[{\"$ref\":\"#/$defs/Cat\"},"
     "{\"$ref\":\"#/$defs/Dog\"}],\"title\":\"Pet\"},\"n\":{\"type\":\"integer\"}},\"required\":[\"pet\",\"n\"],"
     "\"type\":\"object\"}",
     {"{\"pet\":{\"pet_type\":\"cat\",\"meows\":3},\"n\":1}", "{\"pet\":{\"pet_type\":\"cat\",\"name\":\"Tom\",\"meows\":-3},\"n\":1}",
      "{\"pet\":{\"pet_type\":\"dog\",\"barks\":1.5},\"n\":0}"},
     {"{\"pet\":{\"name\":\"Tom\",\"pet_type\":\"cat\",\"meows\":3},\"n\":1}", "{\"pet\":{\"pet_type\":\"dog\",\"meows\":3},\"n\":1}",
      "{\"pet\":{\"pet_type\":\"cat\",\"barks\":1},\"n\":1}", "{\"pet\":{\"pet_type\":\"cow\"},\"n\":1}",
      "{\"pet\":{\"pet_type\":\"cat\"},\"n\":1}", "{\"pet\":{\"pet_type\":\"cat\",\"name\":\"Tommy1\",\"meows\":3},\"n\":1}",
      "{\"pet\":{\"pet_type\":\"dog\",\"barks\":1},\"n\":1.5}"}},
    /* a property shared by every alternative (the same const) is no tag: the next one is, moved first */
    {"{\"anyOf\":[{\"properties\":{\"v\":{\"const\":\"1\"},\"kind\":{\"const\":\"a\"},\"x\":{\"type\":\"integer\"}},"
     "\"required\":[\"v\",\"kind\",\"x\"]},{\"properties\":{\"v\":{\"const\":\"1\"},\"kind\":{\"const\":\"b\"}},"
     "\"required\":[\"v\",\"kind\"]}]}",
     {"{\"kind\":\"a\",\"v\":\"1\",\"x\":2}", "{\"kind\":\"b\",\"v\":\"1\"}"},
     {"{\"v\":\"1\",\"kind\":\"a\",\"x\":2}", "{\"kind\":\"b\",\"v\":\"1\",\"x\":2}", "{\"kind\":\"a\",\"v\":\"2\",\"x\":1}",
      "{\"kind\":\"a\",\"x\":1}"}},
    /* tagged unions as array elements and nested in one another's members */
    {"{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/t\"},\"$defs\":{\"t\":{\"oneOf\":[{\"properties\":{\"k\":{\"const\":\"a\"},"
     "\"v\":{\"type\":\"integer\"}},\"required\":[\"k\",\"v\"]},{\"properties\":{\"k\":{\"const\":\"b\"},\"v\":{\"type\":\"array\","
     "\"items\":{\"$ref\":\"#/$defs/t\"}}},\"required\":[\"k\"]}]}}}",
     {"[{\"k\":\"a\",\"v\":1},{\"k\":\"b\"}]", "[{\"k\":\"b\",\"v\":[{\"k\":\"a\",\"v\":2},{\"k\":\"b\",\"v\":[]}]},{\"k\":\"a\",\"v\":0}]",
      "[]"},
     {"[{\"k\":\"a\"}]", "[{\"k\":\"a\",\"v\":[]}]", "[{\"k\":\"b\",\"v\":1}]", "[{\"k\":\"b\",\"v\":[{\"k\":\"a\",\"v\":[]}]}]",
      "[{\"k\":\"c\"}]", "[{\"v\":1,\"k\":\"a\"}]"}},
    {"{\"type\":\"object\",\"properties\":{\"we\\\"ird\\n\":{\"type\":\"boolean\"},\"\xc3\xa9t\xc3\xa9\":{\"type\":\"null\"}}}",
     {"{\"we\\\"ird\\n\":false,\"\xc3\xa9t\xc3\xa9\":null}", "{}", "{\"\xc3\xa9t\xc3\xa9\":null}"},
     {"{\"we\\\"ird\\u000a\":false}", "{\"weird\":true}", "{\"\\u00e9t\\u00e9\":null}"}},
};

static void test_documents(void) {
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        lmc_json_schema *s = compile_ok(cases[c].schema);
        cJSON *root = cJSON_Parse(cases[c].schema);
        if (!s || !root) continue;
        for (int i = 0; i < 6 && cases[c].good[i]; i++) {
            const char *d = cases[c].good[i];
            size_t n = strlen(d);
            for (size_t k = 0; k < n; k++) {
                bool done = true;
                CHECKF(accepts(s, d, k, &done) && !done, "schema %zu, '%s': prefix of %zu bytes", c, d, k);
            }
            bool done = false;
            CHECKF(accepts(s, d, n, &done) && done, "schema %zu: '%s' not taken whole", c, d);
            cJSON *v = cJSON_Parse(d);
            CHECKF(v && valid(root, root, v), "schema %zu: the validator refuses '%s'", c, d); /* the table itself */
            cJSON_Delete(v);
        }
        for (int i = 0; i < 10 && cases[c].bad[i]; i++) {
            bool done = false;
            const char *d = cases[c].bad[i];
            CHECKF(!(accepts(s, d, strlen(d), &done) && done), "schema %zu: '%s' taken", c, d);
        }
        cJSON_Delete(root);
        lmc_json_schema_free(s);
    }
}

/* Random one- and two-byte changes of the valid documents: what the
 * recogniser takes whole must parse and validate. */
static void test_mutations(void) {
    const char alphabet[] = "{}[]\":,-+.0123456789eEtrufalsnxyz \\a";
    uint64_t r = 99;
    int whole = 0;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        lmc_json_schema *s = compile_ok(cases[c].schema);
        cJSON *root = cJSON_Parse(cases[c].schema);
        for (int i = 0; s && root && i < 6 && cases[c].good[i]; i++)
            for (int it = 0; it < 3000; it++) {
                char buf[256];
                snprintf(buf, sizeof buf, "%s", cases[c].good[i]);
                size_t n = strlen(buf);
                for (int k = 0; k < 1 + it % 2; k++) {
                    r ^= r << 13, r ^= r >> 7, r ^= r << 17;
                    buf[r % n] = alphabet[(r >> 20) % (sizeof alphabet - 1)];
                }
                bool done = false;
                if (accepts(s, buf, n, &done) && done) {
                    whole++;
                    cJSON *v = cJSON_ParseWithOpts(buf, NULL, true);
                    CHECKF(v && valid(root, root, v), "schema %zu: taken but invalid: %s", c, buf);
                    cJSON_Delete(v);
                }
            }
        cJSON_Delete(root);
        lmc_json_schema_free(s);
    }
    CHECK(whole > 500); /* many mutants stay valid: the test saw them */
}

/* --- generation ---------------------------------------------------------------------- */

static const char *GEN_SCHEMA =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":8},\"n\":{\"type\":\"integer\"},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"bc\",7]},\"maxItems\":2},"
    "\"kind\":{\"anyOf\":[{\"type\":\"null\"},{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"}},\"required\":[\"x\"]}]}},"
    "\"required\":[\"name\",\"n\",\"kind\"]}";

static void check_reply(const lmc_json_schema *s, const cJSON *root, const char *text, size_t len, lmc_stop_reason why,
                        const char *where) {
    bool done = false;
    CHECKF(accepts(s, text, len, &done), "%s: not a prefix the schema allows: %s", where, text);
    CHECKF(done == (why == LMC_STOP_EOS), "%s: done %d, stop %s", where, done, lmc_stop_reason_name(why));
    if (why != LMC_STOP_EOS) return;
    cJSON *v = cJSON_ParseWithOpts(text, NULL, true);
    CHECKF(v && valid(root, root, v), "%s: ended but invalid: %s", where, text);
    cJSON_Delete(v);
}

/* The mask (first-byte table, the plain-string shortcut) against trying
 * every token of the real Qwen3 vocabulary byte by byte. */
static void check_mask(lmc_model *m, const lmc_json_schema *schema, const char *prefix) {
    const lmc_token_bytes *tb = lmc_model_token_bytes(m);
    if (!tb) return;
    lmc_json_state s;
    lmc_json_init(&s, schema);
    for (const char *c = prefix; *c; c++) CHECK(lmc_json_step(&s, (unsigned char)*c));
    float *lg = malloc((size_t)tb->vocab * sizeof *lg);
    for (int64_t t = 0; t < tb->vocab; t++) lg[t] = 0;
    int32_t eos = -1;
    lmc_json_mask(&s, tb, &eos, 0, lg);
    int64_t allowed = 0, wrong = 0;
    for (int64_t t = 0; t < tb->vocab; t++) {
        lmc_json_state tr = s;
        bool ok = lmc_json_advance(&tr, tb, (int32_t)t);
        wrong += ok != (lg[t] == 0);
        allowed += ok;
    }
    CHECKF(wrong == 0 && allowed > 0, "mask after '%s' (schema %d): %lld tokens wrong, %lld allowed", prefix, schema != NULL,
           (long long)wrong, (long long)allowed);
    free(lg);
}

/* Literal text around the document (lmc_json_wrap: a forced tool call's tags):
 * every prefix of pre + object + post is taken, whole only at the end, and
 * nothing else is: not another byte in either literal, not a byte after post. */
static void test_wrap(void) {
    lmc_json_schema *sch = compile_ok("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},"
                                      "\"required\":[\"a\"],\"additionalProperties\":false}");
    const char *pre = "<tool_call>\n", *post = "\n</tool_call>";
    const char *full = "<tool_call>\n{\"a\": 12}\n</tool_call>";
    size_t n = strlen(full);
    for (int with_schema = 0; with_schema < 2; with_schema++) {
        for (size_t k = 0; k <= n; k++) {
            lmc_json_state st;
            lmc_json_init(&st, with_schema ? sch : NULL);
            lmc_json_wrap(&st, pre, post);
            bool ok = true;
            for (size_t i = 0; i < k && ok; i++) ok = lmc_json_step(&st, (unsigned char)full[i]);
            CHECKF(ok && lmc_json_done(&st) == (k == n), "prefix of %zu bytes (schema %d)", k, with_schema);
            /* one byte other than the text's next is refused in the literals (and after the end) */
            bool in_literal = k < strlen(pre) || k >= n - strlen(post);
            if (in_literal) {
                lmc_json_state t = st;
                unsigned char other = k < n && full[k] == 'x' ? 'y' : 'x';
                CHECKF(!lmc_json_step(&t, other), "'%c' after %zu bytes", other, k);
            }
        }
        /* the object alone, without its tags, is not a reply; nor are tags around nothing */
        lmc_json_state st;
        lmc_json_init(&st, with_schema ? sch : NULL);
        lmc_json_wrap(&st, pre, post);
        CHECK(!lmc_json_step(&st, '{'));
        lmc_json_init(&st, with_schema ? sch : NULL);
        lmc_json_wrap(&st, pre, post);
        const char *empty = "<tool_call>\n\n";
        bool ok = true;
        for (const char *c = empty; *c && ok; c++) ok = lmc_json_step(&st, (unsigned char)*c);
        CHECK(!ok || !lmc_json_done(&st));
    }
    /* with no literals the state behaves as unwrapped */
    lmc_json_state st;
    lmc_json_init(&st, sch);
    lmc_json_wrap(&st, NULL, NULL);
    bool ok = true;
    for (const char *c = "{\"a\":1}"; *c && ok; c++) ok = lmc_json_step(&st, (unsigned char)*c);
    CHECK(ok && lmc_json_done(&st) && !lmc_json_step(&st, ' '));
    lmc_json_schema_free(sch);
}

static void test_generation(void) {
    lmc_model *m;
    char *dir;
    TINY_MODEL_OR_RETURN(dir, m, "tiny-qwen3", "qwen3");
    lmc_json_schema *s = compile_ok(GEN_SCHEMA);
    cJSON *root = cJSON_Parse(GEN_SCHEMA);
    lmc_json_schema *open_str = compile_ok("{\"type\":\"object\",\"properties\":{\"t\":{\"type\":\"string\"}}}");
    const char *prefixes[] = {"", "{", "{\"name\":\"ab", "{\"name\":\"ab\",\"n\":1", "{\"name\":\"a\\u00", "{\"name\":\"12345678",
                              "{\"name\":\"\xe6\x97", "{\"name\":\"\xf0"};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) {
        check_mask(m, s, prefixes[i]);
        if (i > 0) check_mask(m, NULL, prefixes[i]);
    }
    check_mask(m, open_str, "{\"t\": \"x y");
    check_mask(m, open_str, "{\"t\": \"x \xe6");
    check_mask(m, open_str, "{\"");
    lmc_json_schema_free(open_str);
    int32_t prompt[] = {785, 1251, 304};
    enum { N = 8 };
    lmc_generation g[N];
    int ended = 0;
    for (int k = 0; k < N; k++) {
        lmc_generate_options o = lmc_generate_options_default();
        o.json_schema = GEN_SCHEMA;
        o.sampler.temperature = 1.0f;
        o.sampler.seed = (uint64_t)k;
        o.max_tokens = 400;
        CHECK(lmc_generate_ids(m, prompt, 3, &o, &g[k]) == LMC_OK);
        char where[32];
        snprintf(where, sizeof where, "seed %d", k);
        if (g[k].text) check_reply(s, root, g[k].text, g[k].text_len, g[k].stop_reason, where);
        ended += g[k].stop_reason == LMC_STOP_EOS;
    }
    printf("json_schema: %d of %d sampled replies ended within 400 tokens\n", ended, N);
    CHECK(ended >= N / 2); /* the validator saw whole documents */
    lmc_batch_prompt ps[N];
    for (int k = 0; k < N; k++) ps[k] = (lmc_batch_prompt){.ids = prompt, .n_ids = 3};
    lmc_batch_options bo = lmc_batch_options_default();
    bo.gen.json_schema = GEN_SCHEMA;
    bo.gen.sampler.temperature = 1.0f;
    bo.gen.max_tokens = 400;
    bo.max_batch = 4;
    lmc_batch_result *br = NULL;
    CHECK(lmc_batch_generate(m, ps, N, &bo, &br, NULL) == LMC_OK);
    for (int k = 0; br && k < N; k++) {
        CHECKF(br[k].n_ids == g[k].n_ids && br[k].text && g[k].text && !strcmp(br[k].text, g[k].text),
               "batch row %d differs from the stream", k);
        char where[32];
        snprintf(where, sizeof where, "batch row %d", k);
        if (br[k].text) check_reply(s, root, br[k].text, br[k].text_len, br[k].stop_reason, where);
    }
    /* a bad schema fails the batch call itself */
    bo.gen.json_schema = "{\"type\":\"object\",\"properties\":{\"a\":{\"not\":{}}}}";
    lmc_batch_result *bad = NULL;
    CHECK(lmc_batch_generate(m, ps, 1, &bo, &bad, NULL) == LMC_ERR_INVALID_ARGUMENT && strstr(lmc_last_error(), "not"));
    lmc_batch_results_free(bad, 1);
    lmc_batch_results_free(br, N);
    for (int k = 0; k < N; k++) lmc_generation_clear(&g[k]);
    cJSON_Delete(root);
    lmc_json_schema_free(s);
    lmc_model_free(m);
    model_fixture_cleanup(dir);
}

int main(void) {
    RUN(test_compile_errors);
    RUN(test_documents);
    RUN(test_mutations);
    RUN(test_wrap);
    RUN(test_generation);
    return TEST_REPORT();
}
