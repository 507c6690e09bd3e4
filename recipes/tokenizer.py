"""Byte-level BPE: trainer, encoder/decoder, and writer of Hugging Face `tokenizers` files.

The pre-tokenizer is the GPT-2 ByteLevel regex exactly as @huggingface/tokenizers (JS) and the Rust crate run it;
`\\s` is spelled out as JavaScript's whitespace class so the Python split matches the JS one byte for byte.

Usage: python3 tokenizer.py train   -> build/tokenizer/{tokenizer.json,tokenizer_config.json,special_tokens_map.json}
       python3 tokenizer.py encode  -> build/tokenizer/samples.json (strings + ids, checked by check_tokenizer.mjs)
       python3 tokenizer.py tokenize -> build/tokens/{train,heldout}.bin (uint16 ids, docs joined by <|endoftext|>)
"""
import collections
import heapq
import json
import os
import sys
import time

import regex

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BUILD, CORPUS_DIR, SPECIAL_TOKENS, TOK_DIR, ensure  # noqa: E402

VOCAB_SIZE = int(os.environ.get("TANDEM_VOCAB", 4096))
TRAIN_CHARS = int(os.environ.get("TANDEM_TOK_TRAIN_CHARS", 6_000_000))
MODEL_MAX_LENGTH = 256

WS = "\\t\\n\\x0b\\x0c\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
PAT = regex.compile(
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" + WS + "\\p{L}\\p{N}]+|[" + WS + "]+(?![^" + WS + "])|[" + WS + "]+"
)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


B2U = bytes_to_unicode()
U2B = {v: k for k, v in B2U.items()}


def pretokenize(text):
    return ["".join(B2U[b] for b in piece.encode("utf-8")) for piece in PAT.findall(text)]


def train(texts, vocab_size=VOCAB_SIZE):
    t0 = time.time()
    counts = collections.Counter()
    for t in texts:
        counts.update(pretokenize(t))
    base = [B2U[b] for b in range(256)]
    sym_id = {s: i for i, s in enumerate(base)}
    symbols = list(base)
    words = [[sym_id[c] for c in w] for w in counts]
    freqs = list(counts.values())
    pair_counts = collections.defaultdict(int)
    where = collections.defaultdict(set)
    for wi, w in enumerate(words):
        f = freqs[wi]
        for a, b in zip(w, w[1:]):
            pair_counts[(a, b)] += f
            where[(a, b)].add(wi)
    heap = [(-c, symbols[p[0]], symbols[p[1]], p) for p, c in pair_counts.items()]
    heapq.heapify(heap)
    merges = []
    n_merges = vocab_size - len(SPECIAL_TOKENS) - 256
    while len(merges) < n_merges and heap:
        negc, _, _, pair = heapq.heappop(heap)
        cur = pair_counts.get(pair, 0)
        if cur <= 0:
            continue
        if -negc != cur:  # stale entry
            heapq.heappush(heap, (-cur, symbols[pair[0]], symbols[pair[1]], pair))
            continue
        a, b = pair
        new = len(symbols)
        symbols.append(symbols[a] + symbols[b])
        merges.append((symbols[a], symbols[b]))
        changed = set()
        for wi in list(where[pair]):
            w = words[wi]
            f = freqs[wi]
            i = 0
            nw = []
            while i < len(w):
                if i < len(w) - 1 and w[i] == a and w[i + 1] == b:
                    nw.append(new)
                    i += 2
                else:
                    nw.append(w[i])
                    i += 1
            if nw == w:
                continue
            for p in zip(w, w[1:]):
                pair_counts[p] -= f
                changed.add(p)
            for p in zip(nw, nw[1:]):
                pair_counts[p] += f
                where[p].add(wi)
                changed.add(p)
            words[wi] = nw
        del pair_counts[pair]
        where.pop(pair, None)
        for p in changed:
            c = pair_counts.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, symbols[p[0]], symbols[p[1]], p))
    print(f"trained {len(merges)} merges on {sum(freqs)} pre-tokens ({len(words)} unique) in {time.time()-t0:.1f}s")
    return merges


class ByteBPE:
    def __init__(self, tokenizer_json):
        tj = tokenizer_json if isinstance(tokenizer_json, dict) else json.load(open(tokenizer_json, encoding="utf-8"))
        self.vocab = tj["model"]["vocab"]
        self.inv = {i: s for s, i in self.vocab.items()}
        self.ranks = {tuple(m.split(" ")) if isinstance(m, str) else tuple(m): i for i, m in enumerate(tj["model"]["merges"])}
        self.special = {t["content"]: t["id"] for t in tj["added_tokens"]}
        for s, i in self.special.items():
            self.inv[i] = s
        alts = sorted(self.special, key=len, reverse=True)
        self.special_re = regex.compile("(" + "|".join(regex.escape(s) for s in alts) + ")")
        self.cache = {}

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            best, bi = None, -1
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best):
                    best, bi = r, i
            if best is None:
                break
            parts = parts[:bi] + [parts[bi] + parts[bi + 1]] + parts[bi + 2:]
        ids = [self.vocab[p] for p in parts]
        if len(self.cache) < 500_000:
            self.cache[word] = ids
        return ids

    def encode(self, text):
        ids = []
        for seg in self.special_re.split(text):
            if not seg:
                continue
            if seg in self.special:
                ids.append(self.special[seg])
                continue
            for w in pretokenize(seg):
                ids.extend(self.bpe(w))
        return ids

    def decode(self, ids, skip_special_tokens=False):
        out, buf = [], []
        for i in ids:
            s = self.inv[int(i)]
            if s in self.special:
                if buf:
                    out.append(bytes(buf).decode("utf-8", errors="replace"))
                    buf = []
                if not skip_special_tokens:
                    out.append(s)
            else:
                buf.extend(U2B[c] for c in s)
        if buf:
            out.append(bytes(buf).decode("utf-8", errors="replace"))
        return "".join(out)


CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def tokenizer_files(merges):
    vocab = {s: i for i, s in enumerate(SPECIAL_TOKENS)}
    for b in range(256):
        vocab[B2U[b]] = len(vocab)
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i, s in enumerate(SPECIAL_TOKENS)
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges],
        },
    }
    cfg = {
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
            for i, s in enumerate(SPECIAL_TOKENS)
        },
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "pad_token": "<pad>",
        "unk_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "model_max_length": MODEL_MAX_LENGTH,
        "padding_side": "left",
        "tokenizer_class": "GPT2Tokenizer",
        "vocab_size": len(vocab),
    }
    stm = {
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": {"content": "<|im_start|>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
        "eos_token": {"content": "<|im_end|>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
        "pad_token": {"content": "<pad>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
    }
    return tj, cfg, stm


def iter_docs(name):
    with open(os.path.join(CORPUS_DIR, name + ".jsonl"), encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def cmd_train():
    ensure(TOK_DIR)
    texts, n = [], 0
    for d in iter_docs("train"):
        texts.append(d["text"])
        n += len(d["text"])
        if n >= TRAIN_CHARS:
            break
    merges = train(texts)
    tj, cfg, stm = tokenizer_files(merges)
    for name, obj in [("tokenizer.json", tj), ("tokenizer_config.json", cfg), ("special_tokens_map.json", stm)]:
        with open(os.path.join(TOK_DIR, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=1 if name != "tokenizer.json" else None)
    print("vocab", len(tj["model"]["vocab"]))


def load():
    return ByteBPE(os.path.join(TOK_DIR, "tokenizer.json"))


def cmd_encode():
    """Write sample strings with their Python ids for check_tokenizer.mjs."""
    import random
    tok = load()
    rnd = random.Random(7)
    samples = [
        "Hello world", "  leading spaces", "trailing spaces   ", "tabs\tand\nnewlines\n\n", "don't I'll we've they're",
        "Numbers 12345 and 3.14159", "Ünïcödé café naïve — “quotes” ‘single’ …", "日本語のテキスト", "emoji 🙂👍🏽",
        "<|im_start|>user\nWhat does apple mean?<|im_end|>\n<|im_start|>assistant\n",
        "a<|endoftext|>b<pad><pad>", "<|im_end|>", "", "x", "   ", "\u00a0nbsp\u2003em space", "zero\u200bwidth",
        "CamelCaseWord snake_case_word kebab-case-word", "https://example.com/path?q=1&r=2", "C++ && || != ==",
    ]
    docs = list(iter_docs("heldout"))
    rnd.shuffle(docs)
    for d in docs[:300]:
        t = d["text"]
        if len(t) > 400:
            s = rnd.randrange(0, len(t) - 300)
            t = t[s:s + 300]
        samples.append(t)
    for d in list(iter_docs("domain"))[:40]:
        samples.append(d["text"][:300])
    out = []
    bad = 0
    for s in samples:
        ids = tok.encode(s)
        dec = tok.decode(ids)
        if dec != s:
            bad += 1
        out.append({"text": s, "ids": ids})
    with open(os.path.join(TOK_DIR, "samples.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)
    print(f"{len(out)} samples written, python roundtrip failures: {bad}")


def cmd_tokenize():
    import numpy as np
    tok = load()
    d = os.path.join(BUILD, "tokens")
    ensure(d)
    for name in ["train", "heldout"]:
        t0 = time.time()
        ids = []
        for doc in iter_docs(name):
            ids.extend(tok.encode(doc["text"]))
            ids.append(0)  # <|endoftext|>
        arr = np.array(ids, dtype=np.uint16)
        arr.tofile(os.path.join(d, name + ".bin"))
        print(f"{name}: {len(arr)} tokens in {time.time()-t0:.1f}s")


if __name__ == "__main__":
    {"train": cmd_train, "encode": cmd_encode, "tokenize": cmd_tokenize}[sys.argv[1]]()
