#!/usr/bin/env python3
"""A mock bridge for lmc's subprocess backend: the real protocol (lmc_bridge.py)
around a fake, deterministic model, plus the faults lmc must survive. Python 3
standard library only; lmc's tests (tests/test_subprocess.c) drive it.

The fake model: token ids are bytes + 3 (0 pad, 1 BOS, 2 EOS; vocabulary 259).
encode(text) = [BOS if add_special_tokens] + [b + 3 for each UTF-8 byte].
Generation echoes the prompt's bytes (ids >= 3) in order, then EOS, and with
EOS ignored starts over. Chat renders "<|role|>content\\n" per message plus
"<|assistant|>" and echoes that. Sampling options are accepted and ignored.

Environment:
  MOCK_BRIDGE_FAULT        one of the faults below (default: none)
  MOCK_BRIDGE_FAULT_AFTER  tokens generated before a mid-stream fault (default 2)
  MOCK_BRIDGE_DELAY        seconds to wait before each token (default 0)
  MOCK_BRIDGE_CONTEXT      the fake model's context length (default 4096)
  MOCK_BRIDGE_LOG          a file to which every request received is appended as
                           one JSON line, plus {"event": "cancelled", "id": N,
                           "tokens": K} when a generation stops for a cancel

Faults:
  fail_start        exit 1 at once, before the handshake, with a message on stderr
  hang_start        never answer the handshake
  bad_version       answer the handshake with protocol version 99
  exit_early        exit with status 3 on "load", without a reply
  noise             write a progress line on stdout before the load reply
  unexpected        answer "info" with a message of an unknown type
  error_generate    answer generate and chat with an error reply (the bridge stays up)
  stderr_flood      write 200 KiB on stderr while loading, then work normally
  crash_mid_stream  after N tokens, kill itself with SIGSEGV
  hang_mid_stream   after N tokens, stop answering
  malformed         after N tokens, write a line of broken JSON
  oversized         after N tokens, write a 17 MiB line
  ignore_cancel     never stop for a cancel (and keep generating, slowly)
  stubborn          ignore shutdown, end of input and SIGTERM
"""
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lmc_bridge import BridgeError, Model, Server  # noqa: E402

FAULT = os.environ.get("MOCK_BRIDGE_FAULT", "")
FAULT_AFTER = int(os.environ.get("MOCK_BRIDGE_FAULT_AFTER", "2"))
DELAY = float(os.environ.get("MOCK_BRIDGE_DELAY", "0"))
CONTEXT = int(os.environ.get("MOCK_BRIDGE_CONTEXT", "4096"))
LOG = os.environ.get("MOCK_BRIDGE_LOG")
FAULTS = {"", "fail_start", "hang_start", "bad_version", "exit_early", "noise", "unexpected", "error_generate",
          "stderr_flood", "crash_mid_stream", "hang_mid_stream", "malformed", "oversized", "ignore_cancel",
          "stubborn"}
BOS, EOS, OFFSET = 1, 2, 3
_log_lock = threading.Lock()


def log(obj):
    if LOG:
        with _log_lock, open(LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps(obj) + "\n")


def hang():
    while True:
        time.sleep(3600)


class MockModel(Model):
    def __init__(self, server):
        self.server = server

    def info(self):
        return {"architecture": "mock", "vocab_size": 256 + OFFSET, "num_layers": 1, "hidden_size": 8,
                "num_heads": 1, "num_kv_heads": 1, "head_dim": 8, "context_length": CONTEXT,
                "num_parameters": 0, "weight_bytes": 0, "dtype": "none"}

    def context_length(self):
        return CONTEXT

    def encode(self, text, add_special_tokens):
        return ([BOS] if add_special_tokens else []) + [b + OFFSET for b in text.encode("utf-8")]

    def chat_ids(self, messages):
        text = "".join(f"<|{m['role']}|>{m['content']}\n" for m in messages) + "<|assistant|>"
        return self.encode(text, True)

    def decode(self, ids):
        return bytes(i - OFFSET for i in ids if i >= OFFSET).decode("utf-8", errors="replace")

    def eos_ids(self):
        return {EOS}

    def tokens(self, prompt_ids, sampling):
        content = [i for i in prompt_ids if i >= OFFSET]
        n = 0
        while True:
            for tok in content + [EOS]:
                if n == FAULT_AFTER:
                    self.fault_mid_stream()
                if DELAY:
                    time.sleep(DELAY)
                n += 1
                yield tok

    def fault_mid_stream(self):
        if FAULT == "crash_mid_stream":
            print("Traceback (most recent call last):\n  File \"mock_bridge.py\", in tokens\n"
                  "mock bridge: simulated crash (fault crash_mid_stream)", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGSEGV)
        elif FAULT == "hang_mid_stream":
            print("mock bridge: hanging (fault hang_mid_stream)", file=sys.stderr, flush=True)
            hang()
        elif FAULT == "malformed":
            self.server.write_raw('{"type":"token","id":3,"token":\n')
            hang()
        elif FAULT == "oversized":
            self.server.write_raw('{"type":"token","text":"' + "x" * (17 << 20) + '"}\n')
            hang()


class MockServer(Server):
    def on_hello(self, rid, msg):
        log(msg)
        if FAULT == "hang_start":
            hang()
        if FAULT == "bad_version":
            self.send({"type": "hello", "id": rid, "protocol": 99, "bridge": "mock"})
            return None
        return super().on_hello(rid, msg)

    def on_load(self, rid, msg):
        log(msg)
        if FAULT == "exit_early":
            print("mock bridge: giving up before loading (fault exit_early)", file=sys.stderr, flush=True)
            os._exit(3)
        if FAULT == "stderr_flood":
            for i in range(200):
                print(f"flood line {i:04d} " + "." * 1000, file=sys.stderr)
            print("mock bridge: end of stderr flood", file=sys.stderr, flush=True)
        if FAULT == "noise":
            self.write_raw("Loading checkpoint shards: 100%|##########| 2/2\n")
        return super().on_load(rid, msg)

    def on_info(self, rid, msg):
        log(msg)
        if FAULT == "unexpected":
            self.send({"type": "banana", "id": rid})
            return None
        return super().on_info(rid, msg)

    def on_generate(self, rid, msg):
        log(msg)
        if FAULT == "error_generate":
            print("mock bridge: simulated model error", file=sys.stderr, flush=True)
            raise BridgeError("generate: simulated model error (fault error_generate)", "invalid_argument")
        return super().on_generate(rid, msg)

    def on_chat(self, rid, msg):
        log(msg)
        if FAULT == "error_generate":
            raise BridgeError("chat: simulated model error (fault error_generate)", "invalid_argument")
        return super().on_chat(rid, msg)

    def on_shutdown(self, rid, msg):
        log(msg)
        if FAULT == "stubborn":
            return None
        return super().on_shutdown(rid, msg)

    def on_cancel_message(self, msg):
        log(msg)

    def is_cancelled(self, rid):
        return False if FAULT == "ignore_cancel" else super().is_cancelled(rid)

    def on_cancelled(self, rid, n_tokens):
        log({"event": "cancelled", "id": rid, "tokens": n_tokens})


def main():
    if FAULT not in FAULTS:
        print(f"mock bridge: unknown MOCK_BRIDGE_FAULT {FAULT!r}", file=sys.stderr)
        return 2
    if FAULT == "fail_start":
        print("mock bridge: cannot start (fault fail_start)", file=sys.stderr, flush=True)
        return 1
    if FAULT == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    server = None

    def load(path, options):
        if not os.path.isdir(path):
            raise BridgeError(f"load: model folder not found: {path}", "not_found")
        return MockModel(server)

    server = MockServer("mock", "1", load)
    print("mock bridge: started", file=sys.stderr, flush=True)
    server.run()
    if FAULT == "stubborn":
        hang()
    server.exit(0)


if __name__ == "__main__":
    sys.exit(main())
