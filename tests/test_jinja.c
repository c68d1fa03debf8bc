/* Unit tests of the Jinja interpreter (src/text/jinja*.c).
 *
 * The expected outputs follow jinja2 3.1 as transformers configures it
 * (trim_blocks, lstrip_blocks, loopcontrols, immutable sandbox, tojson as
 * json.dumps with ensure_ascii=False); each was cross-checked against jinja2. */
#include <string.h>

#include "lmc/chat_template.h"
#include "test_util.h"
#include "text/jinja.h"

typedef struct render_case {
    const char *group, *tmpl, *expected;
} render_case;

typedef struct error_case {
    const char *tmpl;
    lmc_status status;
    const char *message_part; /* must appear in lmc_last_error() */
} error_case;

static const char *const VARS = "{\"xs\": [1, 2, 3], \"d\": {\"a\": 1, \"b\": [1, 2]}, \"s\": \"h\u00e9llo\", \"e\": [], \"n\": null, \"f\": 1.0, \"ns_list\": [{\"role\": \"user\", \"n\": 2}, {\"role\": \"bot\", \"n\": 1}]}";

static const render_case CASES[] = {
    {"ws", "{% if true %}\nyes\n{% endif %}\n",
     "yes\n"},
    {"ws", "  {% if true %}\n  x\n  {% endif %}\nend",
     "  x\nend"},
    {"ws", "a  {% if true %}b{% endif %}",
     "a  b"},
    {"ws", "{{ 1 }}  {% if true %}b{% endif %}",
     "1  b"},
    {"ws", "{% if true -%}\n   x   {%- endif %}|",
     "x|"},
    {"ws", "a {{- ' b ' -}} c",
     "a b c"},
    {"ws", "{% if true +%}\nkeep\n{%+ endif %}",
     "\nkeep\n"},
    {"ws", "    {%+ if true %}x{% endif %}",
     "    x"},
    {"ws", "{# c #}\n  {# d #}\ny",
     "y"},
    {"ws", "a{#- c -#}   b",
     "ab"},
    {"ws", "{% for x in xs %}\n  {{ x }}\n{% endfor %}",
     "  1\n  2\n  3\n"},
    {"ws", "{%- for x in xs -%}\n  {{ x }}\n{%- endfor %}",
     "123"},
    {"ws", "x\n",
     "x"},
    {"ws", "x\n\n",
     "x\n"},
    {"ws", "a\r\nb",
     "a\nb"},
    {"ws", "{% raw %}\n{{ x }}  {% endraw %}\nz",
     "\n{{ x }}  z"},
    {"ws", "{{ {'a': {'b': 1}} }}",
     "{'a': {'b': 1}}"},
    {"values", "{{ xs }}|{{ d }}|{{ n }}|{{ true }}|{{ f }}|{{ 1e16 }}|{{ 0.00001 }}|{{ 0.1 + 0.2 }}",
     "[1, 2, 3]|{'a': 1, 'b': [1, 2]}|None|True|1.0|1e+16|1e-05|0.30000000000000004"},
    {"values", "{{ (1,) }}{{ (1, 'a') }}{{ ['it\\'s', \"q\\\"\"] }}",
     "(1,)(1, 'a')[\"it's\", 'q\"']"},
    {"values", "{{ 'a\\tb\\n' ~ \"\\u00e9\" ~ 'x' 'y' }}",
     "a\tb\n\u00e9xy"},
    {"values", "{{ undefined_thing }}|{{ 'a' ~ undefined_thing ~ 'b' }}",
     "|ab"},
    {"ops", "{{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 1 + 2.0 }} {{ 'ab' * 2 }} {{ [0] * 2 }}",
     "3.5 3 -4 2 1024 3.0 abab [0, 0]"},
    {"ops", "{{ 1 + 2 * 3 - 4 / 2 }} {{ -2 ** 2 }} {{ 2 ** 3 ** 2 }}",
     "5.0 4 64"},
    {"ops", "{{ 1 == 1.0 }}{{ 1 == true }}{{ 'a' < 'b' }}{{ [1, 2] < [1, 3] }}{{ 1 < 2 < 3 }}{{ 3 > 2 > 5 }}",
     "TrueTrueTrueTrueTrueFalse"},
    {"ops", "{{ 'a' in 'cat' }}{{ 2 in xs }}{{ 'a' in d }}{{ 'z' not in d }}{{ 1 in nothing }}",
     "TrueTrueTrueTrueFalse"},
    {"ops", "{{ 'y' if xs else 'n' }}{{ 'y' if e else 'n' }}[{{ 'x' if e }}]{{ xs and 'A' }}{{ e or 'B' }}{{ not e }}",
     "yn[]ABTrue"},
    {"ops", "{{ 'a' ~ 1 ~ none ~ 2.5 ~ [1] }}",
     "a1None2.5[1]"},
    {"loops", "{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}",
     "1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;"},
    {"loops", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}",
     "a=1;b=[1, 2];ab"},
    {"loops", "{% for c in s %}[{{ c }}]{% endfor %}",
     "[h][\u00e9][l][l][o]"},
    {"loops", "{% for x in e %}{{ x }}{% else %}empty{% endfor %}|{% for x in xs if x > 1 %}{{ x }}/{{ loop.index }}/{{ loop.length }} {% else %}none{% endfor %}",
     "empty|2/1/2 3/2/2 "},
    {"loops", "{% for x in xs %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}|{% for x in xs %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}",
     "13|1"},
    {"loops", "{% for a in xs %}{% for b in xs[:2] %}{{ loop.index }}{% endfor %}{{ loop.index }} {% endfor %}",
     "121 122 123 "},
    {"loops", "{% for x in xs %}{{ loop.previtem }}-{{ loop.nextitem }},{{ loop.cycle('a', 'b') }} {% endfor %}",
     "-2,a 1-3,b 2-,a "},
    {"loops", "{% for m in ns_list[::-1] %}{{ m.role }}{{ loop.index0 }}{% endfor %}",
     "bot0user1"},
    {"set", "{% set a = 1 %}{% for x in xs %}{{ a }}{% set a = x * 10 %}{{ a }} {% endfor %}{{ a }}",
     "110 120 130 1"},
    {"set", "{% set ns = namespace(total=0, seen=false) %}{% for x in xs %}{% set ns.total = ns.total + x %}{% endfor %}{{ ns.total }}{{ ns.seen }}",
     "6False"},
    {"set", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c = (3, 4) %}{% set p, q = c %}{{ p + q }}",
     "127"},
    {"set", "{% if true %}{% set inner = 'v' %}{% endif %}{{ inner }}",
     "v"},
    {"set", "{% set x %}got {{ 1 + 1 }}{% endset %}[{{ x }}]{% set y | upper %}up{% endset %}{{ y }}",
     "[got 2]UP"},
    {"set", "{% filter upper %}abc{{ 'd' }}{% endfilter %}",
     "ABCD"},
    {"macro", "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Bob') }} {{ greet('Al', greeting='Hi') }} {{ greet('X', 'Yo') }}",
     "Hello, Bob! Hi, Al! Yo, X!"},
    {"macro", "{% macro rec(n) %}{% if n > 0 %}{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(4) }}",
     "4321"},
    {"tests", "{{ xs is defined }}{{ nope is defined }}{{ nope is undefined }}{{ n is none }}{{ s is string }}{{ d is mapping }}{{ xs is iterable }}{{ 1 is iterable }}{{ s is sequence }}",
     "TrueFalseTrueTrueTrueTrueTrueFalseTrue"},
    {"tests", "{{ 1 is number }}{{ true is number }}{{ true is integer }}{{ 1 is integer }}{{ f is float }}{{ true is boolean }}{{ true is true }}{{ 0 is false }}{{ false is false }}",
     "TrueTrueFalseTrueTrueTrueTrueFalseTrue"},
    {"tests", "{{ 4 is even }}{{ 3 is odd }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(2) }}{{ 1 is eq 1 }}{{ 'x' is in 'xy' }}{{ n is not none }}{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ 6 is gt 5 }}",
     "TrueTrueTrueFalseTrueTrueFalseTrueTrueTrue"},
    {"filters", "[{{ '  a b \\n'|trim }}]{{ 'xxhixx'|trim('x') }}|{{ s|length }}{{ xs|count }}{{ d|length }}{{ nope|length }}|{{ 'hi'|upper }}{{ 'HI'|lower }}{{ 'hello-world (foo) bar'|title }}{{ 'hELLO'|capitalize }}",
     "[a b]hi|5320|HIhiHello-World (Foo) BarHello"},
    {"filters", "{{ nope|default('dflt') }}{{ ''|default('e', true) }}{{ ''|d('e') }}{{ n|default('x') }}",
     "dflteNone"},
    {"filters", "{{ xs|join(', ') }}|{{ xs|first }}{{ xs|last }}{{ 'abc'|list }}{{ d|list }}{{ xs|reverse|list }}{{ 'abc'|reverse }}[{{ e|first }}]",
     "1, 2, 3|13['a', 'b', 'c']['a', 'b'][3, 2, 1]cba[]"},
    {"filters", "{{ '3'|int + 1 }}{{ '3.7'|int }}{{ 'x'|int }}{{ 'x'|int(5) }}{{ 3.9|int }}{{ '2.5'|float }}{{ 3|float }}{{ 1|string ~ 2 }}",
     "430532.53.012"},
    {"filters", "{{ -3|abs }}{{ 2.5|round }}{{ 3.5|round }}{{ 1.23456|round(3) }}{{ 5|round }}{{ 2.1|round(0, 'ceil') }}",
     "32.04.01.23553.0"},
    {"filters", "{{ 'aXbX'|replace('X', 'y') }}{{ 'aaa'|replace('a', 'b', 2) }}{{ d|items|list }}{{ nope|items|list }}",
     "aybybba[('a', 1), ('b', [1, 2])][]"},
    {"filters", "{{ ns_list|selectattr('role', 'equalto', 'user')|map(attribute='n')|list }}{{ ns_list|rejectattr('role', 'equalto', 'user')|map(attribute='role')|join }}{{ xs|select('odd')|list }}{{ xs|reject('odd')|list }}{{ xs|map('string')|join('-') }}{{ ns_list|map(attribute='missing', default='z')|list }}",
     "[2]bot[1, 3][2]1-2-3['z', 'z']"},
    {"filters", "{{ ['b', 'A', 'a', 'c']|sort }}{{ ['b', 'A', 'a', 'c']|sort(case_sensitive=true) }}{{ xs|sort(reverse=true) }}{{ ns_list|sort(attribute='n')|map(attribute='role')|join }}{{ {'b': 1, 'a': 2}|dictsort }}{{ ['a', 'A', 'b', 'a']|unique|list }}{{ xs|sum }}{{ xs|max }}{{ xs|min }}",
     "['A', 'a', 'b', 'c']['A', 'a', 'b', 'c'][3, 2, 1]botuser[('a', 2), ('b', 1)]['a', 'b']631"},
    {"filters", "{{ '<a & b>'|e }}{{ 'x'|safe }}{{ '%s=%d'|format('k', 3) }}{{ 'a\\nb'|indent(2) }}|{{ 'one two  three'|wordcount }}",
     "&lt;a &amp; b&gt;xk=3a\n  b|3"},
    {"tojson", "{{ d|tojson }}{{ 'h\u00e9 \"q\"\\n\\t\\\\'|tojson }}{{ [1.0, 1e16, none, true]|tojson }}",
     "{\"a\": 1, \"b\": [1, 2]}\"h\u00e9 \\\"q\\\"\\n\\t\\\\\"[1.0, 1e+16, null, true]"},
    {"tojson", "{{ d|tojson(indent=2) }}|{{ {'b': 1, 'a': []}|tojson(indent=1, sort_keys=true) }}|{{ d|tojson(separators=(',', ':')) }}|{{ '\u00e9'|tojson(ensure_ascii=true) }}",
     "{\n  \"a\": 1,\n  \"b\": [\n    1,\n    2\n  ]\n}|{\n \"a\": [],\n \"b\": 1\n}|{\"a\":1,\"b\":[1,2]}|\"\\u00e9\""},
    {"strings", "{{ s[::-1] }}|{{ s[1:3] }}|{{ s[-2:] }}|{{ xs[::-1] }}{{ xs[1:] }}{{ xs[:-1] }}{{ xs[::2] }}|{{ s[1] }}{{ xs[-1] }}{{ xs.0 }}|{{ s[10:] }}|{{ xs[7] is defined }}",
     "oll\u00e9h|\u00e9l|lo|[3, 2, 1][2, 3][1, 2][1, 3]|\u00e931||False"},
    {"strings", "{{ '  a  '.strip() }}|{{ '  a  '.lstrip() }}|{{ '  a  '.rstrip() }}|{{ '\\n\\nx\\n'.strip('\\n') }}|{{ 'a,b,,c'.split(',') }}{{ ' a  b '.split() }}{{ 'a b c'.split(' ', 1) }}{{ 'a b c'.rsplit(' ', 1) }}",
     "a|a  |  a|x|['a', 'b', '', 'c']['a', 'b']['a', 'b c']['a b', 'c']"},
    {"strings", "{{ 'Hello'.startswith('He') }}{{ 'Hello'.endswith('lo') }}{{ 'Hello'.startswith(('x', 'H')) }}{{ 'hello world'.title() }}{{ 'hELLO'.capitalize() }}{{ 'x'.upper() }}{{ 'X'.lower() }}{{ 'aaa'.replace('a', 'b', 1) }}",
     "TrueTrueTrueHello WorldHelloXxbaa"},
    {"strings", "{{ 'a</think>b'.split('</think>')[-1] }}{{ '{} and {}'.format(1, 'b') }}{{ '-'.join(['a', 'b']) }}{{ 'abc'.find('c') }}{{ '12'.isdigit() }}{{ d.get('a') }}{{ d.get('zz', 'dflt') }}{{ d.get('zz') }}{{ d.keys()|list }}{{ d.values()|list }}",
     "b1 and ba-b2True1dfltNone['a', 'b'][1, [1, 2]]"},
    {"globals", "{{ range(3)|list }}{{ range(1, 10, 3)|list }}{{ range(5, 0, -2)|list }}{{ namespace(a=1).a }}{{ dict(k='v') }}",
     "[0, 1, 2][1, 4, 7][5, 3, 1]1{'k': 'v'}"},
};

static const error_case ERRORS[] = {
    {"{{ raise_exception('Roles must alternate') }}", LMC_ERR_INVALID_ARGUMENT, "Roles must alternate"},
    {"{{ nope.attr }}", LMC_ERR_INVALID_ARGUMENT, "'nope' is undefined"},
    {"{{ nope + 1 }}", LMC_ERR_INVALID_ARGUMENT, "'nope' is undefined"},
    {"{{ d.zz.yy }}", LMC_ERR_INVALID_ARGUMENT, "has no attribute 'zz'"},
    {"{{ 1 + 'a' }}", LMC_ERR_INVALID_ARGUMENT, "unsupported operand"},
    {"{% for x in 5 %}{% endfor %}", LMC_ERR_INVALID_ARGUMENT, "not iterable"},
    {"{{ xs.append(4) }}", LMC_ERR_INVALID_ARGUMENT, "unsafe"},
    {"{% set ns = 1 %}{% set ns.a = 2 %}", LMC_ERR_INVALID_ARGUMENT, "non-namespace"},
    {"{{ 1 / 0 }}", LMC_ERR_INVALID_ARGUMENT, "division by zero"},
    {"{{ d|tojson }}{{ nope|tojson }}", LMC_ERR_INVALID_ARGUMENT, "not JSON serializable"},
    {"{{ x", LMC_ERR_FORMAT, "line 1, column 3"},
    {"line 1\n{% if %}", LMC_ERR_FORMAT, "line 2"},
    {"{% for x in xs %}", LMC_ERR_FORMAT, "expected 'endfor'"},
    {"{{ a | nofilter }}", LMC_ERR_FORMAT, "no filter named 'nofilter'"},
    {"{{ a is notatest }}", LMC_ERR_FORMAT, "no test named 'notatest'"},
    {"{% endif %}", LMC_ERR_FORMAT, "unexpected 'endif'"},
    {"{{ 'abc }}", LMC_ERR_FORMAT, "unterminated string"},
    {"{# never closed", LMC_ERR_FORMAT, "missing end of comment"},
    {"{% include 'x' %}", LMC_ERR_FORMAT, "unknown tag 'include'"},
    {"{{ (1 }}", LMC_ERR_FORMAT, "unexpected"},
};

static jinja_template *parse_str(const char *src) { return jinja_parse(src, strlen(src)); }

/* Parses and renders tmpl with the shared variables; *out NULL on error. */
static lmc_status render(const char *tmpl, const char *vars, char **out) {
    *out = NULL;
    jinja_template *t = jinja_parse(tmpl, strlen(tmpl));
    if (!t) return lmc_last_status();
    jinja_ctx *c = jinja_ctx_new();
    lmc_status s = c ? LMC_OK : lmc_last_status();
    if (s == LMC_OK && vars) s = jinja_ctx_set_json_object(c, vars, strlen(vars), "vars");
    if (s == LMC_OK) s = jinja_render(c, t, out, NULL);
    jinja_ctx_free(c);
    jinja_template_free(t);
    return s;
}

static void test_cases(void) {
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char *out;
        lmc_status s = render(CASES[i].tmpl, VARS, &out);
        CHECKF(s == LMC_OK, "[%s] %s: %s", CASES[i].group, CASES[i].tmpl, lmc_last_error());
        if (s == LMC_OK)
            CHECKF(strcmp(out, CASES[i].expected) == 0, "[%s] %s\n  got      \"%s\"\n  expected \"%s\"", CASES[i].group,
                   CASES[i].tmpl, out, CASES[i].expected);
        free(out);
    }
}

static void test_errors(void) {
    for (size_t i = 0; i < sizeof ERRORS / sizeof ERRORS[0]; i++) {
        char *out;
        lmc_status s = render(ERRORS[i].tmpl, VARS, &out);
        CHECKF(s == ERRORS[i].status, "%s: status %s (%s), expected %s", ERRORS[i].tmpl, lmc_status_name(s),
               lmc_last_error(), lmc_status_name(ERRORS[i].status));
        CHECKF(out == NULL, "%s: output on error", ERRORS[i].tmpl);
        CHECKF(strstr(lmc_last_error(), ERRORS[i].message_part) != NULL, "%s: message \"%s\" lacks \"%s\"",
               ERRORS[i].tmpl, lmc_last_error(), ERRORS[i].message_part);
        free(out);
    }
}

/* strftime_now formats the render time; the context can pin it. */
static void test_strftime_now(void) {
    jinja_template *t = parse_str("{{ strftime_now('%Y-%m-%d') }}|{{ strftime_now('%d %b %Y') }}");
    CHECK(t != NULL);
    jinja_ctx *c = jinja_ctx_new();
    setenv("TZ", "UTC", 1);
    tzset();
    jinja_ctx_set_time(c, 1721952000); /* 2024-07-26 00:00:00 UTC */
    char *out = NULL;
    CHECK(jinja_render(c, t, &out, NULL) == LMC_OK);
    CHECK_STR(out, "2024-07-26|26 Jul 2024");
    free(out);
    jinja_ctx_free(c);
    jinja_template_free(t);
}

/* A context renders repeatedly; globals set later override earlier ones. */
static void test_context_reuse(void) {
    jinja_template *t = parse_str("{{ a }}-{{ b|default('none') }}");
    jinja_ctx *c = jinja_ctx_new();
    CHECK(jinja_ctx_set_str(c, "a", "x") == LMC_OK);
    char *out = NULL;
    CHECK(jinja_render(c, t, &out, NULL) == LMC_OK);
    CHECK_STR(out, "x-none");
    free(out);
    CHECK(jinja_ctx_set_json_object(c, "{\"a\": 1.50, \"b\": [true]}", 24, "vars") == LMC_OK);
    CHECK(jinja_render(c, t, &out, NULL) == LMC_OK);
    CHECK_STR(out, "1.5-[True]");
    free(out);
    CHECK(jinja_ctx_set_json_object(c, "[1]", 3, "vars") == LMC_ERR_INVALID_ARGUMENT);
    CHECK(jinja_ctx_set_json_object(c, "{\"a\": }", 7, "vars") == LMC_ERR_FORMAT);
    CHECK(strstr(lmc_last_error(), "vars: invalid JSON at line 1, column 7") != NULL);
    jinja_ctx_free(c);
    jinja_template_free(t);
}

/* Runaway templates stop with an error instead of exhausting memory or time. */
static void test_limits(void) {
    char *out = NULL;
    /* Output limit: 2^20 characters doubled repeatedly. */
    jinja_template *t = parse_str("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}");
    jinja_ctx *c = jinja_ctx_new();
    jinja_ctx_set_limits(c, 1 << 20, 0);
    CHECK(jinja_render(c, t, &out, NULL) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "output exceeds") != NULL);
    CHECK(out == NULL);
    jinja_template_free(t);
    /* Work limit: nested loops of 10^10 steps. */
    t = parse_str("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
    jinja_ctx_set_limits(c, 0, 1000000);
    CHECK(jinja_render(c, t, &out, NULL) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "work limit") != NULL);
    jinja_template_free(t);
    /* Unbounded macro recursion. */
    const char *rec = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
    t = jinja_parse(rec, strlen(rec));
    CHECK(jinja_render(c, t, &out, NULL) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "recursion too deep") != NULL);
    jinja_template_free(t);
    /* range() larger than the sandbox allows. */
    t = parse_str("{{ range(200000)|length }}");
    CHECK(jinja_render(c, t, &out, NULL) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "range too big") != NULL);
    jinja_template_free(t);
    jinja_ctx_free(c);
    /* Deeply nested expressions are a syntax error, not a stack overflow. */
    size_t depth = 5000;
    char *deep = malloc(2 * depth + 8);
    size_t k = 0;
    deep[k++] = '{';
    deep[k++] = '{';
    for (size_t i = 0; i < depth; i++) deep[k++] = '(';
    deep[k++] = '1';
    for (size_t i = 0; i < depth; i++) deep[k++] = ')';
    deep[k++] = '}';
    deep[k++] = '}';
    deep[k] = 0;
    CHECK(jinja_parse(deep, k) == NULL);
    CHECK(lmc_last_status() == LMC_ERR_FORMAT);
    free(deep);
}

/* Self-referencing and very deeply nested values neither crash nor hang. */
static void test_deep_values(void) {
    char *out = NULL;
    CHECK(render("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns.me.me is defined }}", NULL, &out) == LMC_OK);
    CHECK_STR(out, "True");
    free(out);
    const char *nest = "{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% endfor %}";
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s{{ ns.x|length }}{{ (ns.x ~ '')|length > 0 }}{{ ns.x == ns.x }}", nest);
    CHECK(render(tmpl, NULL, &out) == LMC_OK);
    CHECK_STR(out, "1TrueTrue");
    free(out);
    snprintf(tmpl, sizeof tmpl, "%s{{ ns.x|tojson }}", nest);
    CHECK(render(tmpl, NULL, &out) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "nested too deeply") != NULL);
    CHECK(render("{{ (-1) ** 3 }} {{ (-1) ** 4 }} {{ 0 ** 0 }} {{ 3 ** 3 }} {{ 2 ** 70 }}", NULL, &out) == LMC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lmc_last_error(), "integer overflow") != NULL);
    CHECK(render("{{ (-1) ** 3 }} {{ (-1) ** 4 }} {{ 0 ** 0 }} {{ 3 ** 3 }}", NULL, &out) == LMC_OK);
    CHECK_STR(out, "-1 1 1 27");
    free(out);
}

/* Mutated and truncated versions of a real-world-like template never crash:
 * each either renders or reports an error. */
static void test_mutations(void) {
    static const char base[] =
        "{%- set ns = namespace(last=messages|length - 1) %}\n"
        "{%- for message in messages[::-1] %}{% if message.role == 'user' %}{% set ns.last = loop.index0 %}{% endif %}{% endfor %}\n"
        "{%- for message in messages %}\n"
        "    {%- if message['content'] is string %}{{ '<' + message.role + '>\\n' + message.content | trim }}\n"
        "    {%- else %}{% for part in message.content %}{{ part.text }}{% endfor %}{% endif %}\n"
        "    {%- if message.tool_calls %}{{ message.tool_calls | tojson(indent=2) }}{% endif %}\n"
        "{%- endfor %}\n"
        "{%- if add_generation_prompt %}{{ '<assistant>' }}{% endif %}";
    const char *vars =
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": [{\"type\": "
        "\"text\", \"text\": \"yo\"}], \"tool_calls\": [{\"name\": \"f\"}]}], \"add_generation_prompt\": true}";
    char *out = NULL;
    CHECK(render(base, vars, &out) == LMC_OK);
    CHECK_STR(out, "<user>\nhiyo[\n  {\n    \"name\": \"f\"\n  }\n]<assistant>");
    free(out);
    const char alphabet[] = "{}%#-+()[]|.'\" \nabcis=~*";
    size_t n = sizeof base - 1;
    char *buf = malloc(n + 1);
    uint32_t seed = 12345;
    int ok = 0, failed = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(buf, base, n + 1);
        size_t len = n;
        int edits = 1 + iter % 4;
        for (int e = 0; e < edits; e++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % len;
            seed = seed * 1103515245u + 12345u;
            if (iter % 7 == 0) len = pos; /* truncate */
            else buf[pos] = alphabet[(seed >> 8) % (sizeof alphabet - 1)];
            if (len == 0) break;
        }
        buf[len] = 0;
        lmc_status s = render(buf, vars, &out);
        if (s == LMC_OK) ok++;
        else {
            failed++;
            CHECKF(s == LMC_ERR_FORMAT || s == LMC_ERR_INVALID_ARGUMENT, "status %s for mutated template", lmc_status_name(s));
            CHECK(lmc_last_error()[0] != 0);
        }
        free(out);
    }
    CHECK(ok > 0 && failed > 0);
    free(buf);
}

int main(void) {
    RUN(test_cases);
    RUN(test_errors);
    RUN(test_strftime_now);
    RUN(test_context_reuse);
    RUN(test_limits);
    RUN(test_deep_values);
    RUN(test_mutations);
    return TEST_REPORT();
}
