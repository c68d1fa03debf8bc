/* lmc/lmc.h — the whole public API of lmc.
 *
 *   base.h           status codes and messages, dtypes, memory, threads, CPU info
 *   array.h          arrays, reference counting, scopes
 *   ops.h            operations on arrays
 *   safetensors.h    reading and writing safetensors files and checkpoints
 *   tokenizer.h      Hugging Face tokenizer.json encode/decode, streaming detokeniser
 *   chat_template.h  rendering chat templates
 *   model.h          loading models, generation, chat, metrics, discovery, backends
 */
#ifndef LMC_LMC_H
#define LMC_LMC_H

#include "lmc/base.h"
#include "lmc/array.h"
#include "lmc/ops.h"
#include "lmc/safetensors.h"
#include "lmc/tokenizer.h"
#include "lmc/chat_template.h"
#include "lmc/model.h"
#include "lmc/nn.h"

#endif
