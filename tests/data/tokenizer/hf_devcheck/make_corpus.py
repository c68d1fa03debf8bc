# Development corpus of tricky texts (not the project's fixture corpus).
import json, unicodedata, random
random.seed(7)
T = []
T += ["Hello world", "Hello, world!", " Hello world", "  Hello   world  ", "hello\nworld", "Hello\n\nworld\n\n\n", "\n", " ", "  ", "\t", "a\tb\t\tc", "\r\n", "line1\r\nline2\rline3",
      "I'm you're we've they'll she'd it's don't can't won't", "I'M YOU'RE WE'VE THEY'LL SHE'D IT'S", "It'ſ", "'s 't 're 've 'm 'll 'd", "rock'n'roll", "the cat's toy . Is it ? Yes ! No , maybe ' quoted ' isn't",
      "1234567890", "3.14159 2,718,281 1e10 0x1F 007", "Year 2024: 12345678901234567890 items", "٣٤٥ ١٢", "Ⅻ ½ ²",
      "def foo(x):\n    return x ** 2  # square\n\n\tif x: pass\n", "int main(void) {\n  printf(\"%d\\n\", 42);\n  return 0;\n}\n",
      "for (let i = 0; i < n; i++) { a[i] += b[i] * 2; }", "<html><body><table><tr><td>x</td></tr></table></body></html>",
      "    indented\n        more\n    back", "end with spaces   ", "   start with spaces", "tabs\t\t\tand spaces \t mixed",
      "你好，世界！这是一个测试。", "日本語のテキストです。カタカナとひらがな。", "안녕하세요 세계", "مرحبا بالعالم", "नमस्ते दुनिया", "Привет, мир!", "Γειά σου Κόσμε", "שלום עולם", "สวัสดีชาวโลก",
      "👍 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇫🇷 🧑🏿‍🚀", "emoji🙂inside🙃words", "café naïve résumé", unicodedata.normalize("NFD", "café naïve résumé Å"), "ﬁ ﬂ ＡＢＣ １２３ ㈱",
      "Kelvin K sign", "nbsp\u00a0here", "ideographic\u3000space", "mongolian\u180evowel", "line\u2028sep para\u2029sep", "zero\u200bwidth", "soft\u00adhyphen", "\u0085nel",
      "<bos>Hello<eos>", "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
      "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHi<|im_end|>", "text<|endoftext|>more", "<pad><unk><mask>", "<unused0> <unused99>", "▁▁ leading metaspace ▁", "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n",
      "a" * 1500, "ab" * 700 + " " + "xyz" * 400, "あ" * 1200, "😀" * 300, " " * 1000, "\n" * 300, "-" * 500, "1" * 1000,
      "$100 @user #tag %20 ^_^ ~tilde~ `code` |pipe| \\back\\slash", "¡Hola! ¿Qué tal?", "“smart quotes” ‘single’ — em dash – en dash …", "\u0000nul\u0001ctl\u007f",
      "x" , "", "A", ".", "...", "?!", "U.S.A.", "e.g. i.e. etc.", "don 't", "do n't", "I ' m", "hello . world", "a , b , c", "x ' y ' z", " ' ' ' ."]
words = ["the", "of", "and", "Tokenizer", "ünïcödé", "数据", "données", "ключ", "🙂", "123", "4567", "'s", "n't", "\t", "\n", "  ", "<b>", "</b>", "x=1;", "λ", "ſ"]
for i in range(80):
    T.append("".join(random.choice(words) + random.choice(["", " ", "  ", "\n", ",", "."]) for _ in range(random.randint(1, 40))))
random.seed(11)
alphabet = [chr(c) for c in list(range(32, 127)) + [0xe9, 0x301, 0x4e2d, 0x1f600, 0x200d, 0xa0, 0x3000, 0x2028, 0x85, 10, 9, 13, 0xfffd, 0x10ffff, 0xe000]]
for i in range(60):
    T.append("".join(random.choice(alphabet) for _ in range(random.randint(1, 60))))
with open("corpus.jsonl", "w") as f:
    for i, t in enumerate(T):
        f.write(json.dumps({"id": i, "text": t}, ensure_ascii=True) + "\n")
print(len(T))
