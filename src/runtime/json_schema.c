/* JSON Schema (lmc_generate_options.json_schema) compiled into the nodes the
 * JSON recogniser (json_constraint.c) follows while it masks tokens.
 *
 * The subset is what structured-output requests use: type (one or a list),
 * properties / required / additionalProperties, items / minItems /
 * maxItems, minLength / maxLength, enum / const, anyOf / oneOf whose
 * alternatives start differently (object, array, string, number, boolean,
 * null) or are objects told apart by one required property, a string const
 * of the same name in each (a tagged union: {"name": {"const": "f"}, ...},
 * as a forced call of one of several tools is, or Pydantic's discriminated
 * unions of $refs; the tag is generated first), $ref to "#",
 * "#/$defs/..." or "#/definitions/..." (recursion included). Annotations are ignored (title, description, default,
 * examples, format, ...); every other keyword is refused with an error that
 * names it, so a schema is never silently weakened.
 *
 * What is generated: an object's members in the order of "properties", each
 * at most once, required ones always, optional ones possibly skipped; no
 * other members unless the object lists no properties (then any members).
 * Names and enum values are matched in their compact JSON spelling. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "runtime/json_constraint.h"

enum { MAX_NODES = 4096, MAX_CHOICES = 64 };

typedef struct compiler {
    lmc_json_schema *s;
    const cJSON *root;
    /* $ref targets compiled so far: the referenced JSON object and its node */
    const cJSON **ref_obj;
    uint16_t *ref_node;
    int n_refs, cap_refs;
    int depth; /* schemas inside schemas, bounded so that the recursion is */
} compiler;

static lmc_status fail(const char *path, const char *msg, const char *what) {
    return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "json_schema at %s: %s%s", *path ? path : "(root)", msg, what ? what : "");
}

static lmc_status new_node(compiler *c, uint16_t *out, const char *path) {
    lmc_json_schema *s = c->s;
    if (s->n == MAX_NODES) return fail(path, "the schema is too large (more than 4096 nodes)", NULL);
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 16;
        lmc_json_node *n = realloc(s->nodes, (size_t)cap * sizeof *n);
        if (!n) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
        s->nodes = n;
        s->cap = cap;
    }
    memset(&s->nodes[s->n], 0, sizeof s->nodes[s->n]);
    *out = (uint16_t)s->n++;
    return LMC_OK;
}

/* Adds an entry to node n (an owned copy of text, len bytes); what: the
 * entries' name for the error when there are too many. */
static lmc_status add_text(lmc_json_node *n, const char *text, size_t len, uint16_t child, bool required, const char *path,
                           const char *what) {
    if (len > 65535) return fail(path, "a name or value is longer than 65535 bytes", NULL);
    if (n->n == MAX_CHOICES) return fail(path, "more than 64 ", what);
    char *t = malloc(len + 1);
    char **tx = realloc(n->text, (size_t)(n->n + 1) * sizeof *tx);
    if (tx) n->text = tx;
    uint16_t *ln = tx ? realloc(n->len, (size_t)(n->n + 1) * sizeof *ln) : NULL;
    if (ln) n->len = ln;
    uint16_t *ch = ln ? realloc(n->child, (size_t)(n->n + 1) * sizeof *ch) : NULL;
    if (ch) n->child = ch;
    bool *rq = ch ? realloc(n->required, (size_t)(n->n + 1) * sizeof *rq) : NULL;
    if (rq) n->required = rq;
    if (!t || !rq) {
        free(t);
        return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    }
    memcpy(t, text, len);
    t[len] = 0;
    n->text[n->n] = t;
    n->len[n->n] = (uint16_t)len;
    n->child[n->n] = child;
    n->required[n->n] = required;
    n->n++;
    return LMC_OK;
}

/* The bytes a value of node i can start with. */
static void first_bytes(const lmc_json_schema *s, uint16_t i, bool set[256], int depth) {
    const lmc_json_node *n = &s->nodes[i];
    const char *digits = "-0123456789";
    switch (n->kind) {
    case LMC_JS_ANY:
        for (const char *p = "{[\"tfn-0123456789"; *p; p++) set[(unsigned char)*p] = true;
        break;
    case LMC_JS_OBJECT: set['{'] = true; break;
    case LMC_JS_ARRAY: set['['] = true; break;
    case LMC_JS_STRING: set['"'] = true; break;
    case LMC_JS_NUMBER:
    case LMC_JS_INTEGER:
        for (const char *p = digits; *p; p++) set[(unsigned char)*p] = true;
        break;
    case LMC_JS_BOOLEAN: set['t'] = set['f'] = true; break;
    case LMC_JS_NULL: set['n'] = true; break;
    case LMC_JS_ENUM:
        for (int k = 0; k < n->n; k++) set[(unsigned char)n->text[k][0]] = true;
        break;
    case LMC_JS_UNION:
        if (depth < 32)
            for (int k = 0; k < n->n; k++) first_bytes(s, n->child[k], set, depth + 1);
        break;
    }
}

static lmc_status compile(compiler *c, const cJSON *j, const char *path, uint16_t *out);

static bool annotation(const char *k) {
    static const char *const names[] = {"title",    "description", "default",  "examples",   "format",
                                        "$schema",  "$id",         "$comment", "deprecated", "readOnly",
                                        "writeOnly", "$defs",      "definitions", "contentMediaType", "contentEncoding",
                                        "discriminator"}; /* OpenAPI's (Pydantic writes it): the consts say the same */
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(k, names[i])) return true;
    return !strncmp(k, "x-", 2);
}

static bool known(const char *k) {
    static const char *const names[] = {"type",     "properties", "required", "additionalProperties", "items",
                                        "minItems", "maxItems",   "minLength", "maxLength", "enum",
                                        "const",    "anyOf",      "oneOf",    "$ref"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(k, names[i])) return true;
    return false;
}

static lmc_status count_field(const cJSON *j, const char *key, const char *path, uint32_t *v, bool *have) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, key);
    *have = f != NULL;
    if (!f) return LMC_OK;
    char where[512];
    snprintf(where, sizeof where, "%s/%s", path, key);
    if (!cJSON_IsNumber(f) || f->valuedouble < 0 || f->valuedouble > 65535 || f->valuedouble != (double)(int)f->valuedouble)
        return fail(where, "must be a whole number from 0 to 65535", NULL);
    *v = (uint32_t)f->valuedouble;
    return LMC_OK;
}

/* An enum (or const) of JSON values, in their compact spelling. */
static lmc_status compile_enum(compiler *c, const cJSON *vals, const char *path, uint16_t *out) {
    uint16_t i;
    LMC_CHECK(new_node(c, &i, path));
    c->s->nodes[i].kind = LMC_JS_ENUM;
    int k = 0;
    for (const cJSON *v = vals->child; v; v = v->next, k++) {
        char *t = cJSON_PrintUnformatted(v);
        if (!t) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
        lmc_status st = add_text(&c->s->nodes[i], t, strlen(t), 0, false, path, "values");
        cJSON_free(t);
        LMC_CHECK(st);
    }
    if (k == 0) return fail(path, "'enum' must list at least one value", NULL);
    *out = i;
    return LMC_OK;
}

/* One type ("object", "string", ...) with the keywords that apply to it. */
static lmc_status compile_type(compiler *c, const cJSON *j, const char *type, const char *path, uint16_t *out) {
    char where[512];
    uint16_t i;
    if (!strcmp(type, "object")) {
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(j, "properties");
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(j, "required");
        const cJSON *add = cJSON_GetObjectItemCaseSensitive(j, "additionalProperties");
        if (props && !cJSON_IsObject(props)) return fail(path, "'properties' must be an object", NULL);
        if (req && !cJSON_IsArray(req)) return fail(path, "'required' must be an array of names", NULL);
        if (add && !cJSON_IsFalse(add) && !(cJSON_IsTrue(add) && !(props && props->child)) &&
            !(cJSON_IsObject(add) && !add->child && !(props && props->child)))
            return fail(path, "'additionalProperties' beside listed properties is not supported (only false)", NULL);
        for (const cJSON *r = req ? req->child : NULL; r; r = r->next) {
            if (!cJSON_IsString(r)) return fail(path, "'required' must be an array of names", NULL);
            if (!props || !cJSON_GetObjectItemCaseSensitive(props, r->valuestring))
                return fail(path, "a required property is not in 'properties': ", r->valuestring);
        }
        LMC_CHECK(new_node(c, &i, path));
        c->s->nodes[i].kind = LMC_JS_OBJECT;
        c->s->nodes[i].open = !(props && props->child);
        for (const cJSON *p = props ? props->child : NULL; p; p = p->next) {
            snprintf(where, sizeof where, "%s/properties/%s", path, p->string);
            uint16_t child;
            LMC_CHECK(compile(c, p, where, &child));
            bool required = false;
            for (const cJSON *r = req ? req->child : NULL; r; r = r->next) required |= !strcmp(r->valuestring, p->string);
            /* the name as JSON spells it, without the quotes */
            cJSON *name = cJSON_CreateString(p->string);
            char *t = name ? cJSON_PrintUnformatted(name) : NULL;
            cJSON_Delete(name);
            if (!t) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
            lmc_status st = add_text(&c->s->nodes[i], t + 1, strlen(t) - 2, child, required, path, "properties");
            cJSON_free(t);
            LMC_CHECK(st);
        }
    } else if (!strcmp(type, "array")) {
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "items");
        uint16_t child = 0;
        if (items) {
            snprintf(where, sizeof where, "%s/items", path);
            if (cJSON_IsArray(items)) return fail(where, "a list of schemas (tuple items) is not supported", NULL);
            LMC_CHECK(compile(c, items, where, &child));
        }
        uint32_t mn = 0, mx = 65535;
        bool h1, h2;
        LMC_CHECK(count_field(j, "minItems", path, &mn, &h1));
        LMC_CHECK(count_field(j, "maxItems", path, &mx, &h2));
        if (mn > mx) return fail(path, "minItems is above maxItems", NULL);
        LMC_CHECK(new_node(c, &i, path));
        lmc_json_node *n = &c->s->nodes[i];
        n->kind = LMC_JS_ARRAY;
        n->items = child;
        n->min = mn;
        n->max = mx;
    } else if (!strcmp(type, "string")) {
        uint32_t mn = 0, mx = UINT32_MAX;
        bool h1, h2;
        LMC_CHECK(count_field(j, "minLength", path, &mn, &h1));
        LMC_CHECK(count_field(j, "maxLength", path, &mx, &h2));
        if (!h2) mx = UINT32_MAX;
        if (mn > mx) return fail(path, "minLength is above maxLength", NULL);
        LMC_CHECK(new_node(c, &i, path));
        c->s->nodes[i].kind = LMC_JS_STRING;
        c->s->nodes[i].min = mn;
        c->s->nodes[i].max = mx;
    } else {
        static const struct {
            const char *name;
            uint8_t kind;
        } simple[] = {{"number", LMC_JS_NUMBER}, {"integer", LMC_JS_INTEGER}, {"boolean", LMC_JS_BOOLEAN}, {"null", LMC_JS_NULL}};
        size_t k = 0;
        while (k < 4 && strcmp(type, simple[k].name)) k++;
        if (k == 4) return fail(path, "unknown type ", type);
        LMC_CHECK(new_node(c, &i, path));
        c->s->nodes[i].kind = simple[k].kind;
    }
    *out = i;
    return LMC_OK;
}

/* A union of alternatives that must start with different bytes, so the
 * first byte of a value picks one. Nested unions are flattened. */
static lmc_status make_union(compiler *c, const uint16_t *alts, int n, const char *path, uint16_t *out) {
    if (n == 1) {
        *out = alts[0];
        return LMC_OK;
    }
    uint16_t i;
    LMC_CHECK(new_node(c, &i, path));
    c->s->nodes[i].kind = LMC_JS_UNION;
    bool seen[256] = {false};
    for (int k = 0; k < n; k++) {
        const lmc_json_node *a = &c->s->nodes[alts[k]];
        int m = a->kind == LMC_JS_UNION ? a->n : 1;
        for (int q = 0; q < m; q++) {
            uint16_t alt = a->kind == LMC_JS_UNION ? a->child[q] : alts[k];
            bool set[256] = {false};
            first_bytes(c->s, alt, set, 0);
            for (int b = 0; b < 256; b++)
                if (set[b] && seen[b])
                    return fail(path, "the alternatives of anyOf / oneOf / a type list must be of different JSON types "
                                      "(or objects told apart by a required property, a string const of one name, different in each)", NULL);
            for (int b = 0; b < 256; b++) seen[b] |= set[b];
            LMC_CHECK(add_text(&c->s->nodes[i], "", 0, alt, false, path, "alternatives"));
        }
    }
    *out = i;
    return LMC_OK;
}

/* The node a $ref placeholder forwards to (itself when it is not one, or
 * when the definition is still being compiled). */
static uint16_t forwarded(const lmc_json_schema *s, uint16_t i) {
    for (int hops = 0; hops < 64 && s->nodes[i].kind == LMC_JS_UNION && s->nodes[i].n == 1; hops++) i = s->nodes[i].child[0];
    return i;
}

/* Index of the property of object node o named like property `k` of node
 * t, or -1. */
static int find_property(const lmc_json_node *o, const lmc_json_node *t, int k) {
    for (int q = 0; q < o->n; q++)
        if (o->len[q] == t->len[k] && !memcmp(o->text[q], t->text[k], t->len[k])) return q;
    return -1;
}

/* Whether property q of object o can tell alternatives apart: required, a
 * string const. */
static bool tag_property(const lmc_json_schema *s, const lmc_json_node *o, int q) {
    if (q < 0 || !o->required[q]) return false;
    const lmc_json_node *e = &s->nodes[forwarded(s, o->child[q])];
    return e->kind == LMC_JS_ENUM && e->n == 1 && e->text[0][0] == '"';
}

/* Alternatives (after $ref forwards) that are all objects with one property
 * of the same name that is required and a different string const in each
 * (Pydantic's discriminated unions, a forced call of one of several tools):
 * a tagged union (see lmc_json_node.variants) in *out, *made = true. The
 * tag is generated first: an alternative that lists it later is used as a
 * copy with that property moved to the front. *made = false (nothing
 * changed) when the alternatives are not such objects. */
static lmc_status make_tagged(compiler *c, const uint16_t *given, int n, const char *path, uint16_t *out, bool *made) {
    *made = false;
    uint16_t alts[MAX_CHOICES];
    int pos[MAX_CHOICES];
    for (int k = 0; k < n; k++) {
        alts[k] = forwarded(c->s, given[k]);
        const lmc_json_node *a = &c->s->nodes[alts[k]];
        if (a->kind != LMC_JS_OBJECT || a->open || a->variants || !a->n) return LMC_OK;
    }
    /* the tag: the first property of the first alternative that qualifies in all, with all values different */
    const lmc_json_node *a0 = &c->s->nodes[alts[0]];
    bool found = false;
    for (int k = 0; k < a0->n && !found; k++) {
        found = true;
        for (int q = 0; q < n && found; q++) {
            const lmc_json_node *a = &c->s->nodes[alts[q]];
            pos[q] = find_property(a, a0, k);
            found = tag_property(c->s, a, pos[q]);
            const lmc_json_node *e = found ? &c->s->nodes[forwarded(c->s, a->child[pos[q]])] : NULL;
            for (int r = 0; found && r < q; r++) {
                const lmc_json_node *o = &c->s->nodes[forwarded(c->s, c->s->nodes[alts[r]].child[pos[r]])];
                found = o->len[0] != e->len[0] || memcmp(o->text[0], e->text[0], e->len[0]);
            }
        }
    }
    if (!found) return LMC_OK;
    /* alternatives with the tag elsewhere: a copy with it first (the original may be used on its own too) */
    for (int k = 0; k < n; k++) {
        if (pos[k] == 0) continue;
        uint16_t cp;
        LMC_CHECK(new_node(c, &cp, path));
        c->s->nodes[cp].kind = LMC_JS_OBJECT;
        int m = c->s->nodes[alts[k]].n;
        for (int q = -1; q < m; q++) {
            int from = q < 0 ? pos[k] : q;
            if (q == pos[k]) continue;
            const lmc_json_node *a = &c->s->nodes[alts[k]];
            LMC_CHECK(add_text(&c->s->nodes[cp], a->text[from], a->len[from], a->child[from], a->required[from], path,
                               "properties"));
        }
        alts[k] = cp;
    }
    uint16_t tag, i;
    LMC_CHECK(new_node(c, &tag, path));
    c->s->nodes[tag].kind = LMC_JS_ENUM;
    for (int k = 0; k < n; k++) {
        const lmc_json_node *e = &c->s->nodes[forwarded(c->s, c->s->nodes[alts[k]].child[0])];
        LMC_CHECK(add_text(&c->s->nodes[tag], e->text[0], e->len[0], 0, false, path, "alternatives"));
    }
    LMC_CHECK(new_node(c, &i, path));
    lmc_json_node *o = &c->s->nodes[i];
    o->kind = LMC_JS_OBJECT;
    LMC_CHECK(add_text(o, c->s->nodes[alts[0]].text[0], c->s->nodes[alts[0]].len[0], tag, true, path, "properties"));
    if (!(o->variants = malloc((size_t)n * sizeof *o->variants))) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(o->variants, alts, (size_t)n * sizeof *alts);
    *out = i;
    *made = true;
    return LMC_OK;
}

static lmc_status resolve_ref(compiler *c, const char *ref, const char *path, uint16_t *out) {
    const cJSON *t = NULL;
    if (!strcmp(ref, "#")) t = c->root;
    else if (!strncmp(ref, "#/$defs/", 8)) t = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c->root, "$defs"), ref + 8);
    else if (!strncmp(ref, "#/definitions/", 14))
        t = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c->root, "definitions"), ref + 14);
    else return fail(path, "only local references (#, #/$defs/..., #/definitions/...) are supported: ", ref);
    if (!t) return fail(path, "no such definition: ", ref);
    for (int k = 0; k < c->n_refs; k++)
        if (c->ref_obj[k] == t) {
            *out = c->ref_node[k];
            return LMC_OK;
        }
    /* A placeholder first, so that a definition can refer to itself: it
     * becomes a one-way union (a plain forward) to the compiled node. */
    uint16_t slot;
    LMC_CHECK(new_node(c, &slot, path));
    c->s->nodes[slot].kind = LMC_JS_UNION;
    if (c->n_refs == c->cap_refs) {
        int cap = c->cap_refs ? c->cap_refs * 2 : 8;
        const cJSON **o = realloc(c->ref_obj, (size_t)cap * sizeof *o);
        if (o) c->ref_obj = o;
        uint16_t *nd = o ? realloc(c->ref_node, (size_t)cap * sizeof *nd) : NULL;
        if (!nd) return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
        c->ref_node = nd;
        c->cap_refs = cap;
    }
    c->ref_obj[c->n_refs] = t;
    c->ref_node[c->n_refs++] = slot;
    uint16_t target;
    LMC_CHECK(compile(c, t, ref + 1, &target));
    if (target == slot) return fail(path, "a definition that is only a reference to itself: ", ref);
    LMC_CHECK(add_text(&c->s->nodes[slot], "", 0, target, false, path, "alternatives"));
    *out = slot;
    return LMC_OK;
}

static lmc_status compile_schema(compiler *c, const cJSON *j, const char *path, uint16_t *out) {
    if (cJSON_IsTrue(j) || (cJSON_IsObject(j) && !j->child)) {
        *out = 0; /* any value */
        return LMC_OK;
    }
    if (!cJSON_IsObject(j)) return fail(path, "a schema must be an object or true", NULL);
    bool any_keyword = false;
    for (const cJSON *k = j->child; k; k = k->next) {
        if (annotation(k->string)) continue;
        if (!known(k->string)) return fail(path, "unsupported keyword ", k->string);
        any_keyword = true;
    }
    if (!any_keyword) {
        *out = 0;
        return LMC_OK;
    }
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(j, "$ref");
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(j, "anyOf");
    if (!any) any = cJSON_GetObjectItemCaseSensitive(j, "oneOf");
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(j, "enum"), *cn = cJSON_GetObjectItemCaseSensitive(j, "const");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    int forms = (ref != NULL) + (any != NULL) + (en != NULL || cn != NULL);
    if (forms > 1 || (forms == 1 && type && !en && !cn))
        return fail(path, "$ref, anyOf / oneOf, enum / const and type cannot be combined here", NULL);
    if (cJSON_GetObjectItemCaseSensitive(j, "anyOf") && cJSON_GetObjectItemCaseSensitive(j, "oneOf"))
        return fail(path, "anyOf and oneOf together are not supported", NULL);
    if (ref) {
        if (!cJSON_IsString(ref)) return fail(path, "'$ref' must be a string", NULL);
        return resolve_ref(c, ref->valuestring, path, out);
    }
    if (en || cn) {
        if (en && cn) return fail(path, "enum and const together are not supported", NULL);
        if (en && !cJSON_IsArray(en)) return fail(path, "'enum' must be an array", NULL);
        if (en) return compile_enum(c, en, path, out);
        cJSON *one = cJSON_CreateArray();
        cJSON *dup = one ? cJSON_Duplicate(cn, true) : NULL;
        if (!dup) {
            cJSON_Delete(one);
            return lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
        }
        cJSON_AddItemToArray(one, dup);
        lmc_status st = compile_enum(c, one, path, out);
        cJSON_Delete(one);
        return st;
    }
    uint16_t alts[MAX_CHOICES];
    int n = 0;
    char where[512];
    if (any) {
        if (!cJSON_IsArray(any) || !any->child) return fail(path, "anyOf / oneOf must be a non-empty array", NULL);
        for (const cJSON *a = any->child; a; a = a->next, n++) {
            if (n == MAX_CHOICES) return fail(path, "too many alternatives", NULL);
            snprintf(where, sizeof where, "%s/anyOf/%d", path, n);
            LMC_CHECK(compile(c, a, where, &alts[n]));
            if (alts[n] == 0) return fail(where, "an alternative that accepts any value", NULL);
        }
        bool tagged = false;
        if (n > 1) LMC_CHECK(make_tagged(c, alts, n, path, out, &tagged));
        return tagged ? LMC_OK : make_union(c, alts, n, path, out);
    }
    if (!type) {
        /* no type: what the keywords describe */
        const char *t = cJSON_GetObjectItemCaseSensitive(j, "properties") ? "object"
                        : cJSON_GetObjectItemCaseSensitive(j, "items")  ? "array"
                                                                        : NULL;
        if (!t) return fail(path, "a schema without 'type' whose keywords need one", NULL);
        return compile_type(c, j, t, path, out);
    }
    if (cJSON_IsString(type)) return compile_type(c, j, type->valuestring, path, out);
    if (!cJSON_IsArray(type) || !type->child) return fail(path, "'type' must be a string or an array of strings", NULL);
    for (const cJSON *t = type->child; t; t = t->next, n++) {
        if (!cJSON_IsString(t)) return fail(path, "'type' must be a string or an array of strings", NULL);
        if (n == 8) return fail(path, "too many types", NULL);
        LMC_CHECK(compile_type(c, j, t->valuestring, path, &alts[n]));
    }
    return make_union(c, alts, n, path, out);
}

static lmc_status compile(compiler *c, const cJSON *j, const char *path, uint16_t *out) {
    if (c->depth == 64) return fail(path, "the schema nests too deeply (64 levels)", NULL);
    c->depth++;
    lmc_status st = compile_schema(c, j, path, out);
    c->depth--;
    return st;
}

void lmc_json_schema_free(lmc_json_schema *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        for (int k = 0; k < s->nodes[i].n; k++) free(s->nodes[i].text[k]);
        free(s->nodes[i].text);
        free(s->nodes[i].len);
        free(s->nodes[i].child);
        free(s->nodes[i].required);
        free(s->nodes[i].variants);
    }
    free(s->nodes);
    free(s);
}

lmc_status lmc_json_schema_compile(const char *text, lmc_json_schema **out) {
    *out = NULL;
    if (!text) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "json_schema: NULL");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, true);
    if (!root)
        return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "json_schema: not valid JSON (at byte %zu)",
                             end ? (size_t)(end - text) : (size_t)0);
    compiler c = {.root = root};
    c.s = calloc(1, sizeof *c.s);
    lmc_status st = c.s ? LMC_OK : lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "out of memory");
    uint16_t any = 0;
    if (st == LMC_OK) st = new_node(&c, &any, ""); /* node 0: any value */
    if (st == LMC_OK) st = compile(&c, root, "", &c.s->root);
    for (int i = 0; st == LMC_OK && i < c.s->n; i++) {
        bool set[256] = {false};
        first_bytes(c.s, (uint16_t)i, set, 0);
        for (int b = 0; b < 256; b++)
            if (set[b]) c.s->nodes[i].first[b >> 6] |= 1ull << (b & 63);
    }
    if (st == LMC_OK) {
        bool set[256] = {false};
        first_bytes(c.s, c.s->root, set, 0);
        for (int b = 0; b < 256; b++)
            if (set[b] && b != '{' && b != '[') {
                st = lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "json_schema: the root must be an object or an array schema");
                break;
            }
    }
    cJSON_Delete(root);
    free(c.ref_obj);
    free(c.ref_node);
    if (st != LMC_OK) {
        lmc_json_schema_free(c.s);
        return st;
    }
    *out = c.s;
    return LMC_OK;
}
