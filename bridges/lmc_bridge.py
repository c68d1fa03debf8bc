"""The bridge side of lmc's subprocess protocol (docs/subprocess-protocol.md).

A bridge is a program that lmc starts with pipes on stdin, stdout and stderr.
It reads one JSON request per line on stdin and writes one JSON message per
line on stdout; everything else it has to say goes to stderr (lmc keeps the
last 8 KiB and quotes it in its errors). This module is that protocol, written
once for every bridge in this folder, with the Python standard library only:

  * the stdout guard: the protocol gets a private copy of file descriptor 1
    and fd 1 itself is pointed at stderr, so a library that prints (progress
    bars, warnings) cannot corrupt the protocol stream;
  * a reader thread, so that a "cancel" is seen while a generation runs (it
    sets a flag that the generation loop checks before every token);
  * the generation loop with lmc's stop rules: EOS ids, stop tokens, stop
    strings (text that might begin one is held back until it cannot),
    max_tokens and the context length; text is only released in whole UTF-8
    characters.

A bridge supplies a load function returning a Model (see the class below)
and calls Server(...).run().
"""
import json
import os
import queue
import sys
import threading
import time
import traceback

PROTOCOL = 1


class BridgeError(Exception):
    """An error reply: message and code ("invalid_argument", "not_found",
    "unsupported", "out_of_memory", "format" or "error")."""

    def __init__(self, message, code="error"):
        super().__init__(message)
        self.code = code


class Model:
    """What a bridge implements; the server does the protocol and stop rules."""

    def info(self):
        """dict: architecture, vocab_size, num_layers, hidden_size, ... (docs)."""
        raise NotImplementedError

    def context_length(self):
        """The model's context length (0 when unbounded or unknown)."""
        return 0

    def encode(self, text, add_special_tokens):
        raise NotImplementedError

    def chat_ids(self, messages):
        """Prompt ids for [{"role", "content"}] with the assistant's turn opened."""
        raise NotImplementedError

    def decode(self, ids):
        """Text of ids (special tokens skipped); an incomplete UTF-8 character at
        the end decodes to U+FFFD, which the server holds back."""
        raise NotImplementedError

    def eos_ids(self):
        return set()

    def tokens(self, prompt_ids, sampling):
        """Generator of the next token ids after prompt_ids, without end; the
        server stops pulling (and closes it) when generation ends."""
        raise NotImplementedError

    def metrics(self):
        """Extra metrics for the done message, e.g. peak_memory_bytes."""
        return {}


def _held_back(text, stops):
    """How many trailing characters of text could begin one of the stop strings."""
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:k]):
                hold = k
                break
    return hold


class Server:
    def __init__(self, name, version, load):
        self.name = name
        self.version = version
        self.load_fn = load
        self.model = None
        self.context = 0
        # Protocol output on a private copy of fd 1; fd 1 itself now goes to stderr.
        sys.stdout.flush()
        self._out = os.fdopen(os.dup(1), "w", encoding="utf-8", errors="replace", newline="\n")
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._out_lock = threading.Lock()
        self._queue = queue.Queue()
        self._cancel_lock = threading.Lock()
        self._cancelled = set()

    # --- output -------------------------------------------------------------

    def send(self, obj):
        line = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        self.write_raw(line + "\n")

    def write_raw(self, text):
        with self._out_lock:
            self._out.write(text)
            self._out.flush()

    def log(self, *args):
        print(f"{self.name}:", *args, file=sys.stderr, flush=True)

    def exit(self, status=0):
        """Ends the bridge process. os._exit, because the reader thread may sit in a
        read of stdin, and Python aborts (SIGABRT) when it finalises under it."""
        for f in (self._out, sys.stderr):
            try:
                f.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)

    # --- input ----------------------------------------------------------------

    def _reader(self):
        for raw in sys.stdin.buffer:
            try:
                msg = json.loads(raw)
            except ValueError:
                self._queue.put(("bad", raw[:200]))
                continue
            if isinstance(msg, dict) and msg.get("type") == "cancel":
                with self._cancel_lock:
                    self._cancelled.add(msg.get("id"))
                self.on_cancel_message(msg)
                continue
            self._queue.put(("msg", msg))
        self._queue.put(("eof", None))

    def is_cancelled(self, rid):
        with self._cancel_lock:
            return rid in self._cancelled

    def on_cancel_message(self, msg):
        """Called on the reader thread when a cancel arrives (a hook for tests)."""

    def on_cancelled(self, rid, n_tokens):
        """Called when a generation stops because of a cancel (a hook for tests)."""

    # --- the loop -------------------------------------------------------------

    def run(self):
        threading.Thread(target=self._reader, daemon=True).start()
        while True:
            kind, msg = self._queue.get()
            if kind == "eof":
                break
            if kind == "bad":
                self.send({"type": "error", "id": 0, "code": "format",
                           "message": f"malformed request line: {msg!r}"})
                continue
            rid = msg.get("id") if isinstance(msg, dict) else None
            kind = msg.get("type") if isinstance(msg, dict) else None
            handler = getattr(self, f"on_{kind}", None) if isinstance(kind, str) else None
            if not isinstance(rid, int) or isinstance(rid, bool) or rid <= 0:
                self.send({"type": "error", "id": 0, "code": "format",
                           "message": f"request without a positive integer id: {json.dumps(msg)[:200]}"})
                continue
            if handler is None:
                self.send({"type": "error", "id": rid, "code": "unsupported",
                           "message": f"unknown request type {kind!r}"})
                continue
            try:
                if handler(rid, msg) == "exit":
                    break
            except BridgeError as e:
                self.send({"type": "error", "id": rid, "code": e.code, "message": str(e)})
            except MemoryError as e:
                self.send({"type": "error", "id": rid, "code": "out_of_memory", "message": f"{kind}: {e!r}"})
            except Exception as e:  # the bridge stays up; the traceback goes to stderr
                traceback.print_exc(file=sys.stderr)
                sys.stderr.flush()
                self.send({"type": "error", "id": rid, "code": "error",
                           "message": f"{kind}: {type(e).__name__}: {e}"})
            finally:
                with self._cancel_lock:
                    self._cancelled.discard(rid)

    # --- requests -------------------------------------------------------------

    def on_hello(self, rid, msg):
        self.send({"type": "hello", "id": rid, "protocol": PROTOCOL, "bridge": self.name, "version": self.version})

    def on_load(self, rid, msg):
        path = msg.get("model")
        if not isinstance(path, str) or not path:
            raise BridgeError("load: missing \"model\" (a model folder)", "invalid_argument")
        options = msg.get("options") or {}
        self.model = self.load_fn(path, options)
        ctx = self.model.context_length() or 0
        want = int(options.get("context_length") or 0)
        self.context = min(ctx, want) if ctx and want else (ctx or want)
        self.send({"type": "loaded", "id": rid, "info": self.model.info()})

    def _need_model(self, what):
        if self.model is None:
            raise BridgeError(f"{what}: no model loaded", "invalid_argument")
        return self.model

    def on_info(self, rid, msg):
        self.send({"type": "info", "id": rid, "info": self._need_model("info").info()})

    def on_shutdown(self, rid, msg):
        self.send({"type": "bye", "id": rid})
        return "exit"

    def on_generate(self, rid, msg):
        model = self._need_model("generate")
        if "prompt_ids" in msg:
            ids = msg["prompt_ids"]
            if not isinstance(ids, list) or not all(isinstance(i, int) and i >= 0 for i in ids):
                raise BridgeError("generate: prompt_ids must be a list of token ids", "invalid_argument")
        elif isinstance(msg.get("prompt"), str):
            ids = model.encode(msg["prompt"], bool(msg.get("add_special_tokens", True)))
        else:
            raise BridgeError("generate: give \"prompt\" (text) or \"prompt_ids\"", "invalid_argument")
        self.generate(rid, msg, list(ids))

    def on_chat(self, rid, msg):
        model = self._need_model("chat")
        messages = msg.get("messages")
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages):
            raise BridgeError("chat: \"messages\" must be a non-empty list of {role, content}", "invalid_argument")
        self.generate(rid, msg, list(model.chat_ids(messages)))

    # --- generation -------------------------------------------------------------

    def generate(self, rid, msg, prompt_ids):
        model = self.model
        max_tokens = msg.get("max_tokens", 256)
        if not isinstance(max_tokens, int) or max_tokens < 0:
            raise BridgeError("max_tokens must be an integer >= 0", "invalid_argument")
        if not prompt_ids:
            raise BridgeError("the prompt is empty (no token ids)", "invalid_argument")
        # Checked for every prompt (a template or tokenizer may know more ids than
        # the model): an id out of range would crash a GPU kernel.
        vocab = int(model.info().get("vocab_size") or 0)
        for i, t in enumerate(prompt_ids):
            if vocab and not 0 <= t < vocab:
                raise BridgeError(f"prompt token id {t} at index {i} is outside the vocabulary (0..{vocab - 1})",
                                  "invalid_argument")
        if self.context and len(prompt_ids) >= self.context:
            raise BridgeError(f"the prompt ({len(prompt_ids)} tokens) does not fit the context length {self.context}",
                              "invalid_argument")
        sampling = msg.get("sampling") or {}
        stops = [s for s in (msg.get("stop_strings") or []) if isinstance(s, str) and s]
        stop_tokens = set(msg.get("stop_tokens") or [])
        eos = set() if msg.get("ignore_eos") else set(model.eos_ids())
        max_stop = max((len(s) for s in stops), default=0)

        t0 = time.monotonic()
        t_first = None
        ids, sent, reason = [], 0, None
        text = ""
        gen = model.tokens(prompt_ids, sampling)
        try:
            while reason is None:
                if self.is_cancelled(rid):
                    reason = "cancelled"
                elif len(ids) >= max_tokens:
                    reason = "max_tokens"
                elif self.context and len(prompt_ids) + len(ids) >= self.context:
                    reason = "context"
                if reason:
                    break
                tok = next(gen)
                if t_first is None:
                    t_first = time.monotonic()
                if self.is_cancelled(rid):
                    reason = "cancelled"
                elif tok in eos:
                    reason = "eos"
                elif tok in stop_tokens:
                    reason = "stop_token"
                if reason:
                    break
                ids.append(tok)
                text = model.decode(ids)
                cut = self._find_stop(text, stops, max(0, sent - max_stop))
                if cut is not None:
                    self.send({"type": "token", "id": rid, "token": tok, "text": text[sent:cut]})
                    sent, text, reason = cut, text[:cut], "stop_string"
                    break
                stable = len(text)
                while stable > sent and text[stable - 1] == "\ufffd":
                    stable -= 1  # an incomplete UTF-8 character so far
                upto = max(sent, stable - _held_back(text[:stable], stops))
                self.send({"type": "token", "id": rid, "token": tok, "text": text[sent:upto]})
                sent = upto
        finally:
            gen.close()
        if reason == "cancelled":
            self.on_cancelled(rid, len(ids))
        end = len(text)
        if reason != "stop_string":
            cut = self._find_stop(text, stops, max(0, sent - max_stop))
            if cut is not None:
                end, reason = cut, "stop_string"
        t_end = time.monotonic()
        metrics = {"prompt_tokens": len(prompt_ids), "generated_tokens": len(ids),
                   "prefill_seconds": (t_first or t_end) - t0,
                   "decode_seconds": t_end - (t_first or t_end)}
        metrics.update(model.metrics())
        self.send({"type": "done", "id": rid, "stop_reason": reason, "text": text[sent:end], "metrics": metrics})

    @staticmethod
    def _find_stop(text, stops, start):
        best = None
        for s in stops:
            i = text.find(s, start)
            if i >= 0 and (best is None or i < best):
                best = i
        return best
