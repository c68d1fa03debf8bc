/* A Jinja2-subset template interpreter, enough to render the chat templates
 * that Hugging Face tokenizer_config.json files carry exactly as transformers
 * renders them (jinja2 with trim_blocks, lstrip_blocks, loopcontrols, an
 * immutable sandbox, and the globals raise_exception and strftime_now).
 *
 * Pipeline: jinja_lex.c turns the source into tokens (applying whitespace
 * control), jinja_parse.c builds an AST, jinja_eval.c walks it. Values
 * (jinja_value.c) follow Python's semantics since templates are written
 * against Python objects; jinja_json.c converts JSON text to values and
 * values to json.dumps-style text.
 *
 * Memory: every node and value lives in an arena that is freed as a whole,
 * so errors unwind with longjmp and nothing needs individual freeing.
 */
#ifndef LMC_TEXT_JINJA_H
#define LMC_TEXT_JINJA_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lmc/base.h"

/* ---- arena ---------------------------------------------------------- */

typedef struct jn_chunk jn_chunk;
typedef struct jn_arena {
    jn_chunk *head;
    size_t total;   /* bytes obtained from malloc so far */
    size_t limit;   /* 0: none; above it jn_alloc fails */
    jmp_buf *fail;  /* where to longjmp when an allocation fails */
} jn_arena;

void jn_arena_init(jn_arena *a, size_t limit);
void jn_arena_free(jn_arena *a);
/* Zeroed memory; on failure records LMC_ERR_OUT_OF_MEMORY and longjmps to a->fail. */
void *jn_alloc(jn_arena *a, size_t n);
char *jn_strndup(jn_arena *a, const char *s, size_t n);

/* ---- values --------------------------------------------------------- */

typedef enum jv_type {
    JV_UNDEF = 0, /* jinja2's Undefined: prints as "", is falsy, iterates as empty */
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST,  /* list or tuple (jlist.tuple) */
    JV_DICT,  /* ordered dict, keys are any hashable value */
    JV_NS,    /* namespace() object or the loop object: attributes in a jdict */
    JV_FUNC,  /* builtin global, bound method or macro */
    JV_LOOP,  /* the `loop` variable of a for-loop iteration */
} jv_type;

typedef struct jstr { size_t n; char p[]; } jstr; /* NUL-terminated UTF-8 */
typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jfunc jfunc;
typedef struct jloop jloop;

typedef struct jv {
    jv_type t;
    union {
        bool b;
        int64_t i;
        double f;
        jstr *s;
        jlist *l;
        jdict *d;
        jfunc *fn;
        jloop *lp;
        const char *undef; /* JV_UNDEF: the message an error about it shows, or NULL */
    };
} jv;

struct jlist { size_t n, cap; jv *v; bool tuple; };
struct jdict { size_t n, cap; jv *k, *v; };
struct jloop { size_t i, n; const jlist *items; }; /* iteration i of n over items */

jv jv_undef(const char *msg);
jv jv_none(void);
jv jv_bool(bool b);
jv jv_int(int64_t i);
jv jv_float(double f);
jv jv_str(jn_arena *a, const char *s, size_t n);
jv jv_cstr(jn_arena *a, const char *s);
jv jv_list(jn_arena *a, size_t cap);
jv jv_dict(jn_arena *a, size_t cap);
void jv_list_push(jn_arena *a, jlist *l, jv x);
/* Inserts or replaces (keeping the first position, as Python dicts do). */
void jv_dict_set(jn_arena *a, jdict *d, jv k, jv v);
/* NULL when absent. */
jv *jv_dict_get(const jdict *d, jv k);
jv *jv_dict_gets(const jdict *d, const char *key);

bool jv_truthy(jv x);
/* Python ==, with 1 == 1.0 == True. */
bool jv_equal(jv a, jv b);
/* Python's type name ("str", "int", "dict", ...) for messages. */
const char *jv_type_name(jv x);

/* Growable byte buffer in an arena. */
typedef struct jn_buf { char *p; size_t n, cap; jn_arena *a; } jn_buf;
void jn_buf_init(jn_buf *b, jn_arena *a);
void jn_buf_add(jn_buf *b, const char *s, size_t n);
void jn_buf_adds(jn_buf *b, const char *s);
void jn_buf_addc(jn_buf *b, char c);
/* Appends code point c as UTF-8 (a lone surrogate becomes U+FFFD). */
void jn_buf_add_cp(jn_buf *b, uint32_t c);
void jn_buf_printf(jn_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
jv jn_buf_value(jn_buf *b); /* the contents as a JV_STR (copies) */

/* Python str(x) and repr(x) appended to b. */
void jv_write_str(jn_buf *b, jv x);
void jv_write_repr(jn_buf *b, jv x);
void jv_write_float(jn_buf *b, double f); /* Python's repr of a float */

/* UTF-8 helpers: strings are indexed by code point, as Python does. */
size_t jn_utf8_len(const char *s, size_t n);               /* code points */
int32_t jn_utf8_next(const char *s, size_t n, size_t *pos); /* decodes one, advancing *pos; bad bytes give U+FFFD */
bool jn_is_space(int32_t c);                                 /* Python str.isspace */

/* ---- JSON ------------------------------------------------------------ */

/* Parses JSON text into a value (ints stay ints, floats stay floats, object
 * order kept), as Python's json.loads does. On error returns false with
 * LMC_ERR_FORMAT and a message naming the position (what: e.g. "messages"). */
bool jn_json_parse(jn_arena *a, const char *text, size_t n, const char *what, jv *out);

typedef struct jn_json_opts {
    const char *indent;      /* NULL: single line */
    const char *item_sep;    /* NULL: ", " without indent, "," with */
    const char *key_sep;     /* NULL: ": " */
    bool sort_keys;
    bool ensure_ascii;
} jn_json_opts;
/* json.dumps(x, ...); returns false (and sets msg) for a value JSON cannot hold. */
bool jn_json_dump(jn_buf *b, jv x, const jn_json_opts *o, const char **msg);

/* ---- lexer ----------------------------------------------------------- */

typedef enum jtok_type {
    JT_EOF = 0,
    JT_DATA,        /* literal text */
    JT_VAR_BEGIN,   /* {{ */
    JT_VAR_END,     /* }} */
    JT_BLOCK_BEGIN, /* {% */
    JT_BLOCK_END,   /* %} */
    JT_NAME,
    JT_STRING,      /* value already unescaped */
    JT_INT,
    JT_FLOAT,
    JT_OP,          /* operator or punctuation: text in op[] */
} jtok_type;

typedef struct jtok {
    jtok_type t;
    int line, col;
    const char *s; size_t n; /* NAME, STRING, DATA: text (arena) */
    int64_t i;
    double f;
    char op[3];
} jtok;

/* Tokenises src (trim_blocks and lstrip_blocks on, as in transformers). On a
 * syntax error returns false with LMC_ERR_FORMAT set. */
bool jn_lex(jn_arena *a, const char *src, size_t n, jtok **toks, size_t *ntoks);

/* ---- AST ------------------------------------------------------------- */

typedef enum jnode_kind {
    /* expressions */
    JN_CONST, JN_NAME, JN_LIST, JN_TUPLE, JN_DICT, JN_GETATTR, JN_GETITEM, JN_SLICE,
    JN_CALL, JN_FILTER, JN_TEST, JN_NOT, JN_NEG, JN_POS, JN_BINOP, JN_CONCAT,
    JN_COMPARE, JN_AND, JN_OR, JN_COND,
    /* statements */
    JN_BODY, JN_TEXT, JN_OUTPUT, JN_IF, JN_FOR, JN_SET, JN_SET_BLOCK, JN_MACRO,
    JN_BREAK, JN_CONTINUE, JN_FILTER_BLOCK,
} jnode_kind;

typedef struct jnode jnode;
struct jnode {
    jnode_kind kind;
    int line;
    const char *name;     /* NAME, GETATTR attribute, FILTER/TEST name, SET target name, MACRO name */
    const char *attr;     /* SET/SET_BLOCK: "x" in {% set ns.x = ... %} */
    char op[3];           /* BINOP operator; COMPARE uses ops[] */
    jv value;             /* CONST, TEXT */
    jnode *a, *b, *c, *d; /* children: see the parser for each kind */
    jnode **items;        /* LIST/TUPLE items, DICT keys+values interleaved, CALL/FILTER/TEST args, BODY statements, COMPARE operands */
    size_t nitems;
    const char **kwnames; /* CALL/FILTER/TEST keyword names (values follow the positional args in items) */
    size_t nkw;
    const char **ops;     /* COMPARE: operator per operand ("==", "in", "notin", ...) */
    const char **params;  /* MACRO parameter names, FOR/SET tuple targets */
    size_t nparams;
    jnode **defaults;     /* MACRO defaults (NULL where none) */
};

typedef struct jinja_template {
    jn_arena arena;
    jnode *root;
} jinja_template;

/* Parses a template. On error returns NULL with LMC_ERR_FORMAT ("line L, column C: ...")
 * or LMC_ERR_OUT_OF_MEMORY set. */
jinja_template *jinja_parse(const char *src, size_t n);
void jinja_template_free(jinja_template *t);

/* ---- rendering -------------------------------------------------------- */

typedef struct jinja_ctx jinja_ctx;

/* A render context holding the global variables. */
jinja_ctx *jinja_ctx_new(void);
void jinja_ctx_free(jinja_ctx *c);
lmc_status jinja_ctx_set_json(jinja_ctx *c, const char *name, const char *json, size_t n);
lmc_status jinja_ctx_set_str(jinja_ctx *c, const char *name, const char *s);
lmc_status jinja_ctx_set_bool(jinja_ctx *c, const char *name, bool b);
lmc_status jinja_ctx_set_none(jinja_ctx *c, const char *name);
/* Binds every key of a JSON object as a global (overriding earlier ones). */
lmc_status jinja_ctx_set_json_object(jinja_ctx *c, const char *json, size_t n, const char *what);
/* strftime_now() uses this time instead of the clock (for tests); 0 = clock. */
void jinja_ctx_set_time(jinja_ctx *c, time_t t);
/* Limits: output bytes and work steps (0 keeps the default). */
void jinja_ctx_set_limits(jinja_ctx *c, size_t max_output, uint64_t max_steps);

/* Renders t with the globals of c; *out is a malloc'd NUL-terminated string.
 * Template errors (raise_exception, undefined values used wrongly, type
 * errors) return LMC_ERR_INVALID_ARGUMENT with a message. c may be reused. */
lmc_status jinja_render(jinja_ctx *c, const jinja_template *t, char **out, size_t *len);

/* Tables for the parser's compile-time name checks. */
bool jn_filter_exists(const char *name);
bool jn_test_exists(const char *name);

#endif
