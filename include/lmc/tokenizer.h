/* lmc/tokenizer.h — Hugging Face tokenizer.json tokenizers.
 *
 * Encoding gives exactly the ids of the Hugging Face `tokenizers` library
 * (Tokenizer.encode) for the same tokenizer.json; decoding gives exactly the
 * text of transformers' (version 5) `tokenizer.decode`: the decoder chain,
 * special tokens dropped when skipping. transformers 5 ignores
 * clean_up_tokenization_spaces for BPE tokenizers, so lmc applies that
 * clean-up only when tokenizer_config.json also sets
 * clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output,
 * as transformers does. Supported: BPE models; normalizers NFC, NFD, NFKC,
 * NFKD, Lowercase, Replace, Prepend, Strip, Sequence; pre-tokenizers Split,
 * ByteLevel, Metaspace, Digits, Punctuation, Whitespace, WhitespaceSplit,
 * Sequence; post-processors TemplateProcessing, ByteLevel, BertProcessing,
 * RobertaProcessing, Sequence; decoders ByteLevel, Replace, ByteFallback,
 * Fuse, Strip, Metaspace, Sequence. Anything else fails to load with
 * LMC_ERR_UNSUPPORTED naming the component. Truncation and padding settings
 * in tokenizer.json are ignored (they apply to batches, which lmc does not
 * build here).
 *
 * Input text that is not valid UTF-8 is not rejected: each invalid byte
 * sequence is replaced by U+FFFD first (as Python's
 * bytes.decode("utf-8", "replace") would), and the result is tokenised.
 *
 * A loaded tokenizer is immutable apart from an internal, locked cache, so
 * any number of threads may encode and decode with it at once.
 */
#ifndef LMC_TOKENIZER_H
#define LMC_TOKENIZER_H

#include "lmc/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lmc_tokenizer lmc_tokenizer;

/* Loads DIR/tokenizer.json, plus DIR/tokenizer_config.json, DIR/config.json,
 * DIR/generation_config.json and DIR/chat_template.jinja when present (for
 * BOS, EOS, pad, the chat template and clean_up_tokenization_spaces).
 * What parsing tokenizer.json builds is kept in a cache file, read back by
 * the next load of the same unchanged file: in $LMC_CACHE_DIR, else
 * $XDG_CACHE_HOME/lmc, else $HOME/.cache/lmc (LMC_CACHE_DIR=off: no cache).
 * The cache never changes the result: a missing, stale or damaged cache
 * file, or one that cannot be written, only means parsing the JSON. */
LMC_API lmc_status lmc_tokenizer_load(const char *dir, lmc_tokenizer **out);

/* Loads one tokenizer.json file on its own (no config files). */
LMC_API lmc_status lmc_tokenizer_load_file(const char *tokenizer_json, lmc_tokenizer **out);

/* Loads from a tokenizer.json document in memory; config_json may be NULL or a
 * tokenizer_config.json document. tokenizer.json must be valid JSON (RFC
 * 8259, UTF-8, nothing after the document): errors name the byte offset. */
LMC_API lmc_status lmc_tokenizer_load_json(const char *tokenizer_json, size_t len, const char *config_json,
                                           lmc_tokenizer **out);

/* Frees a tokenizer (NULL is fine). */
LMC_API void lmc_tokenizer_free(lmc_tokenizer *tok);

/* Encodes text[0..len) into a new array *ids of *n ids (free it with
 * lmc_tokenizer_free_ids). add_special applies the post-processor's special
 * tokens (e.g. BOS), as add_special_tokens=True does in HF. */
LMC_API lmc_status lmc_tokenizer_encode(const lmc_tokenizer *tok, const char *text, size_t len, bool add_special,
                                        int32_t **ids, size_t *n);

/* Frees an id array from lmc_tokenizer_encode. */
LMC_API void lmc_tokenizer_free_ids(int32_t *ids);

/* Decodes ids into a new NUL-terminated string *text (free it with
 * lmc_tokenizer_free_text); *len, when not NULL, gets its byte length (the
 * text itself may hold NUL bytes). Ids that are not in the vocabulary are
 * skipped, as HF does. skip_special drops special tokens. */
LMC_API lmc_status lmc_tokenizer_decode(const lmc_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                                        char **text, size_t *len);

/* The bytes token id stands for, into a new buffer *bytes (NUL-terminated;
 * *len, when not NULL, gets the byte count): its text decoded alone, as
 * lmc_tokenizer_decode gives it with special tokens kept and no clean-up of
 * spaces, except that bytes which are not whole UTF-8 characters — a
 * byte-level or <0xNN> token holding part of a character — are kept as they
 * are instead of becoming U+FFFD. So the bytes of a byte-level BPE
 * tokenization's tokens add up to the text. Unknown ids give no bytes. Free
 * with lmc_tokenizer_free_text. */
LMC_API lmc_status lmc_tokenizer_token_bytes(const lmc_tokenizer *tok, int32_t id, char **bytes, size_t *len);

/* Frees a string from lmc_tokenizer_decode or lmc_tokenizer_token_bytes. */
LMC_API void lmc_tokenizer_free_text(char *text);

/* 1 + the largest id of the vocabulary or of an added token. */
LMC_API size_t lmc_tokenizer_vocab_size(const lmc_tokenizer *tok);

/* The id of a token string (added tokens first, then the model's
 * vocabulary), or -1 when there is none. */
LMC_API int32_t lmc_tokenizer_token_to_id(const lmc_tokenizer *tok, const char *token);

/* The token string of an id (owned by the tokenizer), or NULL when there is none.
 * A token holding a NUL byte (JSON's \u0000; no real tokenizer has one) reads
 * as the string before it. */
LMC_API const char *lmc_tokenizer_id_to_token(const lmc_tokenizer *tok, int32_t id);

/* True when id is a special added token. */
LMC_API bool lmc_tokenizer_is_special(const lmc_tokenizer *tok, int32_t id);

/* The BOS id (tokenizer_config.json bos_token, else config.json
 * bos_token_id), or -1 when there is none. */
LMC_API int32_t lmc_tokenizer_bos(const lmc_tokenizer *tok);

/* All EOS ids: generation_config.json eos_token_id, then config.json's, then
 * tokenizer_config.json's eos_token, without repeats. *ids is owned by the
 * tokenizer. Returns the count. */
LMC_API size_t lmc_tokenizer_eos(const lmc_tokenizer *tok, const int32_t **ids);

/* True when id is one of the EOS ids. */
LMC_API bool lmc_tokenizer_is_eos(const lmc_tokenizer *tok, int32_t id);

/* The pad id (tokenizer_config.json pad_token, else generation_config.json
 * or config.json pad_token_id), or -1 when there is none. */
LMC_API int32_t lmc_tokenizer_pad(const lmc_tokenizer *tok);

/* The chat template (chat_template.jinja, else tokenizer_config.json's
 * chat_template string, or its entry named "default"), or NULL when none. */
LMC_API const char *lmc_tokenizer_chat_template(const lmc_tokenizer *tok);

/* The bos_token / eos_token / pad_token strings of tokenizer_config.json, or
 * NULL when absent. */
LMC_API const char *lmc_tokenizer_bos_token(const lmc_tokenizer *tok);
LMC_API const char *lmc_tokenizer_eos_token(const lmc_tokenizer *tok);
LMC_API const char *lmc_tokenizer_pad_token(const lmc_tokenizer *tok);

/* Streaming detokeniser: feed ids one at a time and get the newly completed
 * text. The concatenation of everything fed and flushed equals
 * lmc_tokenizer_decode of all the ids fed since creation (or since the last
 * flush); no output ends in half a UTF-8 character. Text that later ids could
 * still change (an unfinished byte sequence, a space that clean-up might
 * remove) is held back until it is settled or flushed. */
typedef struct lmc_detokenizer lmc_detokenizer;

/* Creates a detokeniser over tok (which must outlive it). */
LMC_API lmc_status lmc_detokenizer_create(const lmc_tokenizer *tok, bool skip_special, lmc_detokenizer **out);

/* Feeds one id. *text (owned by the detokeniser, valid until its next call)
 * gets the new text and *len its length, possibly 0. */
LMC_API lmc_status lmc_detokenizer_feed(lmc_detokenizer *d, int32_t id, const char **text, size_t *len);

/* Emits all text still held back and starts a new stream. */
LMC_API lmc_status lmc_detokenizer_flush(lmc_detokenizer *d, const char **text, size_t *len);

/* Frees a detokeniser (NULL is fine). */
LMC_API void lmc_detokenizer_free(lmc_detokenizer *d);

#ifdef __cplusplus
}
#endif
#endif
