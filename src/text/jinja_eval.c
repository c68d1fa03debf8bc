/* Jinja evaluator: walks the AST with Python's value semantics and jinja2's
 * rules for undefined values, scoping (a for-loop iteration is a scope of its
 * own; if-blocks are not), loop variables, filters, tests and the immutable
 * sandbox (list.append and friends are refused). Errors longjmp to
 * jinja_render, which owns all render memory in one arena. */
#include "text/jinja.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/error.h"

enum {
    MAX_EVAL_DEPTH = 400,
    MAX_RANGE = 100000, /* jinja2's sandbox limit for range() */
};

typedef struct scope {
    jdict *vars;
    struct scope *parent;
    bool captured; /* a macro defined here keeps a reference to it */
} scope;

typedef enum fn_kind { FN_GLOBAL, FN_METHOD, FN_MACRO } fn_kind;

struct jfunc {
    fn_kind kind;
    const char *name;
    jv self;            /* METHOD: the receiver */
    const jnode *macro; /* MACRO */
    scope *closure;     /* MACRO: the scope it was defined in */
};

struct jinja_ctx {
    jn_arena garena; /* globals, kept across renders */
    jdict *globals;
    time_t now;
    size_t max_output;
    uint64_t max_steps;
    /* render state */
    jn_arena arena;
    jmp_buf fail;
    jn_buf *out;
    uint64_t steps;
    int depth;
    int loops; /* for-loops enclosing the current statement (within the current macro) */
};

/* Call arguments: positional values, then keyword names and values. */
typedef struct jargs {
    jv *pos;
    size_t npos;
    const char **kwn;
    jv *kwv;
    size_t nkw;
} jargs;

static const char MISSING[] = "missing";
static bool missing(jv x) { return x.t == JV_UNDEF && x.undef == MISSING; }

/* ---- errors ---------------------------------------------------------- */

static _Noreturn void rfail(jinja_ctx *c, const jnode *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static _Noreturn void rfail(jinja_ctx *c, const jnode *at, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (at) lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "template error at line %d: %s", at->line, msg);
    else lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "template error: %s", msg);
    longjmp(c->fail, 1);
}

static _Noreturn void undefined_error(jinja_ctx *c, const jnode *at, jv u) {
    rfail(c, at, "%s", u.undef && u.undef != MISSING ? u.undef : "a value is undefined");
}

static jv undef_fmt(jinja_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static jv undef_fmt(jinja_ctx *c, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return jv_undef(jn_strndup(&c->arena, msg, strlen(msg)));
}

/* jinja2's object_type_repr for messages: "'dict object'", "None". */
static const char *obj_repr(jv x) {
    switch (x.t) {
    case JV_NONE: return "None";
    case JV_DICT: return "'dict object'";
    case JV_LIST: return x.l->tuple ? "'tuple object'" : "'list object'";
    case JV_STR: return "'str object'";
    case JV_INT: return "'int object'";
    case JV_FLOAT: return "'float object'";
    case JV_BOOL: return "'bool object'";
    case JV_NS: return "'jinja2.utils.Namespace object'";
    case JV_LOOP: return "'LoopContext object'";
    default: return "'object'";
    }
}

static void step(jinja_ctx *c, const jnode *at) {
    if (++c->steps > c->max_steps) rfail(c, at, "the template exceeded its work limit (%llu steps)", (unsigned long long)c->max_steps);
}

/* ---- small value helpers ---------------------------------------------- */

static jv str_of(jinja_ctx *c, jv x) {
    if (x.t == JV_STR) return x;
    jn_buf b;
    jn_buf_init(&b, &c->arena);
    jv_write_str(&b, x);
    return jn_buf_value(&b);
}

static jv mkstr(jinja_ctx *c, const char *s, size_t n) { return jv_str(&c->arena, s, n); }

static bool is_intlike(jv x) { return x.t == JV_INT || x.t == JV_BOOL; }
static int64_t as_int(jv x) { return x.t == JV_BOOL ? x.b : x.i; }
static bool is_number(jv x) { return x.t == JV_INT || x.t == JV_BOOL || x.t == JV_FLOAT; }
static double as_float(jv x) { return x.t == JV_FLOAT ? x.f : (double)as_int(x); }

static jv new_tuple(jinja_ctx *c, size_t n) {
    jv t = jv_list(&c->arena, n);
    t.l->tuple = true;
    return t;
}

static jv pair(jinja_ctx *c, jv a, jv b) {
    jv t = new_tuple(c, 2);
    jv_list_push(&c->arena, t.l, a);
    jv_list_push(&c->arena, t.l, b);
    return t;
}

/* Code points of a string as byte offsets: off[i] is where character i starts, off[n] = byte length. */
static size_t *char_offsets(jinja_ctx *c, const jstr *s, size_t *count) {
    size_t n = jn_utf8_len(s->p, s->n);
    size_t *off = jn_alloc(&c->arena, (n + 1) * sizeof *off);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        off[i] = pos;
        jn_utf8_next(s->p, s->n, &pos);
    }
    off[n] = s->n;
    *count = n;
    return off;
}

/* The items a for-loop, join, list() etc. iterate over. */
static jlist *iterate(jinja_ctx *c, const jnode *at, jv x) {
    jv out;
    switch (x.t) {
    case JV_LIST: return x.l;
    case JV_UNDEF: return jv_list(&c->arena, 1).l;
    case JV_DICT:
        out = jv_list(&c->arena, x.d->n);
        for (size_t i = 0; i < x.d->n; i++) jv_list_push(&c->arena, out.l, x.d->k[i]);
        return out.l;
    case JV_STR: {
        size_t n;
        size_t *off = char_offsets(c, x.s, &n);
        out = jv_list(&c->arena, n);
        for (size_t i = 0; i < n; i++) jv_list_push(&c->arena, out.l, mkstr(c, x.s->p + off[i], off[i + 1] - off[i]));
        return out.l;
    }
    default: rfail(c, at, "'%s' object is not iterable", jv_type_name(x));
    }
}

/* ---- comparisons ------------------------------------------------------- */

/* Python's ordering for <, <=, >, >= (numbers, strings, lists and tuples). */
static int cmp_values(jinja_ctx *c, const jnode *at, jv a, jv b, const char *op) {
    if (++c->depth > MAX_EVAL_DEPTH) rfail(c, at, "values nested too deeply to compare");
    int r = 0;
    if (a.t == JV_UNDEF) undefined_error(c, at, a);
    if (b.t == JV_UNDEF) undefined_error(c, at, b);
    if (is_number(a) && is_number(b)) {
        c->depth--;
        if (is_intlike(a) && is_intlike(b)) return (as_int(a) > as_int(b)) - (as_int(a) < as_int(b));
        double x = as_float(a), y = as_float(b);
        return (x > y) - (x < y);
    }
    if (a.t == JV_STR && b.t == JV_STR) {
        c->depth--;
        size_t n = a.s->n < b.s->n ? a.s->n : b.s->n;
        r = memcmp(a.s->p, b.s->p, n);
        if (r) return r < 0 ? -1 : 1;
        return (a.s->n > b.s->n) - (a.s->n < b.s->n);
    }
    if (a.t == JV_LIST && b.t == JV_LIST && a.l->tuple == b.l->tuple) {
        size_t i = 0;
        while (i < a.l->n && i < b.l->n && jv_equal(a.l->v[i], b.l->v[i])) i++;
        if (i < a.l->n && i < b.l->n) r = cmp_values(c, at, a.l->v[i], b.l->v[i], op);
        else r = (a.l->n > b.l->n) - (a.l->n < b.l->n);
        c->depth--;
        return r;
    }
    rfail(c, at, "'%s' not supported between instances of '%s' and '%s'", op, jv_type_name(a), jv_type_name(b));
}

static bool contains(jinja_ctx *c, const jnode *at, jv container, jv item) {
    switch (container.t) {
    case JV_STR:
        if (item.t != JV_STR) rfail(c, at, "'in <string>' requires string as left operand, not %s", jv_type_name(item));
        if (item.s->n == 0) return true;
        return memmem(container.s->p, container.s->n, item.s->p, item.s->n) != NULL;
    case JV_LIST:
        for (size_t i = 0; i < container.l->n; i++)
            if (jv_equal(container.l->v[i], item)) return true;
        return false;
    case JV_DICT: return jv_dict_get(container.d, item) != NULL;
    case JV_UNDEF: return false;
    default: rfail(c, at, "argument of type '%s' is not iterable", jv_type_name(container));
    }
}

/* ---- case mapping and whitespace -------------------------------------- */

typedef int32_t (*cp_map)(int32_t);
static int32_t map_upper(int32_t cp) { return utf8proc_toupper(cp); }
static int32_t map_lower(int32_t cp) { return utf8proc_tolower(cp); }

static bool is_cased(int32_t cp) {
    utf8proc_category_t cat = utf8proc_category(cp);
    return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

static jv map_case(jinja_ctx *c, jv s, cp_map f) {
    jn_buf b;
    jn_buf_init(&b, &c->arena);
    size_t pos = 0;
    while (pos < s.s->n) jn_buf_add_cp(&b, (uint32_t)f(jn_utf8_next(s.s->p, s.s->n, &pos)));
    return jn_buf_value(&b);
}

/* Python str.title() (title true: a cased character after an uncased one is
 * title-cased) and str.capitalize() (false: the first character is); every
 * other character is lowered. */
static jv py_recase(jinja_ctx *c, jv s, bool title) {
    jn_buf b;
    jn_buf_init(&b, &c->arena);
    size_t pos = 0;
    bool start = true;
    while (pos < s.s->n) {
        int32_t cp = jn_utf8_next(s.s->p, s.s->n, &pos);
        jn_buf_add_cp(&b, (uint32_t)(start ? utf8proc_totitle(cp) : utf8proc_tolower(cp)));
        start = title && !is_cased(cp);
    }
    return jn_buf_value(&b);
}

/* jinja2's title filter: words start after whitespace, '-', '(', '{', '[' or '<';
 * their first character is upper-cased and the rest lowered. */
static jv jinja_title(jinja_ctx *c, jv s) {
    jn_buf b;
    jn_buf_init(&b, &c->arena);
    size_t pos = 0;
    bool word_start = true;
    while (pos < s.s->n) {
        int32_t cp = jn_utf8_next(s.s->p, s.s->n, &pos);
        bool sep = jn_is_space(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
        if (sep) {
            jn_buf_add_cp(&b, (uint32_t)cp);
            word_start = true;
        } else {
            jn_buf_add_cp(&b, (uint32_t)(word_start ? utf8proc_toupper(cp) : utf8proc_tolower(cp)));
            word_start = false;
        }
    }
    return jn_buf_value(&b);
}

static bool in_chars(int32_t cp, const jstr *chars) {
    size_t pos = 0;
    while (pos < chars->n)
        if (jn_utf8_next(chars->p, chars->n, &pos) == cp) return true;
    return false;
}

/* str.strip/lstrip/rstrip; chars NULL strips whitespace. */
static jv py_strip(jinja_ctx *c, jv s, const jstr *chars, bool left, bool right) {
    size_t n;
    size_t *off = char_offsets(c, s.s, &n);
    size_t i = 0, j = n;
    while (left && i < j) {
        size_t p = off[i];
        int32_t cp = jn_utf8_next(s.s->p, s.s->n, &p);
        if (chars ? !in_chars(cp, chars) : !jn_is_space(cp)) break;
        i++;
    }
    while (right && j > i) {
        size_t p = off[j - 1];
        int32_t cp = jn_utf8_next(s.s->p, s.s->n, &p);
        if (chars ? !in_chars(cp, chars) : !jn_is_space(cp)) break;
        j--;
    }
    return mkstr(c, s.s->p + off[i], off[j] - off[i]);
}

/* str.split / str.rsplit. */
static jv py_split(jinja_ctx *c, const jnode *at, jv s, jv sep, int64_t maxsplit, bool from_right) {
    jv out = jv_list(&c->arena, 4);
    const char *p = s.s->p;
    size_t n = s.s->n;
    if (sep.t == JV_NONE || sep.t == JV_UNDEF) {
        /* Runs of whitespace separate; empty strings never result. */
        size_t cn;
        size_t *off = char_offsets(c, s.s, &cn);
        bool *sp = jn_alloc(&c->arena, cn + 1);
        for (size_t i = 0; i < cn; i++) {
            size_t q = off[i];
            sp[i] = jn_is_space(jn_utf8_next(p, n, &q));
        }
        jv parts = jv_list(&c->arena, 4);
        int64_t splits = 0;
        if (!from_right) {
            size_t i = 0;
            while (i < cn) {
                while (i < cn && sp[i]) i++;
                if (i == cn) break;
                if (maxsplit >= 0 && splits == maxsplit) {
                    jv_list_push(&c->arena, parts.l, mkstr(c, p + off[i], n - off[i]));
                    break;
                }
                size_t j = i;
                while (j < cn && !sp[j]) j++;
                jv_list_push(&c->arena, parts.l, mkstr(c, p + off[i], off[j] - off[i]));
                splits++;
                i = j;
            }
            return parts;
        }
        size_t j = cn;
        while (j > 0) {
            while (j > 0 && sp[j - 1]) j--;
            if (j == 0) break;
            if (maxsplit >= 0 && splits == maxsplit) {
                jv_list_push(&c->arena, parts.l, mkstr(c, p, off[j]));
                break;
            }
            size_t i = j;
            while (i > 0 && !sp[i - 1]) i--;
            jv_list_push(&c->arena, parts.l, mkstr(c, p + off[i], off[j] - off[i]));
            splits++;
            j = i;
        }
        for (size_t k = parts.l->n; k > 0; k--) jv_list_push(&c->arena, out.l, parts.l->v[k - 1]);
        return out;
    }
    if (sep.t != JV_STR) rfail(c, at, "must be str or None, not %s", jv_type_name(sep));
    if (sep.s->n == 0) rfail(c, at, "empty separator");
    const char *q = sep.s->p;
    size_t m = sep.s->n;
    int64_t splits = 0;
    if (!from_right) {
        size_t start = 0;
        for (;;) {
            const char *hit = maxsplit >= 0 && splits == maxsplit ? NULL : memmem(p + start, n - start, q, m);
            if (!hit) {
                jv_list_push(&c->arena, out.l, mkstr(c, p + start, n - start));
                return out;
            }
            size_t h = (size_t)(hit - p);
            jv_list_push(&c->arena, out.l, mkstr(c, p + start, h - start));
            start = h + m;
            splits++;
        }
    }
    jv parts = jv_list(&c->arena, 4);
    size_t end = n;
    for (;;) {
        size_t h = SIZE_MAX;
        if (!(maxsplit >= 0 && splits == maxsplit))
            for (size_t i = end >= m ? end - m + 1 : 0; i-- > 0;)
                if (memcmp(p + i, q, m) == 0) { h = i; break; }
        if (h == SIZE_MAX) {
            jv_list_push(&c->arena, parts.l, mkstr(c, p, end));
            break;
        }
        jv_list_push(&c->arena, parts.l, mkstr(c, p + h + m, end - h - m));
        end = h;
        splits++;
    }
    for (size_t k = parts.l->n; k > 0; k--) jv_list_push(&c->arena, out.l, parts.l->v[k - 1]);
    return out;
}

static jv py_replace(jinja_ctx *c, jv s, jv old, jv new_, int64_t count) {
    jn_buf b;
    jn_buf_init(&b, &c->arena);
    const char *p = s.s->p;
    size_t n = s.s->n;
    if (old.s->n == 0) {
        /* Python inserts the replacement before every character and at the end. */
        size_t pos = 0;
        int64_t done = 0;
        while (count < 0 || done < count) {
            jn_buf_add(&b, new_.s->p, new_.s->n);
            done++;
            if (pos >= n) break;
            size_t q = pos;
            jn_utf8_next(p, n, &q);
            jn_buf_add(&b, p + pos, q - pos);
            pos = q;
        }
        jn_buf_add(&b, p + pos, n - pos);
        return jn_buf_value(&b);
    }
    size_t pos = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
        const char *hit = memmem(p + pos, n - pos, old.s->p, old.s->n);
        if (!hit) break;
        size_t h = (size_t)(hit - p);
        jn_buf_add(&b, p + pos, h - pos);
        jn_buf_add(&b, new_.s->p, new_.s->n);
        pos = h + old.s->n;
        done++;
    }
    jn_buf_add(&b, p + pos, n - pos);
    return jn_buf_value(&b);
}

/* ---- argument binding --------------------------------------------------- */

/* Places call arguments into out[] by parameter name; absent ones are MISSING. */
static void bind(jinja_ctx *c, const jnode *at, const char *fname, const jargs *a, const char *const *names, size_t nn, jv *out) {
    if (a->npos > nn) rfail(c, at, "%s() takes at most %zu argument%s (%zu given)", fname, nn, nn == 1 ? "" : "s", a->npos);
    for (size_t i = 0; i < nn; i++) out[i] = i < a->npos ? a->pos[i] : jv_undef(MISSING);
    for (size_t k = 0; k < a->nkw; k++) {
        size_t i = 0;
        while (i < nn && strcmp(names[i], a->kwn[k]) != 0) i++;
        if (i == nn) rfail(c, at, "%s() got an unexpected keyword argument '%s'", fname, a->kwn[k]);
        if (!missing(out[i])) rfail(c, at, "%s() got multiple values for argument '%s'", fname, a->kwn[k]);
        out[i] = a->kwv[k];
    }
}

static jv need_str(jinja_ctx *c, const jnode *at, jv x, const char *what) {
    if (x.t == JV_UNDEF) undefined_error(c, at, x);
    if (x.t != JV_STR) rfail(c, at, "%s must be a string, not %s", what, jv_type_name(x));
    return x;
}

static int64_t need_int(jinja_ctx *c, const jnode *at, jv x, const char *what) {
    if (x.t == JV_UNDEF) undefined_error(c, at, x);
    if (!is_intlike(x)) rfail(c, at, "%s must be an integer, not %s", what, jv_type_name(x));
    return as_int(x);
}

/* ---- attribute and item access ----------------------------------------- */

static jv bound_method(jinja_ctx *c, jv self, const char *name) {
    jfunc *f = jn_alloc(&c->arena, sizeof *f);
    f->kind = FN_METHOD;
    f->self = self;
    f->name = name;
    return (jv){.t = JV_FUNC, .fn = f};
}

static const char *const str_methods[] = {
    "strip", "lstrip", "rstrip", "split", "rsplit", "startswith", "endswith", "upper", "lower", "title",
    "capitalize", "replace", "find", "rfind", "count", "join", "format", "isdigit", "isalpha", "isalnum",
    "isspace", "isupper", "islower", "splitlines", NULL};
static const char *const dict_methods[] = {"items", "keys", "values", "get", "copy", NULL};
static const char *const list_methods[] = {"index", "count", NULL};
/* Methods that mutate: the immutable sandbox refuses them. */
static const char *const unsafe_methods[] = {
    "append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear", "update", "setdefault", "popitem", "add",
    "discard", NULL};

static bool in_names(const char *const *names, const char *name) {
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], name)) return true;
    return false;
}

static jv get_attr(jinja_ctx *c, const jnode *at, jv obj, const char *name) {
    if (obj.t == JV_UNDEF) undefined_error(c, at, obj);
    if ((obj.t == JV_LIST || obj.t == JV_DICT) && in_names(unsafe_methods, name))
        return undef_fmt(c, "access to attribute '%s' of '%s' object is unsafe.", name, jv_type_name(obj));
    switch (obj.t) {
    case JV_DICT: {
        if (in_names(dict_methods, name)) return bound_method(c, obj, name);
        jv *v = jv_dict_gets(obj.d, name);
        if (v) return *v;
        break;
    }
    case JV_NS: {
        jv *v = jv_dict_gets(obj.d, name);
        if (v) return *v;
        break;
    }
    case JV_STR:
        if (in_names(str_methods, name)) return bound_method(c, obj, name);
        break;
    case JV_LIST:
        if (in_names(list_methods, name)) return bound_method(c, obj, name);
        break;
    case JV_LOOP: {
        const jloop *l = obj.lp;
        if (!strcmp(name, "index")) return jv_int((int64_t)l->i + 1);
        if (!strcmp(name, "index0")) return jv_int((int64_t)l->i);
        if (!strcmp(name, "revindex")) return jv_int((int64_t)(l->n - l->i));
        if (!strcmp(name, "revindex0")) return jv_int((int64_t)(l->n - l->i - 1));
        if (!strcmp(name, "first")) return jv_bool(l->i == 0);
        if (!strcmp(name, "last")) return jv_bool(l->i + 1 == l->n);
        if (!strcmp(name, "length")) return jv_int((int64_t)l->n);
        if (!strcmp(name, "depth")) return jv_int(1);
        if (!strcmp(name, "depth0")) return jv_int(0);
        if (!strcmp(name, "previtem")) return l->i > 0 ? l->items->v[l->i - 1] : jv_undef("there is no previous item");
        if (!strcmp(name, "nextitem")) return l->i + 1 < l->n ? l->items->v[l->i + 1] : jv_undef("there is no next item");
        if (!strcmp(name, "cycle")) return bound_method(c, obj, name);
        return undef_fmt(c, "'LoopContext object' has no attribute '%s'", name);
    }
    default: break;
    }
    return undef_fmt(c, "%s has no attribute '%s'", obj_repr(obj), name);
}

/* Python's slice index normalisation. */
static void slice_indices(int64_t len, jv start, jv stop, jv stepv, int64_t *s0, int64_t *s1, int64_t *st) {
    int64_t step = stepv.t == JV_NONE ? 1 : as_int(stepv);
    *st = step;
    int64_t lo = step < 0 ? -1 : 0, hi = step < 0 ? len - 1 : len;
    if (start.t == JV_NONE) *s0 = step < 0 ? hi : lo;
    else {
        int64_t v = as_int(start);
        if (v < 0) { v += len; if (v < lo) v = lo; }
        else if (v > hi) v = hi;
        *s0 = v;
    }
    if (stop.t == JV_NONE) *s1 = step < 0 ? lo : hi;
    else {
        int64_t v = as_int(stop);
        if (v < 0) { v += len; if (v < lo) v = lo; }
        else if (v > hi) v = hi;
        *s1 = v;
    }
}

static jv do_slice(jinja_ctx *c, const jnode *at, jv obj, jv start, jv stop, jv stepv) {
    if (obj.t == JV_UNDEF) undefined_error(c, at, obj);
    jv *parts[3] = {&start, &stop, &stepv};
    for (int i = 0; i < 3; i++) {
        if (parts[i]->t == JV_UNDEF) undefined_error(c, at, *parts[i]);
        if (parts[i]->t != JV_NONE && !is_intlike(*parts[i])) rfail(c, at, "slice indices must be integers or None");
    }
    if (stepv.t != JV_NONE && as_int(stepv) == 0) rfail(c, at, "slice step cannot be zero");
    int64_t s0, s1, st;
    if (obj.t == JV_LIST) {
        slice_indices((int64_t)obj.l->n, start, stop, stepv, &s0, &s1, &st);
        jv out = jv_list(&c->arena, 4);
        out.l->tuple = obj.l->tuple;
        for (int64_t i = s0; st > 0 ? i < s1 : i > s1; i += st) jv_list_push(&c->arena, out.l, obj.l->v[i]);
        return out;
    }
    if (obj.t == JV_STR) {
        size_t n;
        size_t *off = char_offsets(c, obj.s, &n);
        slice_indices((int64_t)n, start, stop, stepv, &s0, &s1, &st);
        jn_buf b;
        jn_buf_init(&b, &c->arena);
        for (int64_t i = s0; st > 0 ? i < s1 : i > s1; i += st) jn_buf_add(&b, obj.s->p + off[i], off[i + 1] - off[i]);
        return jn_buf_value(&b);
    }
    return undef_fmt(c, "%s has no attribute slice", obj_repr(obj));
}

static jv get_item(jinja_ctx *c, const jnode *at, jv obj, jv key) {
    if (obj.t == JV_UNDEF) undefined_error(c, at, obj);
    switch (obj.t) {
    case JV_DICT: {
        jv *v = jv_dict_get(obj.d, key);
        if (v) return *v;
        break;
    }
    case JV_LIST:
        if (is_intlike(key)) {
            int64_t i = as_int(key), n = (int64_t)obj.l->n;
            if (i < 0) i += n;
            if (i >= 0 && i < n) return obj.l->v[i];
            jn_buf b;
            jn_buf_init(&b, &c->arena);
            jv_write_repr(&b, key);
            return undef_fmt(c, "%s has no element %s", obj_repr(obj), b.p);
        }
        break;
    case JV_STR:
        if (is_intlike(key)) {
            size_t n;
            size_t *off = char_offsets(c, obj.s, &n);
            int64_t i = as_int(key);
            if (i < 0) i += (int64_t)n;
            if (i >= 0 && i < (int64_t)n) return mkstr(c, obj.s->p + off[i], off[i + 1] - off[i]);
            return undef_fmt(c, "%s has no element %lld", obj_repr(obj), (long long)as_int(key));
        }
        break;
    default: break;
    }
    if (key.t == JV_STR) return get_attr(c, at, obj, key.s->p);
    jn_buf b;
    jn_buf_init(&b, &c->arena);
    jv_write_repr(&b, key);
    return undef_fmt(c, "%s has no element %s", obj_repr(obj), b.p);
}

/* ---- output ------------------------------------------------------------- */

static void emit(jinja_ctx *c, const jnode *at, const char *s, size_t n) {
    if (c->out->n + n > c->max_output) rfail(c, at, "the output exceeds its limit of %zu bytes", c->max_output);
    jn_buf_add(c->out, s, n);
}

static void emit_value(jinja_ctx *c, const jnode *at, jv x) {
    if (x.t == JV_STR) {
        emit(c, at, x.s->p, x.s->n);
        return;
    }
    jv s = str_of(c, x);
    emit(c, at, s.s->p, s.s->n);
}

/* ---- forward declarations ------------------------------------------------ */

static jv eval(jinja_ctx *c, scope *sc, const jnode *n);
static int exec_node(jinja_ctx *c, scope *sc, const jnode *n);
static jv call_value(jinja_ctx *c, const jnode *at, jv fn, const jargs *a);
static jv apply_filter(jinja_ctx *c, scope *sc, const jnode *at, const char *name, jv v, const jargs *a);
static bool apply_test(jinja_ctx *c, const jnode *at, const char *name, jv v, const jargs *a);

/* ---- arithmetic ----------------------------------------------------------- */

static jv format_percent(jinja_ctx *c, const jnode *at, jv fmt, jv args);

static jv arith(jinja_ctx *c, const jnode *at, const char *op, jv a, jv b) {
    if (a.t == JV_UNDEF) undefined_error(c, at, a);
    if (b.t == JV_UNDEF) undefined_error(c, at, b);
    if (is_number(a) && is_number(b)) {
        bool ints = is_intlike(a) && is_intlike(b);
        int64_t x = ints ? as_int(a) : 0, y = ints ? as_int(b) : 0, r;
        double fx = as_float(a), fy = as_float(b);
        switch (op[0]) {
        case '+':
            if (ints) {
                if (__builtin_add_overflow(x, y, &r)) rfail(c, at, "integer overflow");
                return jv_int(r);
            }
            return jv_float(fx + fy);
        case '-':
            if (ints) {
                if (__builtin_sub_overflow(x, y, &r)) rfail(c, at, "integer overflow");
                return jv_int(r);
            }
            return jv_float(fx - fy);
        case '*':
            if (op[1] == '*') {
                if (ints && y >= 0) {
                    if (x == 0 || x == 1) return jv_int(y == 0 ? 1 : x);
                    if (x == -1) return jv_int(y % 2 ? -1 : 1);
                    int64_t acc = 1; /* |x| >= 2 overflows within 63 steps */
                    for (int64_t i = 0; i < y; i++)
                        if (__builtin_mul_overflow(acc, x, &acc)) rfail(c, at, "integer overflow");
                    return jv_int(acc);
                }
                return jv_float(pow(fx, fy));
            }
            if (ints) {
                if (__builtin_mul_overflow(x, y, &r)) rfail(c, at, "integer overflow");
                return jv_int(r);
            }
            return jv_float(fx * fy);
        case '/':
            if (op[1] == '/') {
                if (ints) {
                    if (y == 0) rfail(c, at, "integer division or modulo by zero");
                    if (x == INT64_MIN && y == -1) rfail(c, at, "integer overflow");
                    int64_t q = x / y;
                    if ((x % y != 0) && ((x < 0) != (y < 0))) q--;
                    return jv_int(q);
                }
                if (fy == 0) rfail(c, at, "float floor division by zero");
                return jv_float(floor(fx / fy));
            }
            if (fy == 0) rfail(c, at, "division by zero");
            return jv_float(fx / fy);
        case '%':
            if (ints) {
                if (y == 0) rfail(c, at, "integer division or modulo by zero");
                if (y == -1) return jv_int(0);
                int64_t m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) m += y;
                return jv_int(m);
            }
            if (fy == 0) rfail(c, at, "float modulo");
            {
                double m = fmod(fx, fy);
                if (m != 0 && ((m < 0) != (fy < 0))) m += fy;
                return jv_float(m);
            }
        }
    }
    if (op[0] == '+' && a.t == JV_STR && b.t == JV_STR) {
        jn_buf buf;
        jn_buf_init(&buf, &c->arena);
        jn_buf_add(&buf, a.s->p, a.s->n);
        jn_buf_add(&buf, b.s->p, b.s->n);
        return jn_buf_value(&buf);
    }
    if (op[0] == '+' && a.t == JV_LIST && b.t == JV_LIST && a.l->tuple == b.l->tuple) {
        jv out = jv_list(&c->arena, a.l->n + b.l->n);
        out.l->tuple = a.l->tuple;
        for (size_t i = 0; i < a.l->n; i++) jv_list_push(&c->arena, out.l, a.l->v[i]);
        for (size_t i = 0; i < b.l->n; i++) jv_list_push(&c->arena, out.l, b.l->v[i]);
        return out;
    }
    if (op[0] == '*' && op[1] == 0 && ((is_intlike(a) && (b.t == JV_STR || b.t == JV_LIST)) || (is_intlike(b) && (a.t == JV_STR || a.t == JV_LIST)))) {
        jv seq = is_intlike(a) ? b : a;
        int64_t k = is_intlike(a) ? as_int(a) : as_int(b);
        if (k < 0) k = 0;
        size_t unit = seq.t == JV_STR ? seq.s->n : seq.l->n;
        if (unit && (uint64_t)k > c->max_output / unit) rfail(c, at, "repetition result too large");
        if (seq.t == JV_STR) {
            jn_buf buf;
            jn_buf_init(&buf, &c->arena);
            for (int64_t i = 0; i < k; i++) jn_buf_add(&buf, seq.s->p, seq.s->n);
            return jn_buf_value(&buf);
        }
        jv out = jv_list(&c->arena, unit * (size_t)k + 1);
        out.l->tuple = seq.l->tuple;
        for (int64_t i = 0; i < k; i++)
            for (size_t j = 0; j < unit; j++) jv_list_push(&c->arena, out.l, seq.l->v[j]);
        return out;
    }
    if (op[0] == '%' && a.t == JV_STR) return format_percent(c, at, a, b);
    if (op[0] == '+' && a.t == JV_STR)
        rfail(c, at, "can only concatenate str (not \"%s\") to str", jv_type_name(b));
    rfail(c, at, "unsupported operand type(s) for %s: '%s' and '%s'", op, jv_type_name(a), jv_type_name(b));
}

/* printf-style `"%s" % x`: conversions s, r, d, i, f, x and %%. */
static jv format_percent(jinja_ctx *c, const jnode *at, jv fmt, jv args) {
    jlist single = {.n = 1, .cap = 1, .v = &args};
    const jlist *list = args.t == JV_LIST && args.l->tuple ? args.l : &single;
    size_t next = 0;
    jn_buf b;
    jn_buf_init(&b, &c->arena);
    const char *p = fmt.s->p, *end = p + fmt.s->n;
    while (p < end) {
        if (*p != '%') {
            jn_buf_addc(&b, *p++);
            continue;
        }
        p++;
        char spec[32] = "%";
        size_t k = 1;
        while (p < end && k < sizeof spec - 5 && strchr("-+ #0123456789.", *p)) spec[k++] = *p++;
        if (p >= end) rfail(c, at, "incomplete format");
        char conv = *p++;
        if (conv == '%') {
            jn_buf_addc(&b, '%');
            continue;
        }
        if (next >= list->n) rfail(c, at, "not enough arguments for format string");
        jv x = list->v[next++];
        if (conv == 's' || conv == 'r') {
            jn_buf t;
            jn_buf_init(&t, &c->arena);
            if (conv == 's') jv_write_str(&t, x);
            else jv_write_repr(&t, x);
            spec[k++] = 's';
            spec[k] = 0;
            jn_buf_printf(&b, spec, t.p ? t.p : "");
        } else if (conv == 'd' || conv == 'i' || conv == 'x' || conv == 'X' || conv == 'o') {
            if (!is_number(x)) rfail(c, at, "%%%c format: a number is required, not %s", conv, jv_type_name(x));
            spec[k++] = 'l';
            spec[k++] = 'l';
            spec[k++] = conv == 'i' ? 'd' : conv;
            spec[k] = 0;
            jn_buf_printf(&b, spec, (long long)(x.t == JV_FLOAT ? (int64_t)x.f : as_int(x)));
        } else if (conv == 'f' || conv == 'F' || conv == 'e' || conv == 'E' || conv == 'g' || conv == 'G') {
            if (!is_number(x)) rfail(c, at, "must be real number, not %s", jv_type_name(x));
            spec[k++] = conv;
            spec[k] = 0;
            jn_buf_printf(&b, spec, as_float(x));
        } else {
            rfail(c, at, "unsupported format character '%c'", conv);
        }
    }
    if (next < list->n) rfail(c, at, "not all arguments converted during string formatting");
    return jn_buf_value(&b);
}

/* ---- scopes -------------------------------------------------------------- */

static scope *new_scope(jinja_ctx *c, scope *parent) {
    scope *s = jn_alloc(&c->arena, sizeof *s);
    s->vars = jv_dict(&c->arena, 4).d;
    s->parent = parent;
    return s;
}

static void scope_set(jinja_ctx *c, scope *sc, const char *name, jv v) {
    jv_dict_set(&c->arena, sc->vars, jv_cstr(&c->arena, name), v);
}

static jv global_func(jinja_ctx *c, const char *name) {
    jfunc *f = jn_alloc(&c->arena, sizeof *f);
    f->kind = FN_GLOBAL;
    f->name = name;
    return (jv){.t = JV_FUNC, .fn = f};
}

static const char *const builtin_globals[] = {"raise_exception", "strftime_now", "namespace", "range", "dict", NULL};

static jv lookup(jinja_ctx *c, scope *sc, const char *name) {
    for (scope *s = sc; s; s = s->parent) {
        jv *v = jv_dict_gets(s->vars, name);
        if (v) return *v;
    }
    jv *v = jv_dict_gets(c->globals, name);
    if (v) return *v;
    if (in_names(builtin_globals, name)) return global_func(c, name);
    return undef_fmt(c, "'%s' is undefined", name);
}

/* Binds a value to a name or unpacks it over several names. */
static void assign(jinja_ctx *c, scope *sc, const jnode *n, jv v) {
    if (!n->params) {
        scope_set(c, sc, n->name, v);
        return;
    }
    if (v.t == JV_UNDEF) undefined_error(c, n, v);
    jlist *items = iterate(c, n, v);
    if (items->n != n->nparams)
        rfail(c, n, "cannot unpack %zu value%s into %zu name%s", items->n, items->n == 1 ? "" : "s", n->nparams, n->nparams == 1 ? "" : "s");
    for (size_t i = 0; i < n->nparams; i++) scope_set(c, sc, n->params[i], items->v[i]);
}

/* ---- expressions --------------------------------------------------------- */

static void eval_args(jinja_ctx *c, scope *sc, const jnode *n, jargs *a) {
    size_t npos = n->nitems - n->nkw;
    a->npos = npos;
    a->nkw = n->nkw;
    a->kwn = n->kwnames;
    a->pos = jn_alloc(&c->arena, (n->nitems + 1) * sizeof(jv));
    for (size_t i = 0; i < n->nitems; i++) a->pos[i] = eval(c, sc, n->items[i]);
    a->kwv = a->pos + npos;
}

static jv eval_filter_node(jinja_ctx *c, scope *sc, const jnode *n, jv input) {
    jv v = n->a ? (n->a->kind == JN_FILTER ? eval_filter_node(c, sc, n->a, input) : eval(c, sc, n->a)) : input;
    jargs a;
    eval_args(c, sc, n, &a);
    return apply_filter(c, sc, n, n->name, v, &a);
}

static jv eval(jinja_ctx *c, scope *sc, const jnode *n) {
    step(c, n);
    if (++c->depth > MAX_EVAL_DEPTH) rfail(c, n, "template recursion too deep");
    jv r;
    switch (n->kind) {
    case JN_CONST: r = n->value; break;
    case JN_NAME: r = lookup(c, sc, n->name); break;
    case JN_LIST:
    case JN_TUPLE:
        r = jv_list(&c->arena, n->nitems);
        r.l->tuple = n->kind == JN_TUPLE;
        for (size_t i = 0; i < n->nitems; i++) jv_list_push(&c->arena, r.l, eval(c, sc, n->items[i]));
        break;
    case JN_DICT:
        r = jv_dict(&c->arena, n->nitems / 2);
        for (size_t i = 0; i + 1 < n->nitems; i += 2) {
            jv k = eval(c, sc, n->items[i]);
            if (k.t == JV_LIST && !k.l->tuple) rfail(c, n, "unhashable type: 'list'");
            if (k.t == JV_DICT) rfail(c, n, "unhashable type: 'dict'");
            if (k.t == JV_UNDEF) undefined_error(c, n, k);
            jv_dict_set(&c->arena, r.d, k, eval(c, sc, n->items[i + 1]));
        }
        break;
    case JN_GETATTR: r = get_attr(c, n, eval(c, sc, n->a), n->name); break;
    case JN_GETITEM: {
        jv obj = eval(c, sc, n->a);
        if (n->b->kind == JN_SLICE) {
            const jnode *s = n->b;
            r = do_slice(c, n, obj, s->a ? eval(c, sc, s->a) : jv_none(), s->b ? eval(c, sc, s->b) : jv_none(),
                         s->c ? eval(c, sc, s->c) : jv_none());
        } else {
            r = get_item(c, n, obj, eval(c, sc, n->b));
        }
        break;
    }
    case JN_SLICE: rfail(c, n, "a slice is only valid inside []");
    case JN_CALL: {
        jv fn = eval(c, sc, n->a);
        jargs a;
        eval_args(c, sc, n, &a);
        r = call_value(c, n, fn, &a);
        break;
    }
    case JN_FILTER: r = eval_filter_node(c, sc, n, jv_undef(NULL)); break;
    case JN_TEST: {
        jv v = eval(c, sc, n->a);
        jargs a;
        eval_args(c, sc, n, &a);
        r = jv_bool(apply_test(c, n, n->name, v, &a));
        break;
    }
    case JN_NOT: r = jv_bool(!jv_truthy(eval(c, sc, n->a))); break;
    case JN_NEG:
    case JN_POS: {
        jv v = eval(c, sc, n->a);
        if (v.t == JV_UNDEF) undefined_error(c, n, v);
        if (!is_number(v)) rfail(c, n, "bad operand type for unary %c: '%s'", n->kind == JN_NEG ? '-' : '+', jv_type_name(v));
        if (n->kind == JN_POS) r = v.t == JV_BOOL ? jv_int(v.b) : v;
        else if (v.t == JV_FLOAT) r = jv_float(-v.f);
        else {
            if (as_int(v) == INT64_MIN) rfail(c, n, "integer overflow");
            r = jv_int(-as_int(v));
        }
        break;
    }
    case JN_BINOP: {
        jv a = eval(c, sc, n->a);
        jv b = eval(c, sc, n->b);
        r = arith(c, n, n->op, a, b);
        break;
    }
    case JN_CONCAT: {
        jn_buf b;
        jn_buf_init(&b, &c->arena);
        for (size_t i = 0; i < n->nitems; i++) {
            jv_write_str(&b, eval(c, sc, n->items[i]));
            if (b.n > c->max_output) rfail(c, n, "string exceeds the output limit");
        }
        r = jn_buf_value(&b);
        break;
    }
    case JN_COMPARE: {
        jv left = eval(c, sc, n->a);
        bool ok = true;
        for (size_t i = 0; i < n->nitems && ok; i++) {
            jv right = eval(c, sc, n->items[i]);
            const char *op = n->ops[i];
            if (!strcmp(op, "==")) ok = jv_equal(left, right);
            else if (!strcmp(op, "!=")) ok = !jv_equal(left, right);
            else if (!strcmp(op, "in")) ok = contains(c, n, right, left);
            else if (!strcmp(op, "notin")) ok = !contains(c, n, right, left);
            else {
                int k = cmp_values(c, n, left, right, op);
                ok = !strcmp(op, "<") ? k < 0 : !strcmp(op, "<=") ? k <= 0 : !strcmp(op, ">") ? k > 0 : k >= 0;
            }
            left = right;
        }
        r = jv_bool(ok);
        break;
    }
    case JN_AND: {
        jv a = eval(c, sc, n->a);
        r = jv_truthy(a) ? eval(c, sc, n->b) : a;
        break;
    }
    case JN_OR: {
        jv a = eval(c, sc, n->a);
        r = jv_truthy(a) ? a : eval(c, sc, n->b);
        break;
    }
    case JN_COND:
        if (jv_truthy(eval(c, sc, n->a))) r = eval(c, sc, n->b);
        else r = n->c ? eval(c, sc, n->c) : undef_fmt(c, "the inline if-expression on line %d evaluated to false and no else section was defined", n->line);
        break;
    default: rfail(c, n, "not an expression");
    }
    c->depth--;
    return r;
}

/* ---- calls --------------------------------------------------------------- */

static jv capture(jinja_ctx *c, scope *sc, const jnode *body) {
    jn_buf buf, *saved = c->out;
    jn_buf_init(&buf, &c->arena);
    c->out = &buf;
    int ctl = exec_node(c, sc, body);
    c->out = saved;
    (void)ctl;
    return jn_buf_value(&buf);
}

static jv call_macro(jinja_ctx *c, const jnode *at, jfunc *f, const jargs *a) {
    const jnode *m = f->macro;
    if (a->npos > m->nparams) rfail(c, at, "macro '%s' takes not more than %zu argument(s)", m->name, m->nparams);
    scope *sc = new_scope(c, f->closure);
    jv *vals = jn_alloc(&c->arena, (m->nparams + 1) * sizeof(jv));
    bind(c, at, m->name, a, m->params, m->nparams, vals);
    for (size_t i = 0; i < m->nparams; i++) {
        if (missing(vals[i])) vals[i] = m->defaults[i] ? eval(c, sc, m->defaults[i]) : undef_fmt(c, "parameter '%s' was not provided", m->params[i]);
        scope_set(c, sc, m->params[i], vals[i]);
    }
    int saved_loops = c->loops;
    c->loops = 0;
    jv r = capture(c, sc, m->b);
    c->loops = saved_loops;
    return r;
}

static jv call_global(jinja_ctx *c, const jnode *at, const char *name, const jargs *a) {
    if (!strcmp(name, "raise_exception")) {
        static const char *const p[] = {"message"};
        jv v[1];
        bind(c, at, name, a, p, 1, v);
        jv msg = missing(v[0]) ? jv_cstr(&c->arena, "") : str_of(c, v[0]);
        rfail(c, at, "raise_exception: %s", msg.s->p);
    }
    if (!strcmp(name, "strftime_now")) {
        static const char *const p[] = {"format"};
        jv v[1];
        bind(c, at, name, a, p, 1, v);
        jv fmt = need_str(c, at, v[0], "strftime_now's format");
        time_t t = c->now ? c->now : time(NULL);
        struct tm tm;
        localtime_r(&t, &tm);
        char buf[512];
        size_t k = fmt.s->n ? strftime(buf, sizeof buf, fmt.s->p, &tm) : 0;
        return mkstr(c, buf, k);
    }
    if (!strcmp(name, "namespace") || !strcmp(name, "dict")) {
        jv d = jv_dict(&c->arena, a->nkw + 4);
        if (a->npos > 1) rfail(c, at, "%s() takes at most one positional argument", name);
        if (a->npos == 1) {
            jv src = a->pos[0];
            if (src.t != JV_DICT && src.t != JV_NS) rfail(c, at, "%s() argument must be a mapping", name);
            for (size_t i = 0; i < src.d->n; i++) jv_dict_set(&c->arena, d.d, src.d->k[i], src.d->v[i]);
        }
        for (size_t i = 0; i < a->nkw; i++) jv_dict_set(&c->arena, d.d, jv_cstr(&c->arena, a->kwn[i]), a->kwv[i]);
        if (name[0] == 'n') d.t = JV_NS;
        return d;
    }
    if (!strcmp(name, "range")) {
        if (a->nkw) rfail(c, at, "range() takes no keyword arguments");
        if (a->npos < 1 || a->npos > 3) rfail(c, at, "range expected 1 to 3 arguments, got %zu", a->npos);
        int64_t start = 0, stop, stp = 1;
        if (a->npos == 1) stop = need_int(c, at, a->pos[0], "range()'s argument");
        else {
            start = need_int(c, at, a->pos[0], "range()'s start");
            stop = need_int(c, at, a->pos[1], "range()'s stop");
            if (a->npos == 3) stp = need_int(c, at, a->pos[2], "range()'s step");
        }
        if (stp == 0) rfail(c, at, "range() arg 3 must not be zero");
        double count = ceil(((double)stop - (double)start) / (double)stp);
        if (count > MAX_RANGE) rfail(c, at, "range too big: the sandbox blocks ranges larger than %d", MAX_RANGE);
        jv out = jv_list(&c->arena, count > 0 ? (size_t)count : 1);
        for (int64_t i = start; stp > 0 ? i < stop : i > stop; i += stp) jv_list_push(&c->arena, out.l, jv_int(i));
        return out;
    }
    rfail(c, at, "unknown function '%s'", name);
}

static jv str_format(jinja_ctx *c, const jnode *at, jv fmt, const jargs *a) {
    jn_buf b;
    jn_buf_init(&b, &c->arena);
    const char *p = fmt.s->p, *end = p + fmt.s->n;
    size_t auto_index = 0;
    while (p < end) {
        if (*p == '{' && p + 1 < end && p[1] == '{') { jn_buf_addc(&b, '{'); p += 2; continue; }
        if (*p == '}' && p + 1 < end && p[1] == '}') { jn_buf_addc(&b, '}'); p += 2; continue; }
        if (*p == '}') rfail(c, at, "single '}' encountered in format string");
        if (*p != '{') { jn_buf_addc(&b, *p++); continue; }
        const char *close = memchr(p, '}', (size_t)(end - p));
        if (!close) rfail(c, at, "single '{' encountered in format string");
        const char *field = p + 1;
        size_t flen = (size_t)(close - field);
        if (memchr(field, ':', flen) || memchr(field, '!', flen) || memchr(field, '.', flen) || memchr(field, '[', flen))
            rfail(c, at, "format(): conversions, specs and attribute lookups are not supported");
        jv v;
        if (flen == 0) {
            if (auto_index >= a->npos) rfail(c, at, "format(): replacement index %zu out of range", auto_index);
            v = a->pos[auto_index++];
        } else if (field[0] >= '0' && field[0] <= '9') {
            size_t idx = (size_t)strtoul(field, NULL, 10);
            if (idx >= a->npos) rfail(c, at, "format(): replacement index %zu out of range", idx);
            v = a->pos[idx];
        } else {
            size_t k = 0;
            while (k < a->nkw && (strlen(a->kwn[k]) != flen || memcmp(a->kwn[k], field, flen) != 0)) k++;
            if (k == a->nkw) rfail(c, at, "format(): no argument named '%.*s'", (int)flen, field);
            v = a->kwv[k];
        }
        jv_write_str(&b, v);
        p = close + 1;
    }
    return jn_buf_value(&b);
}

static bool str_all(jv s, int kind) {
    if (s.s->n == 0) return false;
    size_t pos = 0;
    bool any_cased = false;
    while (pos < s.s->n) {
        int32_t cp = jn_utf8_next(s.s->p, s.s->n, &pos);
        utf8proc_category_t cat = utf8proc_category(cp);
        bool letter = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
        bool digit = cat == UTF8PROC_CATEGORY_ND;
        switch (kind) {
        case 'd': if (!digit) return false; break;
        case 'a': if (!letter) return false; break;
        case 'n': if (!letter && !digit) return false; break;
        case 's': if (!jn_is_space(cp)) return false; break;
        case 'u':
            if (cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT) return false;
            if (cat == UTF8PROC_CATEGORY_LU) any_cased = true;
            break;
        case 'l':
            if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT) return false;
            if (cat == UTF8PROC_CATEGORY_LL) any_cased = true;
            break;
        }
    }
    return kind == 'u' || kind == 'l' ? any_cased : true;
}

static bool prefix_match(jinja_ctx *c, const jnode *at, jv s, jv pre, bool suffix) {
    if (pre.t == JV_LIST && pre.l->tuple) {
        for (size_t i = 0; i < pre.l->n; i++)
            if (prefix_match(c, at, s, pre.l->v[i], suffix)) return true;
        return false;
    }
    if (pre.t != JV_STR)
        rfail(c, at, "%s first arg must be str or a tuple of str, not %s", suffix ? "endswith" : "startswith", jv_type_name(pre));
    if (pre.s->n > s.s->n) return false;
    return memcmp(s.s->p + (suffix ? s.s->n - pre.s->n : 0), pre.s->p, pre.s->n) == 0;
}

static jv call_str_method(jinja_ctx *c, const jnode *at, jv s, const char *name, const jargs *a) {
    jv v[3];
    if (!strcmp(name, "strip") || !strcmp(name, "lstrip") || !strcmp(name, "rstrip")) {
        static const char *const p[] = {"chars"};
        bind(c, at, name, a, p, 1, v);
        const jstr *chars = NULL;
        if (!missing(v[0]) && v[0].t != JV_NONE) chars = need_str(c, at, v[0], "strip's chars").s;
        return py_strip(c, s, chars, name[0] != 'r', name[0] != 'l');
    }
    if (!strcmp(name, "split") || !strcmp(name, "rsplit")) {
        static const char *const p[] = {"sep", "maxsplit"};
        bind(c, at, name, a, p, 2, v);
        int64_t maxsplit = missing(v[1]) ? -1 : need_int(c, at, v[1], "maxsplit");
        return py_split(c, at, s, missing(v[0]) ? jv_none() : v[0], maxsplit, name[0] == 'r');
    }
    if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
        if (a->nkw || a->npos != 1) rfail(c, at, "%s() takes exactly one argument here", name);
        return jv_bool(prefix_match(c, at, s, a->pos[0], name[0] == 'e'));
    }
    if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "title") || !strcmp(name, "capitalize")) {
        if (a->npos || a->nkw) rfail(c, at, "%s() takes no arguments", name);
        if (name[0] == 'u') return map_case(c, s, map_upper);
        if (name[0] == 'l') return map_case(c, s, map_lower);
        if (name[0] == 't') return py_recase(c, s, true);
        return py_recase(c, s, false);
    }
    if (!strcmp(name, "replace")) {
        static const char *const p[] = {"old", "new", "count"};
        bind(c, at, name, a, p, 3, v);
        if (missing(v[0]) || missing(v[1])) rfail(c, at, "replace() expected at least 2 arguments");
        return py_replace(c, s, need_str(c, at, v[0], "replace's old"), need_str(c, at, v[1], "replace's new"),
                          missing(v[2]) ? -1 : need_int(c, at, v[2], "replace's count"));
    }
    if (!strcmp(name, "find") || !strcmp(name, "rfind") || !strcmp(name, "count")) {
        if (a->nkw || a->npos != 1) rfail(c, at, "%s() takes exactly one argument here", name);
        jv sub = need_str(c, at, a->pos[0], "the substring");
        if (name[0] == 'c') {
            if (sub.s->n == 0) return jv_int((int64_t)jn_utf8_len(s.s->p, s.s->n) + 1);
            int64_t k = 0;
            size_t pos = 0;
            const char *hit;
            while ((hit = memmem(s.s->p + pos, s.s->n - pos, sub.s->p, sub.s->n))) {
                k++;
                pos = (size_t)(hit - s.s->p) + sub.s->n;
            }
            return jv_int(k);
        }
        size_t found = SIZE_MAX;
        if (name[0] == 'f') {
            const char *hit = memmem(s.s->p, s.s->n, sub.s->p, sub.s->n);
            if (hit) found = (size_t)(hit - s.s->p);
        } else {
            for (size_t i = s.s->n >= sub.s->n ? s.s->n - sub.s->n + 1 : 0; i-- > 0;)
                if (memcmp(s.s->p + i, sub.s->p, sub.s->n) == 0) { found = i; break; }
        }
        return jv_int(found == SIZE_MAX ? -1 : (int64_t)jn_utf8_len(s.s->p, found));
    }
    if (!strcmp(name, "join")) {
        if (a->nkw || a->npos != 1) rfail(c, at, "join() takes exactly one argument");
        jlist *items = iterate(c, at, a->pos[0]);
        jn_buf b;
        jn_buf_init(&b, &c->arena);
        for (size_t i = 0; i < items->n; i++) {
            if (items->v[i].t != JV_STR) rfail(c, at, "sequence item %zu: expected str instance, %s found", i, jv_type_name(items->v[i]));
            if (i) jn_buf_add(&b, s.s->p, s.s->n);
            jn_buf_add(&b, items->v[i].s->p, items->v[i].s->n);
        }
        return jn_buf_value(&b);
    }
    if (!strcmp(name, "format")) return str_format(c, at, s, a);
    if (!strcmp(name, "splitlines")) {
        jv out = jv_list(&c->arena, 4);
        size_t start = 0, pos = 0;
        while (pos < s.s->n) {
            size_t q = pos;
            int32_t cp = jn_utf8_next(s.s->p, s.s->n, &q);
            if (cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x1C || cp == 0x1D || cp == 0x1E ||
                cp == 0x85 || cp == 0x2028 || cp == 0x2029) {
                jv_list_push(&c->arena, out.l, mkstr(c, s.s->p + start, pos - start));
                if (cp == '\r' && q < s.s->n && s.s->p[q] == '\n') q++;
                start = q;
            }
            pos = q;
        }
        if (start < s.s->n) jv_list_push(&c->arena, out.l, mkstr(c, s.s->p + start, s.s->n - start));
        return out;
    }
    if (a->npos || a->nkw) rfail(c, at, "%s() takes no arguments", name);
    int kind = !strcmp(name, "isdigit") ? 'd' : !strcmp(name, "isalpha") ? 'a' : !strcmp(name, "isalnum") ? 'n'
             : !strcmp(name, "isspace") ? 's' : !strcmp(name, "isupper") ? 'u' : 'l';
    return jv_bool(str_all(s, kind));
}

static jv call_method(jinja_ctx *c, const jnode *at, jfunc *f, const jargs *a) {
    jv self = f->self;
    const char *name = f->name;
    if (self.t == JV_STR) return call_str_method(c, at, self, name, a);
    if (self.t == JV_DICT) {
        if (!strcmp(name, "get")) {
            static const char *const p[] = {"key", "default"};
            jv v[2];
            bind(c, at, name, a, p, 2, v);
            if (missing(v[0])) rfail(c, at, "get expected at least 1 argument, got 0");
            jv *hit = jv_dict_get(self.d, v[0]);
            return hit ? *hit : missing(v[1]) ? jv_none() : v[1];
        }
        if (a->npos || a->nkw) rfail(c, at, "%s() takes no arguments", name);
        jv out = jv_list(&c->arena, self.d->n);
        if (!strcmp(name, "copy")) {
            jv d = jv_dict(&c->arena, self.d->n);
            for (size_t i = 0; i < self.d->n; i++) jv_dict_set(&c->arena, d.d, self.d->k[i], self.d->v[i]);
            return d;
        }
        for (size_t i = 0; i < self.d->n; i++) {
            jv item = name[0] == 'k' ? self.d->k[i] : name[0] == 'v' ? self.d->v[i] : pair(c, self.d->k[i], self.d->v[i]);
            jv_list_push(&c->arena, out.l, item);
        }
        return out;
    }
    if (self.t == JV_LIST) {
        if (a->nkw || a->npos != 1) rfail(c, at, "%s() takes exactly one argument here", name);
        int64_t k = 0;
        for (size_t i = 0; i < self.l->n; i++) {
            if (!jv_equal(self.l->v[i], a->pos[0])) continue;
            if (name[0] == 'i') return jv_int((int64_t)i);
            k++;
        }
        if (name[0] == 'i') rfail(c, at, "list.index(x): x not in list");
        return jv_int(k);
    }
    if (self.t == JV_LOOP && !strcmp(name, "cycle")) {
        if (a->nkw || a->npos == 0) rfail(c, at, "no items for cycling given");
        return a->pos[self.lp->i % a->npos];
    }
    rfail(c, at, "unknown method '%s'", name);
}

static jv call_value(jinja_ctx *c, const jnode *at, jv fn, const jargs *a) {
    if (fn.t == JV_UNDEF) undefined_error(c, at, fn);
    if (fn.t != JV_FUNC) rfail(c, at, "'%s' object is not callable", jv_type_name(fn));
    switch (fn.fn->kind) {
    case FN_GLOBAL: return call_global(c, at, fn.fn->name, a);
    case FN_METHOD: return call_method(c, at, fn.fn, a);
    case FN_MACRO: return call_macro(c, at, fn.fn, a);
    }
    rfail(c, at, "bad callable");
}

/* ---- tests ---------------------------------------------------------------- */

static const char *const test_names[] = {
    "defined", "undefined", "none", "string", "mapping", "iterable", "sequence", "number", "integer", "float",
    "boolean", "true", "false", "even", "odd", "divisibleby", "eq", "equalto", "==", "ne", "!=", "lt", "lessthan",
    "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=", "in", "sameas", "callable", "lower", "upper", NULL};

bool jn_test_exists(const char *name) { return in_names(test_names, name); }

static bool apply_test(jinja_ctx *c, const jnode *at, const char *name, jv v, const jargs *a) {
    if (a->nkw) rfail(c, at, "test '%s' takes no keyword arguments", name);
    jv arg = a->npos ? a->pos[0] : jv_undef(MISSING);
    size_t want = 0;
    bool r;
    if (!strcmp(name, "defined")) r = v.t != JV_UNDEF;
    else if (!strcmp(name, "undefined")) r = v.t == JV_UNDEF;
    else if (!strcmp(name, "none")) r = v.t == JV_NONE;
    else if (!strcmp(name, "string")) r = v.t == JV_STR;
    else if (!strcmp(name, "mapping")) r = v.t == JV_DICT;
    else if (!strcmp(name, "iterable")) r = v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT || v.t == JV_UNDEF;
    else if (!strcmp(name, "sequence")) r = v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT || v.t == JV_UNDEF;
    else if (!strcmp(name, "number")) r = is_number(v);
    else if (!strcmp(name, "integer")) r = v.t == JV_INT;
    else if (!strcmp(name, "float")) r = v.t == JV_FLOAT;
    else if (!strcmp(name, "boolean")) r = v.t == JV_BOOL;
    else if (!strcmp(name, "true")) r = v.t == JV_BOOL && v.b;
    else if (!strcmp(name, "false")) r = v.t == JV_BOOL && !v.b;
    else if (!strcmp(name, "callable")) r = v.t == JV_FUNC;
    else if (!strcmp(name, "even") || !strcmp(name, "odd")) {
        jv m = arith(c, at, "%", v, jv_int(2));
        r = (name[0] == 'e') == !jv_truthy(m);
    } else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        r = str_all(str_of(c, v), name[0] == 'l' ? 'l' : 'u');
    } else {
        want = 1;
        if (a->npos != 1) rfail(c, at, "test '%s' takes exactly one argument", name);
        if (!strcmp(name, "divisibleby")) r = !jv_truthy(arith(c, at, "%", v, arg));
        else if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "==")) r = jv_equal(v, arg);
        else if (!strcmp(name, "ne") || !strcmp(name, "!=")) r = !jv_equal(v, arg);
        else if (!strcmp(name, "lt") || !strcmp(name, "lessthan") || !strcmp(name, "<")) r = cmp_values(c, at, v, arg, "<") < 0;
        else if (!strcmp(name, "le") || !strcmp(name, "<=")) r = cmp_values(c, at, v, arg, "<=") <= 0;
        else if (!strcmp(name, "gt") || !strcmp(name, "greaterthan") || !strcmp(name, ">")) r = cmp_values(c, at, v, arg, ">") > 0;
        else if (!strcmp(name, "ge") || !strcmp(name, ">=")) r = cmp_values(c, at, v, arg, ">=") >= 0;
        else if (!strcmp(name, "in")) r = contains(c, at, arg, v);
        else if (!strcmp(name, "sameas")) {
            /* Python `is`: identity; for the immutable singletons and small values equality of kind and value. */
            r = v.t == arg.t && (v.t == JV_NONE || v.t == JV_UNDEF || jv_equal(v, arg)) &&
                (v.t != JV_LIST || v.l == arg.l) && (v.t != JV_DICT || v.d == arg.d);
        } else rfail(c, at, "no test named '%s'", name);
    }
    if (!want && a->npos) rfail(c, at, "test '%s' takes no arguments", name);
    return r;
}

/* ---- filters -------------------------------------------------------------- */

/* Stable merge sort of values by a key, using Python's < on keys. */
static void sort_values(jinja_ctx *c, const jnode *at, jv *vals, jv *keys, size_t n, bool reverse) {
    if (n < 2) return;
    jv *tv = jn_alloc(&c->arena, n * sizeof(jv)), *tk = jn_alloc(&c->arena, n * sizeof(jv));
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int cmpv = cmp_values(c, at, keys[j], keys[i], "<");
                bool take_right = reverse ? cmpv > 0 : cmpv < 0;
                if (take_right) { tv[k] = vals[j]; tk[k++] = keys[j++]; }
                else { tv[k] = vals[i]; tk[k++] = keys[i++]; }
            }
            while (i < mid) { tv[k] = vals[i]; tk[k++] = keys[i++]; }
            while (j < hi) { tv[k] = vals[j]; tk[k++] = keys[j++]; }
        }
        memcpy(vals, tv, n * sizeof(jv));
        memcpy(keys, tk, n * sizeof(jv));
    }
}

/* jinja2's make_attrgetter: "a.b.0" looks each part up with item-first access. */
static jv attr_path(jinja_ctx *c, const jnode *at, jv item, jv path) {
    if (is_intlike(path)) return get_item(c, at, item, path);
    jv p = need_str(c, at, path, "attribute");
    const char *s = p.s->p;
    while (true) {
        const char *dot = strchr(s, '.');
        size_t len = dot ? (size_t)(dot - s) : strlen(s);
        bool digits = len > 0;
        for (size_t i = 0; i < len; i++) digits = digits && s[i] >= '0' && s[i] <= '9';
        jv key = digits ? jv_int(strtoll(s, NULL, 10)) : mkstr(c, s, len);
        item = get_item(c, at, item, key);
        if (!dot) return item;
        s = dot + 1;
    }
}

static jv lower_if_str(jinja_ctx *c, jv x, bool case_sensitive) {
    return x.t == JV_STR && !case_sensitive ? map_case(c, x, map_lower) : x;
}

static const char *const filter_names[] = {
    "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float", "format",
    "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr",
    "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum", "title", "tojson", "trim",
    "unique", "upper", "wordcount", NULL};

bool jn_filter_exists(const char *name) { return in_names(filter_names, name); }

/* select/reject/selectattr/rejectattr share this: keep items whose test result equals keep. */
static jv filter_select(jinja_ctx *c, const jnode *at, jv seq, const jargs *a, bool by_attr, bool keep) {
    size_t base = by_attr ? 1 : 0;
    if (by_attr && a->npos < 1) rfail(c, at, "missing attribute for selectattr/rejectattr");
    jlist *items = iterate(c, at, seq);
    jv out = jv_list(&c->arena, items->n + 1);
    const char *test = NULL;
    jargs targs = {0};
    if (a->npos > base) {
        test = need_str(c, at, a->pos[base], "the test name").s->p;
        if (!jn_test_exists(test)) rfail(c, at, "no test named '%s'", test);
        targs.pos = a->pos + base + 1;
        targs.npos = a->npos - base - 1;
    }
    for (size_t i = 0; i < items->n; i++) {
        jv v = by_attr ? attr_path(c, at, items->v[i], a->pos[0]) : items->v[i];
        bool r = test ? apply_test(c, at, test, v, &targs) : jv_truthy(v);
        if (r == keep) jv_list_push(&c->arena, out.l, items->v[i]);
    }
    return out;
}

static jv apply_filter(jinja_ctx *c, scope *sc, const jnode *at, const char *name, jv v, const jargs *a) {
    jv p[4];
#define BIND(...) do { static const char *const names_[] = {__VA_ARGS__}; \
        bind(c, at, name, a, names_, sizeof names_ / sizeof names_[0], p); } while (0)
#define NOARGS() do { if (a->npos || a->nkw) rfail(c, at, "filter '%s' takes no arguments", name); } while (0)
    if (!strcmp(name, "safe")) { NOARGS(); return v; }
    if (!strcmp(name, "string")) { NOARGS(); return str_of(c, v); }
    if (!strcmp(name, "trim")) {
        BIND("chars");
        const jstr *chars = missing(p[0]) || p[0].t == JV_NONE ? NULL : need_str(c, at, p[0], "trim's chars").s;
        return py_strip(c, str_of(c, v), chars, true, true);
    }
    if (!strcmp(name, "upper")) { NOARGS(); return map_case(c, str_of(c, v), map_upper); }
    if (!strcmp(name, "lower")) { NOARGS(); return map_case(c, str_of(c, v), map_lower); }
    if (!strcmp(name, "title")) { NOARGS(); return jinja_title(c, str_of(c, v)); }
    if (!strcmp(name, "capitalize")) { NOARGS(); return py_recase(c, str_of(c, v), false); }
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        NOARGS();
        switch (v.t) {
        case JV_UNDEF: return jv_int(0);
        case JV_STR: return jv_int((int64_t)jn_utf8_len(v.s->p, v.s->n));
        case JV_LIST: return jv_int((int64_t)v.l->n);
        case JV_DICT: return jv_int((int64_t)v.d->n);
        default: rfail(c, at, "object of type '%s' has no len()", jv_type_name(v));
        }
    }
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        BIND("default_value", "boolean");
        jv dflt = missing(p[0]) ? jv_cstr(&c->arena, "") : p[0];
        bool boolean = !missing(p[1]) && jv_truthy(p[1]);
        if (v.t == JV_UNDEF || (boolean && !jv_truthy(v))) return dflt;
        return v;
    }
    if (!strcmp(name, "join")) {
        BIND("d", "attribute");
        jv sep = missing(p[0]) ? jv_cstr(&c->arena, "") : str_of(c, p[0]);
        jlist *items = iterate(c, at, v);
        jn_buf b;
        jn_buf_init(&b, &c->arena);
        for (size_t i = 0; i < items->n; i++) {
            if (i) jn_buf_add(&b, sep.s->p, sep.s->n);
            jv item = items->v[i];
            if (!missing(p[1]) && p[1].t != JV_NONE) item = attr_path(c, at, item, p[1]);
            jv_write_str(&b, item);
            if (b.n > c->max_output) rfail(c, at, "string exceeds the output limit");
        }
        return jn_buf_value(&b);
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        NOARGS();
        jlist *items = iterate(c, at, v);
        if (!items->n) return jv_undef(name[0] == 'f' ? "No first item, sequence was empty." : "No last item, sequence was empty.");
        return items->v[name[0] == 'f' ? 0 : items->n - 1];
    }
    if (!strcmp(name, "list")) {
        NOARGS();
        jlist *items = iterate(c, at, v);
        jv out = jv_list(&c->arena, items->n);
        for (size_t i = 0; i < items->n; i++) jv_list_push(&c->arena, out.l, items->v[i]);
        return out;
    }
    if (!strcmp(name, "reverse")) {
        NOARGS();
        if (v.t == JV_STR) return do_slice(c, at, v, jv_none(), jv_none(), jv_int(-1));
        jlist *items = iterate(c, at, v);
        jv out = jv_list(&c->arena, items->n);
        for (size_t i = items->n; i > 0; i--) jv_list_push(&c->arena, out.l, items->v[i - 1]);
        return out;
    }
    if (!strcmp(name, "tojson")) {
        BIND("ensure_ascii", "indent", "separators", "sort_keys");
        jn_json_opts o = {0};
        o.ensure_ascii = !missing(p[0]) && jv_truthy(p[0]);
        if (!missing(p[1]) && p[1].t != JV_NONE) {
            if (p[1].t == JV_STR) o.indent = p[1].s->p;
            else {
                int64_t k = need_int(c, at, p[1], "tojson's indent");
                if (k > 64) rfail(c, at, "tojson indent too large");
                char *ind = jn_alloc(&c->arena, (size_t)(k > 0 ? k : 0) + 1);
                for (int64_t i = 0; i < k; i++) ind[i] = ' ';
                o.indent = ind;
            }
        }
        if (!missing(p[2]) && p[2].t != JV_NONE) {
            if (p[2].t != JV_LIST || p[2].l->n != 2 || p[2].l->v[0].t != JV_STR || p[2].l->v[1].t != JV_STR)
                rfail(c, at, "tojson's separators must be a pair of strings");
            o.item_sep = p[2].l->v[0].s->p;
            o.key_sep = p[2].l->v[1].s->p;
        }
        o.sort_keys = !missing(p[3]) && jv_truthy(p[3]);
        jn_buf b;
        jn_buf_init(&b, &c->arena);
        const char *msg = NULL;
        if (!jn_json_dump(&b, v, &o, &msg)) rfail(c, at, "tojson: %s", msg);
        return jn_buf_value(&b);
    }
    if (!strcmp(name, "items")) {
        NOARGS();
        if (v.t == JV_UNDEF) return jv_list(&c->arena, 1);
        if (v.t != JV_DICT) rfail(c, at, "can only get item pairs from a mapping");
        jv out = jv_list(&c->arena, v.d->n);
        for (size_t i = 0; i < v.d->n; i++) jv_list_push(&c->arena, out.l, pair(c, v.d->k[i], v.d->v[i]));
        return out;
    }
    if (!strcmp(name, "replace")) {
        BIND("old", "new", "count");
        if (missing(p[0]) || missing(p[1])) rfail(c, at, "replace filter needs old and new");
        int64_t count = missing(p[2]) || p[2].t == JV_NONE ? -1 : need_int(c, at, p[2], "replace's count");
        return py_replace(c, str_of(c, v), str_of(c, p[0]), str_of(c, p[1]), count);
    }
    if (!strcmp(name, "int")) {
        BIND("default", "base");
        jv dflt = missing(p[0]) ? jv_int(0) : p[0];
        int64_t base = missing(p[1]) ? 10 : need_int(c, at, p[1], "int's base");
        if (v.t == JV_INT) return v;
        if (v.t == JV_BOOL) return jv_int(v.b);
        if (v.t == JV_FLOAT) return isfinite(v.f) && fabs(v.f) < 9.2e18 ? jv_int((int64_t)v.f) : dflt;
        if (v.t == JV_STR) {
            jv t = py_strip(c, v, NULL, true, true);
            char *buf = jn_alloc(&c->arena, t.s->n + 1), *w = buf;
            for (size_t i = 0; i < t.s->n; i++)
                if (t.s->p[i] != '_') *w++ = t.s->p[i];
            *w = 0;
            char *end;
            if (*buf && base >= 2 && base <= 36) {
                long long x = strtoll(buf, &end, (int)base);
                if (*end == 0) return jv_int(x);
            }
            double f = strtod(buf, &end);
            if (*buf && *end == 0 && isfinite(f) && fabs(f) < 9.2e18) return jv_int((int64_t)f);
        }
        return dflt;
    }
    if (!strcmp(name, "float")) {
        BIND("default");
        jv dflt = missing(p[0]) ? jv_float(0.0) : p[0];
        if (is_number(v)) return jv_float(as_float(v));
        if (v.t == JV_STR) {
            jv t = py_strip(c, v, NULL, true, true);
            char *end;
            double f = strtod(t.s->p, &end);
            if (t.s->n && *end == 0) return jv_float(f);
        }
        return dflt;
    }
    if (!strcmp(name, "abs")) {
        NOARGS();
        if (v.t == JV_FLOAT) return jv_float(fabs(v.f));
        int64_t x = need_int(c, at, v, "abs's operand");
        if (x == INT64_MIN) rfail(c, at, "integer overflow");
        return jv_int(x < 0 ? -x : x);
    }
    if (!strcmp(name, "round")) {
        BIND("precision", "method");
        int64_t prec = missing(p[0]) ? 0 : need_int(c, at, p[0], "round's precision");
        const char *method = missing(p[1]) ? "common" : need_str(c, at, p[1], "round's method").s->p;
        if (!is_number(v)) rfail(c, at, "round: a number is required, not %s", jv_type_name(v));
        if (prec < 0 || prec > 15) rfail(c, at, "round: precision out of range");
        if (!strcmp(method, "common")) {
            if (v.t != JV_FLOAT) return jv_int(as_int(v)); /* Python's round(int, 0) stays an int */
            char buf[400];
            snprintf(buf, sizeof buf, "%.*f", (int)prec, v.f); /* correctly rounded, ties to even, like Python */
            return jv_float(strtod(buf, NULL));
        }
        double scale = pow(10.0, (double)prec), x = as_float(v);
        if (!strcmp(method, "ceil")) return jv_float(ceil(x * scale) / scale);
        if (!strcmp(method, "floor")) return jv_float(floor(x * scale) / scale);
        rfail(c, at, "method must be common, ceil or floor");
    }
    if (!strcmp(name, "escape") || !strcmp(name, "e")) {
        NOARGS();
        jv s = str_of(c, v);
        jn_buf b;
        jn_buf_init(&b, &c->arena);
        for (size_t i = 0; i < s.s->n; i++) {
            char ch = s.s->p[i];
            if (ch == '&') jn_buf_adds(&b, "&amp;");
            else if (ch == '<') jn_buf_adds(&b, "&lt;");
            else if (ch == '>') jn_buf_adds(&b, "&gt;");
            else if (ch == '"') jn_buf_adds(&b, "&#34;");
            else if (ch == '\'') jn_buf_adds(&b, "&#39;");
            else jn_buf_addc(&b, ch);
        }
        return jn_buf_value(&b);
    }
    if (!strcmp(name, "indent")) {
        BIND("width", "first", "blank");
        jv ind;
        if (missing(p[0])) ind = jv_cstr(&c->arena, "    ");
        else if (p[0].t == JV_STR) ind = p[0];
        else {
            int64_t w = need_int(c, at, p[0], "indent's width");
            if (w < 0 || w > 1000) rfail(c, at, "indent width out of range");
            ind = arith(c, at, "*", jv_cstr(&c->arena, " "), jv_int(w));
        }
        bool first = !missing(p[1]) && jv_truthy(p[1]), blank = !missing(p[2]) && jv_truthy(p[2]);
        jv s = str_of(c, v);
        jn_buf b;
        jn_buf_init(&b, &c->arena);
        /* Lines split like str.splitlines(); a trailing newline survives. */
        size_t start = 0;
        bool line0 = true;
        while (start <= s.s->n) {
            const char *nl = memchr(s.s->p + start, '\n', s.s->n - start);
            size_t end = nl ? (size_t)(nl - s.s->p) : s.s->n;
            bool empty = end == start;
            if (!line0 || first) {
                if (!empty || blank) jn_buf_add(&b, ind.s->p, ind.s->n);
            }
            jn_buf_add(&b, s.s->p + start, end - start);
            if (!nl) break;
            jn_buf_addc(&b, '\n');
            start = end + 1;
            line0 = false;
            if (start == s.s->n) break;
        }
        if (line0 && first && s.s->n == 0) return jv_cstr(&c->arena, "");
        return jn_buf_value(&b);
    }
    if (!strcmp(name, "wordcount")) {
        NOARGS();
        jv s = str_of(c, v);
        int64_t k = 0;
        bool in_word = false;
        size_t pos = 0;
        while (pos < s.s->n) {
            int32_t cp = jn_utf8_next(s.s->p, s.s->n, &pos);
            utf8proc_category_t cat = utf8proc_category(cp);
            bool w = cp == '_' || (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
                     (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
            if (w && !in_word) k++;
            in_word = w;
        }
        return jv_int(k);
    }
    if (!strcmp(name, "attr")) {
        BIND("name");
        return get_attr(c, at, v, need_str(c, at, p[0], "attr's name").s->p);
    }
    if (!strcmp(name, "format")) {
        jv args = new_tuple(c, a->npos);
        for (size_t i = 0; i < a->npos; i++) jv_list_push(&c->arena, args.l, a->pos[i]);
        return format_percent(c, at, str_of(c, v), args);
    }
    if (!strcmp(name, "select") || !strcmp(name, "reject")) {
        if (a->nkw) rfail(c, at, "filter '%s' takes no keyword arguments", name);
        return filter_select(c, at, v, a, false, name[0] == 's');
    }
    if (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr")) {
        if (a->nkw) rfail(c, at, "filter '%s' takes no keyword arguments", name);
        return filter_select(c, at, v, a, true, name[0] == 's');
    }
    if (!strcmp(name, "map")) {
        jlist *items = iterate(c, at, v);
        jv out = jv_list(&c->arena, items->n + 1);
        if (a->npos == 0) {
            BIND("attribute", "default");
            if (missing(p[0])) rfail(c, at, "map needs a filter name or attribute=");
            for (size_t i = 0; i < items->n; i++) {
                jv x = attr_path(c, at, items->v[i], p[0]);
                if (x.t == JV_UNDEF && !missing(p[1])) x = p[1];
                jv_list_push(&c->arena, out.l, x);
            }
            return out;
        }
        const char *fname = need_str(c, at, a->pos[0], "map's filter name").s->p;
        if (!jn_filter_exists(fname)) rfail(c, at, "no filter named '%s'", fname);
        jargs rest = {.pos = a->pos + 1, .npos = a->npos - 1, .kwn = a->kwn, .kwv = a->kwv, .nkw = a->nkw};
        for (size_t i = 0; i < items->n; i++) jv_list_push(&c->arena, out.l, apply_filter(c, sc, at, fname, items->v[i], &rest));
        return out;
    }
    if (!strcmp(name, "sum")) {
        BIND("attribute", "start");
        jv total = missing(p[1]) ? jv_int(0) : p[1];
        jlist *items = iterate(c, at, v);
        for (size_t i = 0; i < items->n; i++) {
            jv x = missing(p[0]) || p[0].t == JV_NONE ? items->v[i] : attr_path(c, at, items->v[i], p[0]);
            total = arith(c, at, "+", total, x);
        }
        return total;
    }
    if (!strcmp(name, "sort") || !strcmp(name, "dictsort") || !strcmp(name, "unique") || !strcmp(name, "min") || !strcmp(name, "max")) {
        bool reverse = false, cs = false;
        jv attribute = jv_undef(MISSING), by = jv_undef(MISSING);
        jlist *items;
        if (!strcmp(name, "sort")) {
            BIND("reverse", "case_sensitive", "attribute");
            reverse = !missing(p[0]) && jv_truthy(p[0]);
            cs = !missing(p[1]) && jv_truthy(p[1]);
            attribute = p[2];
            items = iterate(c, at, v);
        } else if (!strcmp(name, "dictsort")) {
            BIND("case_sensitive", "by", "reverse");
            cs = !missing(p[0]) && jv_truthy(p[0]);
            by = p[1];
            reverse = !missing(p[2]) && jv_truthy(p[2]);
            if (v.t != JV_DICT) rfail(c, at, "dictsort needs a mapping");
            jv pairs = jv_list(&c->arena, v.d->n + 1);
            for (size_t i = 0; i < v.d->n; i++) jv_list_push(&c->arena, pairs.l, pair(c, v.d->k[i], v.d->v[i]));
            items = pairs.l;
        } else {
            BIND("case_sensitive", "attribute");
            cs = !missing(p[0]) && jv_truthy(p[0]);
            attribute = p[1];
            items = iterate(c, at, v);
        }
        size_t n = items->n;
        jv *vals = jn_alloc(&c->arena, (n + 1) * sizeof(jv)), *keys = jn_alloc(&c->arena, (n + 1) * sizeof(jv));
        int by_index = 0;
        if (!missing(by)) {
            jv b = need_str(c, at, by, "dictsort's by");
            if (!strcmp(b.s->p, "value")) by_index = 1;
            else if (strcmp(b.s->p, "key") != 0) rfail(c, at, "you can only sort by either \"key\" or \"value\"");
        }
        for (size_t i = 0; i < n; i++) {
            vals[i] = items->v[i];
            jv k = items->v[i];
            if (name[0] == 'd') k = k.l->v[by_index];
            else if (!missing(attribute) && attribute.t != JV_NONE) k = attr_path(c, at, k, attribute);
            keys[i] = lower_if_str(c, k, cs);
        }
        if (!strcmp(name, "unique")) {
            jv out = jv_list(&c->arena, n + 1);
            jv seen = jv_list(&c->arena, n + 1);
            for (size_t i = 0; i < n; i++) {
                if (contains(c, at, seen, keys[i])) continue;
                jv_list_push(&c->arena, seen.l, keys[i]);
                jv_list_push(&c->arena, out.l, vals[i]);
            }
            return out;
        }
        if (!strcmp(name, "min") || !strcmp(name, "max")) {
            if (n == 0) return jv_undef(name[1] == 'i' ? "No aggregated item, sequence was empty." : "No aggregated item, sequence was empty.");
            size_t best = 0;
            for (size_t i = 1; i < n; i++) {
                int k = cmp_values(c, at, keys[i], keys[best], "<");
                if (name[1] == 'i' ? k < 0 : k > 0) best = i;
            }
            return vals[best];
        }
        sort_values(c, at, vals, keys, n, reverse);
        jv out = jv_list(&c->arena, n + 1);
        for (size_t i = 0; i < n; i++) jv_list_push(&c->arena, out.l, vals[i]);
        return out;
    }
#undef BIND
#undef NOARGS
    rfail(c, at, "no filter named '%s'", name);
}

/* ---- statements --------------------------------------------------------- */

enum { CTL_NONE = 0, CTL_BREAK, CTL_CONTINUE };

/* Binds the loop target(s) in an iteration scope; keys are made once per loop. */
static void bind_target(jinja_ctx *c, scope *it, const jnode *n, const jv *keys, jv item) {
    if (!n->params) {
        jv_dict_set(&c->arena, it->vars, keys[0], item);
        return;
    }
    if (item.t == JV_UNDEF) undefined_error(c, n, item);
    jlist *vals = iterate(c, n, item);
    if (vals->n != n->nparams)
        rfail(c, n, "cannot unpack %zu value%s into %zu name%s", vals->n, vals->n == 1 ? "" : "s", n->nparams, n->nparams == 1 ? "" : "s");
    for (size_t i = 0; i < n->nparams; i++) jv_dict_set(&c->arena, it->vars, keys[i], vals->v[i]);
}

static int exec_for(jinja_ctx *c, scope *sc, const jnode *n) {
    jv iterable = eval(c, sc, n->a);
    jlist *items = iterate(c, n->a, iterable);
    size_t nkeys = n->params ? n->nparams : 1;
    jv *keys = jn_alloc(&c->arena, (nkeys + 1) * sizeof(jv));
    for (size_t i = 0; i < nkeys; i++) keys[i] = jv_cstr(&c->arena, n->params ? n->params[i] : n->name);
    jv loop_key = jv_cstr(&c->arena, "loop");
    /* An iteration's variables live in a scope of its own. The scope is
     * cleared and reused between iterations unless a macro captured it. */
    scope *it = new_scope(c, sc);
    if (n->b) {
        /* The loop filter sees the loop variable but not `loop`. */
        jv kept = jv_list(&c->arena, items->n + 1);
        for (size_t i = 0; i < items->n; i++) {
            step(c, n);
            it->vars->n = 0;
            bind_target(c, it, n, keys, items->v[i]);
            if (jv_truthy(eval(c, it, n->b))) jv_list_push(&c->arena, kept.l, items->v[i]);
        }
        items = kept.l;
    }
    size_t count = items->n;
    c->loops++;
    for (size_t i = 0; i < count; i++) {
        if (it->captured) it = new_scope(c, sc);
        it->vars->n = 0;
        bind_target(c, it, n, keys, items->v[i]);
        jloop *lp = jn_alloc(&c->arena, sizeof *lp);
        *lp = (jloop){.i = i, .n = count, .items = items};
        jv_dict_set(&c->arena, it->vars, loop_key, (jv){.t = JV_LOOP, .lp = lp});
        int ctl = exec_node(c, it, n->c);
        if (ctl == CTL_BREAK) break;
    }
    c->loops--;
    if (count == 0 && n->d) return exec_node(c, sc, n->d);
    return CTL_NONE;
}

static int exec_node(jinja_ctx *c, scope *sc, const jnode *n) {
    step(c, n);
    if (++c->depth > MAX_EVAL_DEPTH) rfail(c, n, "template recursion too deep");
    int ctl = CTL_NONE;
    switch (n->kind) {
    case JN_BODY:
        for (size_t i = 0; i < n->nitems && ctl == CTL_NONE; i++) ctl = exec_node(c, sc, n->items[i]);
        break;
    case JN_TEXT: emit(c, n, n->value.s->p, n->value.s->n); break;
    case JN_OUTPUT: emit_value(c, n, eval(c, sc, n->a)); break;
    case JN_IF:
        if (jv_truthy(eval(c, sc, n->a))) ctl = exec_node(c, sc, n->b);
        else if (n->c) ctl = exec_node(c, sc, n->c);
        break;
    case JN_FOR: ctl = exec_for(c, sc, n); break;
    case JN_SET:
    case JN_SET_BLOCK: {
        jv v;
        if (n->kind == JN_SET) v = eval(c, sc, n->a);
        else {
            v = capture(c, sc, n->b);
            if (n->c) v = eval_filter_node(c, sc, n->c, v);
        }
        if (n->attr) {
            jv target = lookup(c, sc, n->name);
            if (target.t != JV_NS)
                rfail(c, n, "cannot assign attribute on non-namespace object");
            jv_dict_set(&c->arena, target.d, jv_cstr(&c->arena, n->attr), v);
        } else {
            assign(c, sc, n, v);
        }
        break;
    }
    case JN_MACRO: {
        jfunc *f = jn_alloc(&c->arena, sizeof *f);
        f->kind = FN_MACRO;
        f->name = n->name;
        f->macro = n;
        f->closure = sc;
        sc->captured = true;
        scope_set(c, sc, n->name, (jv){.t = JV_FUNC, .fn = f});
        break;
    }
    case JN_BREAK:
    case JN_CONTINUE:
        if (!c->loops) rfail(c, n, "'%s' outside of a loop", n->kind == JN_BREAK ? "break" : "continue");
        ctl = n->kind == JN_BREAK ? CTL_BREAK : CTL_CONTINUE;
        break;
    case JN_FILTER_BLOCK: emit_value(c, n, eval_filter_node(c, sc, n->a, capture(c, sc, n->b))); break;
    default: emit_value(c, n, eval(c, sc, n)); break;
    }
    c->depth--;
    return ctl;
}

/* ---- context and entry point ------------------------------------------- */

jinja_ctx *jinja_ctx_new(void) {
    jinja_ctx *volatile c = calloc(1, sizeof *c);
    if (!c) {
        lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "template: out of memory");
        return NULL;
    }
    jn_arena_init(&c->garena, (size_t)256 << 20);
    jn_arena_init(&c->arena, (size_t)256 << 20);
    c->max_output = (size_t)64 << 20;
    c->max_steps = 50000000;
    jmp_buf jb;
    c->garena.fail = &jb;
    if (setjmp(jb)) {
        jn_arena_free(&c->garena);
        free(c);
        return NULL;
    }
    c->globals = jv_dict(&c->garena, 16).d;
    c->garena.fail = NULL;
    return c;
}

void jinja_ctx_free(jinja_ctx *c) {
    if (!c) return;
    jn_arena_free(&c->garena);
    jn_arena_free(&c->arena);
    free(c);
}

static lmc_status set_global(jinja_ctx *c, const char *name, jv v) {
    jmp_buf jb;
    c->garena.fail = &jb;
    if (setjmp(jb)) {
        c->garena.fail = NULL;
        return lmc_last_status();
    }
    jv_dict_set(&c->garena, c->globals, jv_cstr(&c->garena, name), v);
    c->garena.fail = NULL;
    return LMC_OK;
}

lmc_status jinja_ctx_set_json(jinja_ctx *c, const char *name, const char *json, size_t n) {
    jmp_buf jb;
    c->garena.fail = &jb;
    if (setjmp(jb)) {
        c->garena.fail = NULL;
        return lmc_last_status();
    }
    jv v;
    bool ok = jn_json_parse(&c->garena, json, n, name, &v);
    c->garena.fail = NULL;
    if (!ok) return lmc_last_status();
    return set_global(c, name, v);
}

lmc_status jinja_ctx_set_json_object(jinja_ctx *c, const char *json, size_t n, const char *what) {
    jmp_buf jb;
    c->garena.fail = &jb;
    if (setjmp(jb)) {
        c->garena.fail = NULL;
        return lmc_last_status();
    }
    jv v;
    bool ok = jn_json_parse(&c->garena, json, n, what, &v);
    c->garena.fail = NULL;
    if (!ok) return lmc_last_status();
    if (v.t != JV_DICT) return lmc_set_error(LMC_ERR_INVALID_ARGUMENT, "%s: expected a JSON object, got %s", what, jv_type_name(v));
    for (size_t i = 0; i < v.d->n; i++) {
        lmc_status s = set_global(c, v.d->k[i].s->p, v.d->v[i]);
        if (s != LMC_OK) return s;
    }
    return LMC_OK;
}

lmc_status jinja_ctx_set_str(jinja_ctx *c, const char *name, const char *s) {
    jmp_buf jb;
    c->garena.fail = &jb;
    if (setjmp(jb)) {
        c->garena.fail = NULL;
        return lmc_last_status();
    }
    jv v = jv_cstr(&c->garena, s);
    c->garena.fail = NULL;
    return set_global(c, name, v);
}

lmc_status jinja_ctx_set_bool(jinja_ctx *c, const char *name, bool b) { return set_global(c, name, jv_bool(b)); }
lmc_status jinja_ctx_set_none(jinja_ctx *c, const char *name) { return set_global(c, name, jv_none()); }
void jinja_ctx_set_time(jinja_ctx *c, time_t t) { c->now = t; }

void jinja_ctx_set_limits(jinja_ctx *c, size_t max_output, uint64_t max_steps) {
    if (max_output) c->max_output = max_output;
    if (max_steps) c->max_steps = max_steps;
}

lmc_status jinja_render(jinja_ctx *c, const jinja_template *t, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    jn_arena_free(&c->arena);
    c->arena.fail = &c->fail;
    c->steps = 0;
    c->depth = 0;
    c->loops = 0;
    if (setjmp(c->fail)) {
        c->arena.fail = NULL;
        jn_arena_free(&c->arena);
        return lmc_last_status();
    }
    jn_buf buf;
    jn_buf_init(&buf, &c->arena);
    c->out = &buf;
    scope *root = new_scope(c, NULL);
    exec_node(c, root, t->root);
    char *s = malloc(buf.n + 1);
    if (!s) {
        lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "template: out of memory for the output");
        longjmp(c->fail, 1);
    }
    if (buf.n) memcpy(s, buf.p, buf.n);
    s[buf.n] = 0;
    *out = s;
    if (len) *len = buf.n;
    c->arena.fail = NULL;
    jn_arena_free(&c->arena);
    return LMC_OK;
}
