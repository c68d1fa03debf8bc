/* Jinja parser: tokens to AST, following jinja2's grammar and operator
 * precedence (lowest first): `x if c else y`, or, and, not, comparisons and
 * `in`, + -, ~, * / // %, **, unary - +, then postfix (.attr, [key], call),
 * filters `|` and tests `is`. */
#include "text/jinja.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

enum { MAX_DEPTH = 200 };

typedef struct parser {
    jn_arena *a;
    jtok *t;
    size_t n, pos;
    int depth;
    jmp_buf fail;
} parser;

static _Noreturn void fail_at(parser *p, const jtok *t, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static _Noreturn void fail_at(parser *p, const jtok *t, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lmc_set_error(LMC_ERR_FORMAT, "template syntax error at line %d, column %d: %s", t->line, t->col, msg);
    longjmp(p->fail, 1);
}

static jtok *cur(parser *p) { return &p->t[p->pos]; }
static jtok *peek(parser *p, size_t k) { return &p->t[p->pos + k < p->n ? p->pos + k : p->n - 1]; }
static jtok *next(parser *p) {
    jtok *t = cur(p);
    if (p->pos + 1 < p->n) p->pos++;
    return t;
}

static bool is_op(const jtok *t, const char *op) { return t->t == JT_OP && strcmp(t->op, op) == 0; }
static bool is_name(const jtok *t, const char *name) { return t->t == JT_NAME && strcmp(t->s, name) == 0; }

static const char *describe(const jtok *t) {
    switch (t->t) {
    case JT_EOF: return "end of template";
    case JT_DATA: return "template data";
    case JT_VAR_BEGIN: return "'{{'";
    case JT_VAR_END: return "end of print statement";
    case JT_BLOCK_BEGIN: return "'{%'";
    case JT_BLOCK_END: return "end of statement block";
    case JT_NAME: return t->s;
    case JT_STRING: return "string";
    case JT_INT: return "integer";
    case JT_FLOAT: return "float";
    case JT_OP: return t->op;
    }
    return "token";
}

static void expect_op(parser *p, const char *op) {
    if (!is_op(cur(p), op)) fail_at(p, cur(p), "expected '%s', got '%s'", op, describe(cur(p)));
    next(p);
}

static const char *expect_name(parser *p) {
    if (cur(p)->t != JT_NAME) fail_at(p, cur(p), "expected a name, got '%s'", describe(cur(p)));
    return next(p)->s;
}

static void expect_block_end(parser *p) {
    if (cur(p)->t != JT_BLOCK_END) fail_at(p, cur(p), "expected end of statement block, got '%s'", describe(cur(p)));
    next(p);
}

static jnode *node(parser *p, jnode_kind k, const jtok *at) {
    jnode *n = jn_alloc(p->a, sizeof *n);
    n->kind = k;
    n->line = at->line;
    return n;
}

/* A growable array of node pointers in the arena. */
typedef struct nvec { jnode **v; size_t n, cap; } nvec;
static void nvec_push(parser *p, nvec *v, jnode *x) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        jnode **nv = jn_alloc(p->a, cap * sizeof *nv);
        if (v->n) memcpy(nv, v->v, v->n * sizeof *nv);
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = x;
}

typedef struct svec { const char **v; size_t n, cap; } svec;
static void svec_push(parser *p, svec *v, const char *x) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        const char **nv = jn_alloc(p->a, cap * sizeof *nv);
        if (v->n) memcpy(nv, v->v, v->n * sizeof *nv);
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = x;
}

static void enter(parser *p) {
    if (++p->depth > MAX_DEPTH) fail_at(p, cur(p), "template nested too deeply");
}
static void leave(parser *p) { p->depth--; }

/* ---- expressions ------------------------------------------------------ */

static jnode *parse_expression(parser *p, bool with_condexpr);
static jnode *parse_unary(parser *p, bool with_filter);
static jnode *parse_primary(parser *p);
static jnode *parse_postfix(parser *p, jnode *n);

/* Is the current token the end of a tuple? (extra: a name that also ends it, e.g. "in") */
static bool tuple_end(parser *p, const char *extra) {
    jtok *t = cur(p);
    if (t->t == JT_VAR_END || t->t == JT_BLOCK_END || is_op(t, ")")) return true;
    return extra && is_name(t, extra);
}

static jnode *parse_tuple(parser *p, bool with_condexpr, const char *extra_end, bool explicit_parens) {
    jtok *start = cur(p);
    nvec items = {0};
    bool is_tuple = false;
    for (;;) {
        if (items.n) expect_op(p, ",");
        if (tuple_end(p, extra_end)) break;
        nvec_push(p, &items, parse_expression(p, with_condexpr));
        if (is_op(cur(p), ",")) is_tuple = true;
        else break;
    }
    if (!is_tuple) {
        if (items.n) return items.v[0];
        if (!explicit_parens) fail_at(p, start, "expected an expression, got '%s'", describe(start));
    }
    jnode *n = node(p, JN_TUPLE, start);
    n->items = items.v;
    n->nitems = items.n;
    return n;
}

/* Call arguments after '(' up to and including ')'. */
static void parse_call_args(parser *p, jnode *n) {
    expect_op(p, "(");
    nvec args = {0}, kwvals = {0};
    svec kwnames = {0};
    while (!is_op(cur(p), ")")) {
        if (args.n || kwvals.n) {
            expect_op(p, ",");
            if (is_op(cur(p), ")")) break;
        }
        if (is_op(cur(p), "*") || is_op(cur(p), "**")) fail_at(p, cur(p), "*args and **kwargs in calls are not supported");
        if (cur(p)->t == JT_NAME && is_op(peek(p, 1), "=")) {
            svec_push(p, &kwnames, next(p)->s);
            next(p);
            nvec_push(p, &kwvals, parse_expression(p, true));
        } else {
            if (kwvals.n) fail_at(p, cur(p), "positional argument follows keyword argument");
            nvec_push(p, &args, parse_expression(p, true));
        }
    }
    expect_op(p, ")");
    for (size_t i = 0; i < kwvals.n; i++) nvec_push(p, &args, kwvals.v[i]);
    n->items = args.v;
    n->nitems = args.n;
    n->kwnames = kwnames.v;
    n->nkw = kwnames.n;
}

/* A filter name (and arguments) at the current token, applied to input. */
static jnode *parse_filter_named(parser *p, jnode *input, const jtok *at) {
    jnode *n = node(p, JN_FILTER, at);
    jtok *nt = cur(p);
    const char *name = expect_name(p);
    while (is_op(cur(p), ".")) {
        next(p);
        const char *more = expect_name(p);
        size_t k = strlen(name) + strlen(more) + 2;
        char *full = jn_alloc(p->a, k);
        snprintf(full, k, "%s.%s", name, more);
        name = full;
    }
    if (!jn_filter_exists(name)) fail_at(p, nt, "no filter named '%s'", name);
    n->name = name;
    n->a = input;
    if (is_op(cur(p), "(")) parse_call_args(p, n);
    return n;
}

static jnode *parse_filter(parser *p, jnode *input) {
    jtok *at = next(p); /* '|' */
    return parse_filter_named(p, input, at);
}

static jnode *parse_test(parser *p, jnode *input) {
    jtok *at = next(p); /* 'is' */
    bool negated = false;
    if (is_name(cur(p), "not")) {
        next(p);
        negated = true;
    }
    jtok *nt = cur(p);
    const char *name = expect_name(p);
    if (!jn_test_exists(name)) fail_at(p, nt, "no test named '%s'", name);
    jnode *n = node(p, JN_TEST, at);
    n->name = name;
    n->a = input;
    jtok *t = cur(p);
    if (is_op(t, "(")) parse_call_args(p, n);
    else if ((t->t == JT_NAME || t->t == JT_STRING || t->t == JT_INT || t->t == JT_FLOAT || is_op(t, "[") || is_op(t, "{")) &&
             !is_name(t, "else") && !is_name(t, "or") && !is_name(t, "and")) {
        if (is_name(t, "is")) fail_at(p, t, "you cannot chain multiple tests with is");
        /* One argument without parentheses: `x is divisibleby 3`, `x is sameas false`. */
        jnode *arg = parse_postfix(p, parse_primary(p));
        n->items = jn_alloc(p->a, sizeof(jnode *));
        n->items[0] = arg;
        n->nitems = 1;
    }
    if (negated) {
        jnode *nn = node(p, JN_NOT, at);
        nn->a = n;
        return nn;
    }
    return n;
}

static jnode *parse_subscript(parser *p, jnode *obj) {
    jtok *t = next(p);
    if (t->op[0] == '.') {
        jtok *at = next(p);
        if (at->t == JT_NAME) {
            jnode *n = node(p, JN_GETATTR, t);
            n->a = obj;
            n->name = at->s;
            return n;
        }
        if (at->t != JT_INT) fail_at(p, at, "expected name or number after '.'");
        jnode *n = node(p, JN_GETITEM, t);
        n->a = obj;
        n->b = node(p, JN_CONST, at);
        n->b->value = jv_int(at->i);
        return n;
    }
    /* '[' subscript or slice ']' */
    nvec args = {0};
    while (!is_op(cur(p), "]")) {
        if (args.n) expect_op(p, ",");
        jnode *sub;
        jtok *st = cur(p);
        jnode *start = NULL, *stop = NULL, *step = NULL;
        bool slice = false;
        if (!is_op(cur(p), ":")) {
            start = parse_expression(p, true);
            if (!is_op(cur(p), ":")) {
                nvec_push(p, &args, start);
                continue;
            }
        }
        slice = true;
        next(p); /* ':' */
        if (!is_op(cur(p), "]") && !is_op(cur(p), ",") && !is_op(cur(p), ":")) stop = parse_expression(p, true);
        if (is_op(cur(p), ":")) {
            next(p);
            if (!is_op(cur(p), "]") && !is_op(cur(p), ",")) step = parse_expression(p, true);
        }
        (void)slice;
        sub = node(p, JN_SLICE, st);
        sub->a = start;
        sub->b = stop;
        sub->c = step;
        nvec_push(p, &args, sub);
    }
    expect_op(p, "]");
    if (args.n == 0) fail_at(p, t, "expected a subscript");
    jnode *n = node(p, JN_GETITEM, t);
    n->a = obj;
    if (args.n == 1) n->b = args.v[0];
    else {
        n->b = node(p, JN_TUPLE, t);
        n->b->items = args.v;
        n->b->nitems = args.n;
    }
    return n;
}

static jnode *parse_postfix(parser *p, jnode *n) {
    for (;;) {
        jtok *t = cur(p);
        if (is_op(t, ".") || is_op(t, "[")) n = parse_subscript(p, n);
        else if (is_op(t, "(")) {
            jnode *c = node(p, JN_CALL, t);
            c->a = n;
            parse_call_args(p, c);
            n = c;
        } else break;
    }
    return n;
}

static jnode *parse_filter_expr(parser *p, jnode *n) {
    for (;;) {
        jtok *t = cur(p);
        if (is_op(t, "|")) n = parse_filter(p, n);
        else if (is_name(t, "is")) n = parse_test(p, n);
        else if (is_op(t, "(")) {
            jnode *c = node(p, JN_CALL, t);
            c->a = n;
            parse_call_args(p, c);
            n = c;
        } else break;
    }
    return n;
}

static jnode *parse_primary(parser *p) {
    enter(p);
    jtok *t = cur(p);
    jnode *n;
    if (t->t == JT_NAME) {
        next(p);
        n = node(p, JN_CONST, t);
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True")) n->value = jv_bool(true);
        else if (!strcmp(t->s, "false") || !strcmp(t->s, "False")) n->value = jv_bool(false);
        else if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) n->value = jv_none();
        else {
            n->kind = JN_NAME;
            n->name = t->s;
        }
    } else if (t->t == JT_STRING) {
        /* Adjacent string literals concatenate. */
        jn_buf b;
        jn_buf_init(&b, p->a);
        while (cur(p)->t == JT_STRING) {
            jn_buf_add(&b, cur(p)->s, cur(p)->n);
            next(p);
        }
        n = node(p, JN_CONST, t);
        n->value = jn_buf_value(&b);
    } else if (t->t == JT_INT || t->t == JT_FLOAT) {
        next(p);
        n = node(p, JN_CONST, t);
        n->value = t->t == JT_INT ? jv_int(t->i) : jv_float(t->f);
    } else if (is_op(t, "(")) {
        next(p);
        n = parse_tuple(p, true, NULL, true);
        expect_op(p, ")");
    } else if (is_op(t, "[")) {
        next(p);
        n = node(p, JN_LIST, t);
        nvec items = {0};
        while (!is_op(cur(p), "]")) {
            if (items.n) expect_op(p, ",");
            if (is_op(cur(p), "]")) break;
            nvec_push(p, &items, parse_expression(p, true));
        }
        expect_op(p, "]");
        n->items = items.v;
        n->nitems = items.n;
    } else if (is_op(t, "{")) {
        next(p);
        n = node(p, JN_DICT, t);
        nvec items = {0};
        while (!is_op(cur(p), "}")) {
            if (items.n) expect_op(p, ",");
            if (is_op(cur(p), "}")) break;
            nvec_push(p, &items, parse_expression(p, true));
            expect_op(p, ":");
            nvec_push(p, &items, parse_expression(p, true));
        }
        expect_op(p, "}");
        n->items = items.v;
        n->nitems = items.n;
    } else {
        fail_at(p, t, "unexpected '%s'", describe(t));
    }
    leave(p);
    return n;
}

static jnode *parse_unary(parser *p, bool with_filter) {
    enter(p);
    jtok *t = cur(p);
    jnode *n;
    if (is_op(t, "-") || is_op(t, "+")) {
        next(p);
        n = node(p, t->op[0] == '-' ? JN_NEG : JN_POS, t);
        n->a = parse_unary(p, false);
    } else {
        n = parse_primary(p);
    }
    n = parse_postfix(p, n);
    if (with_filter) n = parse_filter_expr(p, n);
    leave(p);
    return n;
}

static jnode *binop(parser *p, const jtok *t, jnode *l, jnode *r) {
    jnode *n = node(p, JN_BINOP, t);
    memcpy(n->op, t->op, sizeof n->op);
    n->a = l;
    n->b = r;
    return n;
}

static jnode *parse_pow(parser *p) {
    jnode *l = parse_unary(p, true);
    while (is_op(cur(p), "**")) {
        jtok *t = next(p);
        l = binop(p, t, l, parse_unary(p, true));
    }
    return l;
}

static jnode *parse_math2(parser *p) {
    jnode *l = parse_pow(p);
    while (is_op(cur(p), "*") || is_op(cur(p), "/") || is_op(cur(p), "//") || is_op(cur(p), "%")) {
        jtok *t = next(p);
        l = binop(p, t, l, parse_pow(p));
    }
    return l;
}

static jnode *parse_concat(parser *p) {
    jtok *t = cur(p);
    jnode *first = parse_math2(p);
    if (!is_op(cur(p), "~")) return first;
    nvec items = {0};
    nvec_push(p, &items, first);
    while (is_op(cur(p), "~")) {
        next(p);
        nvec_push(p, &items, parse_math2(p));
    }
    jnode *n = node(p, JN_CONCAT, t);
    n->items = items.v;
    n->nitems = items.n;
    return n;
}

static jnode *parse_math1(parser *p) {
    jnode *l = parse_concat(p);
    while (is_op(cur(p), "+") || is_op(cur(p), "-")) {
        jtok *t = next(p);
        l = binop(p, t, l, parse_concat(p));
    }
    return l;
}

static jnode *parse_compare(parser *p) {
    jtok *t = cur(p);
    jnode *first = parse_math1(p);
    nvec operands = {0};
    svec ops = {0};
    for (;;) {
        jtok *c = cur(p);
        if (c->t == JT_OP && (!strcmp(c->op, "==") || !strcmp(c->op, "!=") || !strcmp(c->op, "<") || !strcmp(c->op, "<=") ||
                              !strcmp(c->op, ">") || !strcmp(c->op, ">="))) {
            next(p);
            svec_push(p, &ops, c->op);
        } else if (is_name(c, "in")) {
            next(p);
            svec_push(p, &ops, "in");
        } else if (is_name(c, "not") && is_name(peek(p, 1), "in")) {
            next(p);
            next(p);
            svec_push(p, &ops, "notin");
        } else break;
        nvec_push(p, &operands, parse_math1(p));
    }
    if (!ops.n) return first;
    jnode *n = node(p, JN_COMPARE, t);
    n->a = first;
    n->items = operands.v;
    n->nitems = operands.n;
    n->ops = ops.v;
    return n;
}

static jnode *parse_not(parser *p) {
    if (is_name(cur(p), "not")) {
        jtok *t = next(p);
        enter(p);
        jnode *n = node(p, JN_NOT, t);
        n->a = parse_not(p);
        leave(p);
        return n;
    }
    return parse_compare(p);
}

static jnode *parse_and(parser *p) {
    jnode *l = parse_not(p);
    while (is_name(cur(p), "and")) {
        jtok *t = next(p);
        jnode *n = node(p, JN_AND, t);
        n->a = l;
        n->b = parse_not(p);
        l = n;
    }
    return l;
}

static jnode *parse_or(parser *p) {
    jnode *l = parse_and(p);
    while (is_name(cur(p), "or")) {
        jtok *t = next(p);
        jnode *n = node(p, JN_OR, t);
        n->a = l;
        n->b = parse_and(p);
        l = n;
    }
    return l;
}

static jnode *parse_expression(parser *p, bool with_condexpr) {
    enter(p);
    jtok *t = cur(p);
    jnode *n = parse_or(p);
    while (with_condexpr && is_name(cur(p), "if")) {
        next(p);
        jnode *c = node(p, JN_COND, t);
        c->a = parse_or(p);
        c->b = n;
        if (is_name(cur(p), "else")) {
            next(p);
            c->c = parse_expression(p, true);
        }
        n = c;
    }
    leave(p);
    return n;
}

/* ---- statements ------------------------------------------------------- */

static jnode *parse_body(parser *p, const char *const *ends);

/* Assignment target: a name, names separated by commas, or (with_attr) name.attr. */
static void parse_target(parser *p, jnode *n, const char *extra_end, bool with_attr) {
    jtok *t = cur(p);
    if (with_attr && t->t == JT_NAME && is_op(peek(p, 1), ".") && peek(p, 2)->t == JT_NAME) {
        n->name = next(p)->s;
        next(p);
        n->attr = next(p)->s;
        return;
    }
    bool parens = is_op(t, "(");
    if (parens) next(p);
    svec names = {0};
    bool tuple = parens;
    for (;;) {
        if (names.n) {
            if (!is_op(cur(p), ",")) break;
            next(p);
            tuple = true;
            if (parens && is_op(cur(p), ")")) break;
            if (!parens && (tuple_end(p, extra_end) || is_op(cur(p), "="))) break;
        }
        jtok *nt = cur(p);
        const char *name = expect_name(p);
        if (!strcmp(name, "true") || !strcmp(name, "false") || !strcmp(name, "none") || !strcmp(name, "True") ||
            !strcmp(name, "False") || !strcmp(name, "None"))
            fail_at(p, nt, "cannot assign to '%s'", name);
        svec_push(p, &names, name);
    }
    if (parens) expect_op(p, ")");
    if (!tuple) {
        n->name = names.v[0];
        return;
    }
    n->params = names.v;
    n->nparams = names.n;
}

static jnode *parse_for(parser *p, jtok *at) {
    jnode *n = node(p, JN_FOR, at);
    parse_target(p, n, "in", false);
    if (!is_name(cur(p), "in")) fail_at(p, cur(p), "expected 'in', got '%s'", describe(cur(p)));
    next(p);
    n->a = parse_tuple(p, false, "recursive", false);
    if (is_name(cur(p), "if")) {
        next(p);
        n->b = parse_expression(p, true);
    }
    if (is_name(cur(p), "recursive")) fail_at(p, cur(p), "recursive loops are not supported");
    expect_block_end(p);
    static const char *const ends[] = {"endfor", "else", NULL};
    n->c = parse_body(p, ends);
    if (is_name(cur(p), "else")) {
        next(p);
        expect_block_end(p);
        static const char *const ends2[] = {"endfor", NULL};
        n->d = parse_body(p, ends2);
    }
    next(p); /* endfor */
    expect_block_end(p);
    return n;
}

static jnode *parse_if(parser *p, jtok *at) {
    jnode *n = node(p, JN_IF, at);
    n->a = parse_tuple(p, false, NULL, false);
    expect_block_end(p);
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    n->b = parse_body(p, ends);
    jtok *t = cur(p);
    if (is_name(t, "elif")) {
        next(p);
        n->c = parse_if(p, t); /* consumes through endif */
        return n;
    }
    if (is_name(t, "else")) {
        next(p);
        expect_block_end(p);
        static const char *const ends2[] = {"endif", NULL};
        n->c = parse_body(p, ends2);
    }
    next(p); /* endif */
    expect_block_end(p);
    return n;
}

/* Filters applied to a block's output: `| f(args) | g`, innermost input NULL. */
static jnode *parse_filter_chain(parser *p, jnode *chain) {
    while (is_op(cur(p), "|")) chain = parse_filter(p, chain);
    return chain;
}

static jnode *parse_set(parser *p, jtok *at) {
    jnode *n = node(p, JN_SET, at);
    parse_target(p, n, NULL, true);
    if (is_op(cur(p), "=")) {
        next(p);
        n->a = parse_tuple(p, true, NULL, false);
        expect_block_end(p);
        return n;
    }
    n->kind = JN_SET_BLOCK;
    if (n->params) fail_at(p, at, "a block set cannot assign to several names");
    n->c = parse_filter_chain(p, NULL);
    expect_block_end(p);
    static const char *const ends[] = {"endset", NULL};
    n->b = parse_body(p, ends);
    next(p);
    expect_block_end(p);
    return n;
}

static jnode *parse_macro(parser *p, jtok *at) {
    jnode *n = node(p, JN_MACRO, at);
    n->name = expect_name(p);
    expect_op(p, "(");
    svec params = {0};
    nvec defaults = {0};
    while (!is_op(cur(p), ")")) {
        if (params.n) expect_op(p, ",");
        jtok *pt = cur(p);
        svec_push(p, &params, expect_name(p));
        if (is_op(cur(p), "=")) {
            next(p);
            nvec_push(p, &defaults, parse_expression(p, true));
        } else {
            if (defaults.n && defaults.v[defaults.n - 1]) fail_at(p, pt, "non-default argument follows default argument");
            nvec_push(p, &defaults, NULL);
        }
    }
    expect_op(p, ")");
    expect_block_end(p);
    n->params = params.v;
    n->nparams = params.n;
    n->defaults = defaults.v;
    static const char *const ends[] = {"endmacro", NULL};
    n->b = parse_body(p, ends);
    next(p);
    expect_block_end(p);
    return n;
}

static jnode *parse_statement(parser *p) {
    jtok *at = cur(p);
    const char *name = expect_name(p);
    if (!strcmp(name, "for")) return parse_for(p, at);
    if (!strcmp(name, "if")) return parse_if(p, at);
    if (!strcmp(name, "set")) return parse_set(p, at);
    if (!strcmp(name, "macro")) return parse_macro(p, at);
    if (!strcmp(name, "break") || !strcmp(name, "continue")) {
        jnode *n = node(p, name[0] == 'b' ? JN_BREAK : JN_CONTINUE, at);
        expect_block_end(p);
        return n;
    }
    if (!strcmp(name, "filter")) {
        jnode *n = node(p, JN_FILTER_BLOCK, at);
        n->a = parse_filter_chain(p, parse_filter_named(p, NULL, at));
        expect_block_end(p);
        static const char *const ends[] = {"endfilter", NULL};
        n->b = parse_body(p, ends);
        next(p);
        expect_block_end(p);
        return n;
    }
    if (!strcmp(name, "generation")) {
        /* transformers' AssistantTracker tag: renders its body unchanged. */
        expect_block_end(p);
        static const char *const ends[] = {"endgeneration", NULL};
        jnode *body = parse_body(p, ends);
        next(p);
        expect_block_end(p);
        return body;
    }
    fail_at(p, at, "encountered unknown tag '%s'", name);
}

/* Statements up to a block tag named in ends (left current) or the end of the template. */
static jnode *parse_body(parser *p, const char *const *ends) {
    enter(p);
    jnode *body = node(p, JN_BODY, cur(p));
    nvec stmts = {0};
    for (;;) {
        jtok *t = cur(p);
        if (t->t == JT_EOF) {
            if (ends) fail_at(p, t, "unexpected end of template, expected '%s'", ends[0]);
            break;
        }
        if (t->t == JT_DATA) {
            jnode *n = node(p, JN_TEXT, t);
            n->value = jv_str(p->a, t->s, t->n);
            nvec_push(p, &stmts, n);
            next(p);
        } else if (t->t == JT_VAR_BEGIN) {
            next(p);
            jnode *n = node(p, JN_OUTPUT, t);
            n->a = parse_tuple(p, true, NULL, false);
            if (cur(p)->t != JT_VAR_END) fail_at(p, cur(p), "expected end of print statement, got '%s'", describe(cur(p)));
            next(p);
            nvec_push(p, &stmts, n);
        } else if (t->t == JT_BLOCK_BEGIN) {
            next(p);
            jtok *nt = cur(p);
            if (nt->t == JT_NAME && ends)
                for (int i = 0; ends[i]; i++)
                    if (!strcmp(nt->s, ends[i])) goto done;
            if (nt->t == JT_NAME && (!strncmp(nt->s, "end", 3) || !strcmp(nt->s, "else") || !strcmp(nt->s, "elif")))
                fail_at(p, nt, ends ? "unexpected '%s', expected '%s'" : "unexpected '%s'%s", nt->s, ends ? ends[0] : "");
            nvec_push(p, &stmts, parse_statement(p));
        } else {
            fail_at(p, t, "unexpected '%s'", describe(t));
        }
    }
done:
    body->items = stmts.v;
    body->nitems = stmts.n;
    leave(p);
    return body;
}

jinja_template *jinja_parse(const char *src, size_t n) {
    jinja_template *volatile t = calloc(1, sizeof *t);
    if (!t) {
        lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "template: out of memory");
        return NULL;
    }
    jn_arena_init(&t->arena, (size_t)1 << 30);
    parser *volatile p = calloc(1, sizeof *p);
    if (!p) {
        free(t);
        lmc_set_error(LMC_ERR_OUT_OF_MEMORY, "template: out of memory");
        return NULL;
    }
    p->a = &t->arena;
    t->arena.fail = &p->fail;
    if (setjmp(p->fail)) {
        jn_arena_free(&t->arena);
        free(t);
        free(p);
        return NULL;
    }
    jtok *toks;
    size_t ntoks;
    if (!jn_lex(&t->arena, src, n, &toks, &ntoks)) longjmp(p->fail, 1);
    p->t = toks;
    p->n = ntoks;
    t->root = parse_body(p, NULL);
    t->arena.fail = NULL;
    free(p);
    return t;
}

void jinja_template_free(jinja_template *t) {
    if (!t) return;
    jn_arena_free(&t->arena);
    free(t);
}
