#!/usr/bin/env python3
"""Writes tests/data/tokenizer/corpus.jsonl: the tokenizer conformance corpus.

One JSON object per line, {"id": N, "text": "..."}, ids 0, 1, 2, ... in file
order, written with ensure_ascii=False (so the file is UTF-8; control
characters appear as JSON escapes such as \\u0000). Every text is valid
Unicode without surrogates, so it round-trips through UTF-8.

What it covers (the "category" of each text is not stored; texts are grouped
in this order): English prose; runs of spaces, tabs and newlines (including
"\\r\\n", leading and trailing whitespace, NBSP, ideographic space); digits
and long numbers; contractions in both cases; strings that transformers'
clean_up_tokenization_spaces rewrites (" ." " ," " 's" ...); source code
(Python, C, JSON, HTML, Makefile, YAML, shell) with indentation; Chinese,
Japanese, Korean, Arabic, Hindi, Thai, Russian, Greek, Hebrew and a few more
scripts; emoji with ZWJ sequences, skin tones, flags, keycaps; NFC and NFD
accents (both forms of é and Å, the Angstrom sign, Hangul jamo); combining
marks; rare characters that only byte fallback can encode; special-token
strings of every family inside ordinary text, and broken/partial ones; added
non-special tokens (Gemma's HTML tags and whitespace runs, Qwen's <think>);
words longer than 1,000 characters (1500 x "a", a long URL, a long base64
run, a long digit run); the empty string, single spaces and characters;
control characters; zero-width characters; seeded random mixtures of the
above; and last, one ~100 kB document built deterministically (fixed seed)
from all the other texts.

Deterministic: running it twice gives byte-identical output. Plain Python 3
(no third-party packages). Rerun from anywhere:
    python3 scripts/make_tokenizer_corpus.py [--out tests/data/tokenizer/corpus.jsonl]
"""
import argparse
import json
import os
import random
import sys
import unicodedata

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 20240726
BIG_DOC_BYTES = 100_000


def prose():
    return [
        "The quick brown fox jumps over the lazy dog.",
        "Hello, world!",
        "Hello world",
        "hello world",
        "HELLO WORLD",
        "It was the best of times, it was the worst of times, it was the age of wisdom, "
        "it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity.",
        "Call me Ishmael. Some years ago - never mind how long precisely - having little or no money "
        "in my purse, and nothing particular to interest me on shore, I thought I would sail about a "
        "little and see the watery part of the world.",
        "In the beginning God created the heaven and the earth.",
        "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
        "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles",
        "A tokenizer splits text into pieces; a model maps pieces to vectors.",
        "Mr. and Mrs. Dursley, of number four, Privet Drive, were proud to say that they were "
        "perfectly normal, thank you very much.",
        "She sells sea-shells on the sea-shore (really!) -- and \"quotes\", 'single quotes', `backticks`.",
        "e.g. i.e. etc. vs. Dr. St. U.S.A. U.K. a.m. p.m.",
        "What's the time? It's 10:45 a.m. on 2024-07-26T10:45:00Z.",
        "Semicolons; colons: dashes - en – em — ellipsis … and the end.",
        "«Guillemets» „German quotes“ “curly” ‘single’ ‹angle›",
        "Price: $19.99, €20,00, £15, ¥1000, ₹500, ₿0.001 (about 5%).",
        "Email me at someone@example.com or visit https://example.com/path?q=1&r=two#frag.",
        "#hashtag @mention !important ^caret ~tilde |pipe \\backslash /slash",
        "ALL CAPS SENTENCE WITH NUMBERS 123 AND SYMBOLS !?",
        "camelCaseWords and snake_case_words and kebab-case-words and SCREAMING_SNAKE",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt "
        "ut labore et dolore magna aliqua.",
        "The year 1969 saw the first Moon landing; 2001 was a space odyssey.",
        "Tokenization isn't trivial: 'quoted', \"double\", (parens), [brackets], {braces}.",
        "A man, a plan, a canal: Panama!",
        "Why? Because!!! Really??? Yes... no.",
        "This line ends with a period.\nThis one starts a new paragraph.\n\nAnd this is the third.",
        "Über naïve café coöperate résumé jalapeño façade Zürich Ærøskøbing.",
        "Straße groß Maße Fuß ß ẞ",
        "The café's menu: crème brûlée, piña colada, smörgåsbord.",
    ]


def whitespace():
    spaces = [" ", "  ", "   ", "    ", "        ", "\t", "\t\t", "\n", "\n\n", "\n\n\n",
              "\r\n", "\r\n\r\n", "\r", " \n", "\n ", " \t ", "\t\n", "\u00a0", "\u3000",
              " \u00a0 "]
    out = []
    for ws in spaces:
        out += ["a" + ws + "b", ws + "word", "word" + ws, ws]
    out += [
        "  leading two spaces",
        "trailing two spaces  ",
        "   both sides   ",
        "\tTab at start and end\t",
        "line one\r\nline two\r\nline three\r\n",
        "mixed \t \n \r\n whitespace \t\t\n\n  end",
        "a" + " " * 40 + "b",
        "x" + "\n" * 33 + "y",
        "\t" * 35,
        "word\n\n\n\n\n\n\n\n\n\nword",
        "    indented four\n        indented eight\n\tindented tab",
        " " * 100,
        "trailing newline\n",
        "\n\nleading newlines",
    ]
    return out


def numbers():
    return [
        "0", "1", "12", "123", "1234", "12345", "123456", "1234567890", "1234567890123",
        "3.14159", "2.718281828459045", "-42", "+7", "1,000,000", "1.000.000,50", "1e10",
        "6.022e23", "0x1F4A9", "0b101010", "0o777", "007", "1/2", "3/4 cup", "50%",
        "12:34:56", "2024-07-26", "26/07/2024", "v1.2.3-rc.4", "IPv4 192.168.0.1",
        "Call 555-0100 or +1 (555) 010-0199.", "99 bottles of beer", "π ≈ 3.14159265358979",
        "١٢٣٤٥٦٧٨٩٠", "१२३४५६७८९०", "一二三 123 ４５６", "Ⅻ Ⅳ ⅷ", "½ ¾ ⅓ ² ³ ¹",
        "31415926535897932384626433832795028841971693993751058209749445923078164062862",
    ]


def contractions():
    return [
        "don't", "I'm", "we'll", "they've", "she'd", "you're", "it's", "can't", "won't",
        "DON'T", "I'M", "WE'LL", "THEY'VE", "'S", "'LL", "'s", "'t", "'re", "'ve", "'m", "'d",
        "He said 'hello' and she'd've gone.",
        "O'Reilly's y'all ma'am rock'n'roll",
        "I'M SURE IT'S FINE, ISN'T IT? WE'D KNOW.",
        "don’t (curly apostrophe) vs don't",
        "'twas the night before Christmas",
    ]


def cleanup_spaces():
    # Strings that transformers' clean_up_tokenization rewrites when
    # clean_up_tokenization_spaces is true (llama3_1's tokenizer_config).
    return [
        "Hello , world .",
        "Is it ? Yes !",
        "it 's , i 'm , they 've , we 're , do n't",
        "a . b , c ! d ? e",
        "spaces before punctuation : ; ( ) [ ]",
        "end with space .",
    ]


def code():
    return [
        "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
        "class Point:\n\tdef __init__(self, x, y):\n\t\tself.x = x\n\t\tself.y = y\n",
        "import numpy as np\n\nx = np.arange(10)  # comment\nprint(f\"{x.sum():>8.2f}\")\n",
        "#include <stdio.h>\n\nint main(void) {\n    printf(\"Hello, %s!\\n\", \"world\");\n    return 0;\n}\n",
        "for (size_t i = 0; i < n; ++i) { a[i] += b[i] * c[i]; }",
        "static inline uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }",
        "{\"name\": \"lmc\", \"version\": \"0.1.0\", \"tags\": [\"c\", \"llm\"], \"nested\": {\"a\": null, \"b\": true}}",
        "{\n  \"key\": \"value\",\n  \"list\": [1, 2, 3],\n  \"escape\": \"\\u00e9\\n\"\n}",
        "<!DOCTYPE html>\n<html>\n  <head><title>Test</title></head>\n  <body>\n    <div class=\"x\"><p>Hi &amp; bye</p></div>\n  </body>\n</html>",
        "all: build\n\nbuild:\n\t$(CC) -O2 -o app main.c\n\nclean:\n\trm -f app\n",
        "server:\n  port: 8080\n  hosts:\n    - a.example.com\n    - b.example.com\n",
        "#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.txt; do echo \"$f\"; done\n",
        "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
        "fn main() {\n    let v: Vec<i32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
        "const f = async (x) => { await g(x ?? 0); return x?.y ?? null; };",
        "x = [i**2 for i in range(10) if i % 2 == 0]",
        "if (a != b && c <= d || !e) { x >>= 2; y <<= 3; z ^= 0xFF; }",
        "    \n\n    return None\n\n\n",
        "// TODO: fix this\n/* block\n   comment */\n",
        "$$E = mc^2$$ and \\frac{a}{b} + \\sum_{i=0}^{n} x_i",
    ]


def scripts():
    return [
        "你好，世界！",
        "我爱自然语言处理。今天天气很好，我们去公园散步吧。",
        "中文标点符号：，。！？；：“”‘’（）【】《》",
        "こんにちは世界",
        "日本語のテキストをトークン化します。カタカナとひらがなと漢字。",
        "ｶﾀｶﾅ（半角）とカタカナ（全角）",
        "안녕하세요 세계",
        "한국어 텍스트를 토큰화합니다. 띄어쓰기도 중요합니다.",
        "مرحبا بالعالم",
        "اللغة العربية تكتب من اليمين إلى اليسار.",
        "نص عربي مع أرقام 123 وكلمات English مختلطة",
        "नमस्ते दुनिया",
        "हिन्दी भाषा देवनागरी लिपि में लिखी जाती है।",
        "สวัสดีชาวโลก",
        "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
        "Привет, мир!",
        "Съешь же ещё этих мягких французских булок, да выпей чаю.",
        "Γειά σου Κόσμε",
        "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
        "שלום עולם",
        "עברית נכתבת מימין לשמאל.",
        "Tiếng Việt có nhiều dấu: ă â ê ô ơ ư đ.",
        "Türkçe: ığüşöç İĞÜŞÖÇ",
        "Polski: zażółć gęślą jaźń",
        "Ελληνικά, Русский, العربية, עברית, 中文, 日本語, 한국어 in one line",
        "ᐊᓐᓄᒃ ᚠᚢᚦᚨᚱᚲ ⴰⵣⵓⵍ ሰላም ᠮᠣᠩᠭᠣᠯ",
        "தமிழ் తెలుగు ಕನ್ನಡ മലയാളം বাংলা ગુજરાતી ਪੰਜਾਬੀ",
        "ქართული Հայերեն ລາວ ខ្មែរ မြန်မာ",
    ]


def emoji():
    return [
        "😀", "👍", "👍🏽", "👍🏿", "🇫🇷", "🇯🇵🇺🇸", "👨‍👩‍👧‍👦", "👩🏽‍💻", "🏳️‍🌈", "❤️",
        "I love it 😍😍😍!", "Family: 👨‍👩‍👧‍👦 and flag 🇫🇷 and thumbs 👍🏽.",
        "1️⃣ 2️⃣ #️⃣ *️⃣", "🧑‍🤝‍🧑 🧬 🦀 🐍", "emoji😀without😀spaces",
        "☺ ☹ ✂ ✈ ☎ ♥ (text presentation) vs ☺️ (emoji presentation)",
    ]


def accents():
    e_nfc = "\u00e9"
    e_nfd = "e\u0301"
    a_nfc = "\u00c5"
    a_nfd = "A\u030a"
    out = [
        e_nfc, e_nfd, a_nfc, a_nfd, "\u212b",  # ANGSTROM SIGN, NFC -> U+00C5
        "caf" + e_nfc, "caf" + e_nfd,
        a_nfc + "ngstr" + "\u00f6" + "m", a_nfd + "ngstro\u0308m",
        "r" + e_nfd + "sum" + e_nfd + " vs r" + e_nfc + "sum" + e_nfc,
        "\u1100\u1161\u11a8",  # Hangul jamo (NFC composes to 각)
        "\uac01",
        "ﬁ ﬂ ﬀ ﬃ (ligatures)",  # NFKC would change these
        "Ｆｕｌｌｗｉｄｔｈ　ＡＳＣＩＩ",
        "x\u0300\u0301\u0302\u0303\u0304 stacked combining marks",
        "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354LG\u0308\u0311\u0304\u0355O",
        "a\u0308 o\u0308 u\u0308 vs \u00e4 \u00f6 \u00fc",
        "\u0928\u093f\u0915\u094d\u0937 (Devanagari virama)",
    ]
    assert unicodedata.normalize("NFC", e_nfd) == e_nfc
    return out


def rare_chars():
    # Characters that are unlikely to be whole tokens: exercise byte fallback
    # (Gemma) and byte-level pieces that split one character (Llama, Qwen).
    return [
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙 𝒮𝒸𝓇𝒾𝓅𝓉",
        "\ue000\ue001 private use",
        "\U000f0000 supplementary private use",
        "\ufffd replacement character",
        "\ufeffBOM at start",
        "𓀀𓀁𓀂 hieroglyphs",
        "🀄🃏 𝄞 ♩♪♫",
        "\U0010fffd",
        "\u0378 unassigned",
        "ꙮ",
    ]


def special_tokens():
    return [
        "a<bos>b", "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "[multimodal]",
        "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
        "text <start_of_turn> more", "<start_of_image><image_soft_token><end_of_image>",
        "<start_of_turn", "start_of_turn>", "<bos", "bos>", "< bos >", "<BOS>", "<<bos>>",
        "<unused0> <unused99>", "<unused6241>",
        "<|begin_of_text|>Hello", "<|eot_id|>", "x<|eot_id|>y",
        "<|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>",
        "<|reserved_special_token_5|>", "<|finetune_right_pad_id|>", "<|end_of_text|>",
        "<|begin_of_text|><|begin_of_text|>",
        "<|eot_id", "|eot_id|>", "<|EOT_ID|>",
        "<|im_start|>user", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
        "<|im_sta", "im_start|>", "<|im_start|><|im_start|>", " <|im_start|> spaced ",
        "<|endoftext|>", "<|IM_START|>", "<<|im_end|>>",
        "<think>", "</think>", "<think>\nreasoning here\n</think>\n\nanswer",
        "<thi", "<think", "think>", "<tool_call>{\"name\": \"f\"}</tool_call>",
        "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
        "<b>bold</b> <i>italic</i> <s>strike</s> <code>x</code>",
        "<div><span>nested</span></div><br>",
        "</s>", "<s>", "<h1>Title</h1>",
        "a\u2581\u2581b \u2581hello \u2581\u2581\u2581\u2581",
        "<start_of_turn>user\n<|im_start|>mixed<|eot_id|> families<end_of_turn>",
    ]


def long_words():
    b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    rng = random.Random(SEED + 1)
    b64 = "".join(rng.choice(b64chars) for _ in range(2400)) + "=="
    url = "https://example.com/" + "/".join(
        "segment%d-%s" % (i, "".join(rng.choice("abcdefghij") for _ in range(12))) for i in range(60)
    ) + "?token=" + "".join(rng.choice("0123456789abcdef") for _ in range(400))
    return [
        "a" * 1500,
        "word " + "a" * 1500 + " word",
        b64,
        url,
        "9" * 1200,
        "ab" * 700,
        "Supercalifragilisticexpialidocious" * 35,
        "é" * 1100,
        "中" * 1100,
        "-" * 1300,
    ]


def edge_cases():
    return [
        "", " ", "  ", "\n", "\t", "a", "A", "z", "0", ".", "'", "\"", "\\", "é", "中", "😀",
        "\u00a0", "\u200b", "~", "\u2581",
        "\x00", "a\x00b", "\x01\x02\x03\x07\x08\x0b\x0c\x0e\x1b[31mred\x1b[0m\x7f",
        "bell\x07 and form\x0cfeed", "\x85 next line", "\u2028line sep\u2029para sep",
        "zero\u200bwidth\u200bspace", "zero\u200cwidth\u200dnon\u2060joiner",
        "\u200e\u200f direction marks \u202a\u202c", "soft\u00adhyphen",
    ]


def mixtures(pool, count, rng):
    seps = [" ", "", "\n", "  ", "\t", ". ", "\r\n", ", "]
    out = []
    for _ in range(count):
        n = rng.randint(2, 5)
        parts = [rng.choice(pool) for _ in range(n)]
        text = parts[0]
        for p in parts[1:]:
            text += rng.choice(seps) + p
        out.append(text)
    return out


def big_document(pool, rng):
    seps = ["\n", "\n\n", " ", "\t", "\r\n", "  "]
    parts = []
    size = 0
    while size < BIG_DOC_BYTES:
        piece = rng.choice(pool) + rng.choice(seps)
        parts.append(piece)
        size += len(piece.encode("utf-8"))
    return "".join(parts)


def build_corpus():
    rng = random.Random(SEED)
    texts = []
    for group in (prose, whitespace, numbers, contractions, cleanup_spaces, code, scripts,
                  emoji, accents, rare_chars, special_tokens, long_words, edge_cases):
        texts += group()
    short = [t for t in texts if 0 < len(t) <= 200]
    texts += mixtures(short, 60, rng)
    # The document draws from every non-empty text except the >1,000-character words
    # (those appear a few times on their own so the document stays varied).
    doc_pool = [t for t in texts if 0 < len(t) <= 1000]
    doc_pool += long_words()[:3]
    texts.append(big_document(doc_pool, rng))
    for t in texts:
        t.encode("utf-8")  # raises on lone surrogates
    return texts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/data/tokenizer/corpus.jsonl",
                    help="output path, relative to the repository root (default %(default)s)")
    args = ap.parse_args()
    out = args.out if os.path.isabs(args.out) else os.path.join(REPO, args.out)
    texts = build_corpus()
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n")
    size = os.path.getsize(out)
    print("make_tokenizer_corpus: %d texts, %d bytes -> %s" % (len(texts), size, os.path.relpath(out, REPO)))
    if len(texts) < 300 or size > 400_000:
        print("make_tokenizer_corpus: expected >= 300 texts and <= 400 kB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
