/* lmc/lmc.h — the whole public API of lmc.
 *
 *   base.h           status codes and messages, dtypes, memory, threads, CPU info
 *   array.h          arrays, reference counting, scopes
 *   ops.h            operations on arrays
 *   safetensors.h    reading and writing safetensors files and checkpoints
 *   tokenizer.h      Hugging Face tokenizer.json encode/decode, streaming detokeniser
 *   chat_template.h  rendering chat templates
 *   model.h          loading models, generation, chat, metrics, discovery, backends
 *   nn.h             Linear and Embedding layers (float and quantised)
 *   train.h          autograd, losses, AdamW, learning-rate schedules
 *   lora.h           LoRA adapters: attach, loss and gradients, PEFT files, merge
 *   finetune.h       training data (JSONL) and the LoRA training loop
 *   server.h         an OpenAI-compatible HTTP server for a model
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
#include "lmc/train.h"
#include "lmc/lora.h"
#include "lmc/finetune.h"
#include "lmc/server.h"

#endif
