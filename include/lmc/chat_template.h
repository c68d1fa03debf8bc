/* lmc/chat_template.h — render a model's chat template into a prompt.
 *
 * Hugging Face checkpoints describe their conversation format as a Jinja
 * template (tokenizer_config.json's "chat_template"). lmc interprets the
 * template itself and renders it exactly as transformers' apply_chat_template
 * does (jinja2 with trim_blocks, lstrip_blocks, loop controls, the globals
 * raise_exception and strftime_now, and a tojson that keeps non-ASCII text).
 *
 * Messages are a JSON array of objects such as
 *   [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}]
 * where content may also be a list of parts ({"type": "text", "text": ...});
 * other keys (tool_calls, reasoning_content, ...) reach the template as is.
 *
 * Rendered strings are malloc'd; release them with free().
 */
#ifndef LMC_CHAT_TEMPLATE_H
#define LMC_CHAT_TEMPLATE_H

#include "lmc/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lmc_chat_template_options {
    /* Append the header that opens the assistant's turn (default false). */
    bool add_generation_prompt;
    /* Special-token strings seen by the template as bos_token / eos_token.
     * NULL: undefined for lmc_chat_template_render; the tokenizer folder's
     * own tokens for lmc_chat_template_apply. */
    const char *bos_token;
    const char *eos_token;
    /* NULL or a JSON object whose keys become template variables, e.g.
     * {"enable_thinking": false, "date_string": "26 Jul 2024", "tools": [...]}.
     * They override everything else of the same name. */
    const char *extra_json;
} lmc_chat_template_options;

/* Defaults: no generation prompt, no special tokens, no extra variables. */
LMC_API lmc_chat_template_options lmc_chat_template_options_default(void);

/* Renders template source tmpl for the messages (a JSON array) into *out.
 * `tools` and `documents` are None unless extra_json sets them. Errors:
 * LMC_ERR_FORMAT for a template syntax error or malformed JSON (with line and
 * column), LMC_ERR_INVALID_ARGUMENT for an error raised while rendering
 * (raise_exception in the template, an undefined value used, a type error),
 * with the message in lmc_last_error(). opt may be NULL for the defaults. */
LMC_API lmc_status lmc_chat_template_render(const char *tmpl, const char *messages_json,
                                            const lmc_chat_template_options *opt, char **out);

/* A chat template loaded from a tokenizer folder, parsed once, reusable. */
typedef struct lmc_chat_template lmc_chat_template;

/* Loads the chat template of the tokenizer folder dir: chat_template.jinja
 * when present, else tokenizer_config.json's "chat_template" (a string, or a
 * list of {"name", "template"} of which "default" is used), else
 * chat_template.json. The special tokens (bos_token, eos_token, unk_token,
 * pad_token, ..., additional_special_tokens; strings or {"content": ...})
 * come from tokenizer_config.json. LMC_ERR_NOT_FOUND when the folder has no
 * chat template, LMC_ERR_IO / LMC_ERR_FORMAT for unreadable or malformed files. */
LMC_API lmc_status lmc_chat_template_load(const char *dir, lmc_chat_template **out);

/* Renders the loaded template as lmc_chat_template_render does, with the
 * folder's special tokens unless opt names others. */
LMC_API lmc_status lmc_chat_template_apply(const lmc_chat_template *t, const char *messages_json,
                                           const lmc_chat_template_options *opt, char **out);

/* The template source (owned by t). */
LMC_API const char *lmc_chat_template_source(const lmc_chat_template *t);

/* The folder's bos_token / eos_token, or NULL when it has none (owned by t). */
LMC_API const char *lmc_chat_template_bos_token(const lmc_chat_template *t);
LMC_API const char *lmc_chat_template_eos_token(const lmc_chat_template *t);

LMC_API void lmc_chat_template_free(lmc_chat_template *t);

#ifdef __cplusplus
}
#endif
#endif
