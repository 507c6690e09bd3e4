"""tandem-source-classifier: a tiny BERT-style sequence classifier that tells which Debian text corpus a snippet
came from (wordnet, gcide, bible, fortune, elements), exported like a Hugging Face Optimum BERT classifier.

Usage (from anywhere; Debian's torch):
  /usr/bin/python3 recipes/classifier.py                 # build snippets, train, export, parity, model card
  /usr/bin/python3 recipes/classifier.py --export-only   # re-export from build/classifier/ckpt.pt
Knobs: --steps 1500 --batch 64 --per-class 12000 --lr 1e-3 --threads 1 --out models/tandem-source-classifier

Data: recipes/build/corpus/{train,heldout}.jsonl (corpus.py; split rule of SPLITS.md: sha1(key) % 10 == 0 is held
out). Training snippets come only from train.jsonl, the reported accuracy only from heldout.jsonl. foldoc/jargon
(domain.jsonl) are never read. A snippet is 1-3 consecutive sentences of one document (whitespace collapsed; KJV
chapter headers and verse numbers removed), cut to <= 64 tokens; 10% of training snippets are 3-6 sentences cut to
<= 128 tokens so every learned position embedding (max_position_embeddings 128) is trained.

Model: post-LN BERT encoder (word + learned absolute position + token-type embeddings, LayerNorm, 2 layers, hidden
128, 4 heads, ffn 256, GELU), mean pooling over attention_mask (the family's byte-level BPE adds no [CLS]), linear
head. Tokenizer: the family's tokenizer (recipes/build/tokenizer), encoded with tokenizer.ByteBPE; pad <pad> (id 3)
on the right.

ONNX (opset 14): inputs input_ids, attention_mask, token_type_ids [batch_size, sequence_length] int64;
output logits [batch_size, num_labels] float32.
Also writes build/classifier/{ckpt.pt,heldout.jsonl,train.log} (heldout.jsonl is re-scored in Node by
check_classifier.mjs).
"""
import argparse
import json
import math
import os
import random
import re
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BUILD, CORPUS_DIR, MODELS, PAD, TOK_DIR, run_log, write_classifier_tokenizer  # noqa: E402
from tokenizer import load as load_tok  # noqa: E402

NAME = "tandem-source-classifier"
LABELS = ["wordnet", "gcide", "bible", "fortune", "elements"]
SRC2LABEL = {"wordnet": 0, "gcide": 1, "kjv": 2, "fortunes": 3, "elements": 4}
WORK = os.path.join(BUILD, "classifier")
MAX_POS = 128
SNIPPET_TOKENS = 64
OPSET = 14

ARCH = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
            max_position_embeddings=MAX_POS, type_vocab_size=2, hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1, layer_norm_eps=1e-12)

# ----------------------------------------------------------------------------------------------------- data

SENT_SPLIT = re.compile(r"(?<=[.!?])\s+")


def sentences(src, text):
    """A document as a list of sentences (whitespace collapsed, KJV header / verse numbers removed)."""
    if src == "kjv":
        lines = text.split("\n")[1:]
        text = " ".join(re.sub(r"^\d+ ", "", l) for l in lines)
    text = re.sub(r"\s+", " ", text).strip()
    out = []
    for s in SENT_SPLIT.split(text):
        s = s.strip()
        if not s:
            continue
        if out and len(out[-1]) < 25:  # glue fragments such as "Condole, v." or "i." to the next one
            out[-1] = out[-1] + " " + s
        else:
            out.append(s)
    return out


def truncate(tok, text, max_tokens):
    ids = tok.encode(text)
    if len(ids) <= max_tokens:
        return text, ids
    words = text.split(" ")
    n = max(1, int(len(words) * max_tokens / len(ids)))
    while n > 1:
        t = " ".join(words[:n])
        ids = tok.encode(t)
        if len(ids) <= max_tokens:
            return t, ids
        n -= 1
    ids = tok.encode(words[0])[:max_tokens]
    return tok.decode(ids), ids


def load_docs(split):
    by = {l: [] for l in range(len(LABELS))}
    with open(os.path.join(CORPUS_DIR, split + ".jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            lab = SRC2LABEL.get(d["src"])
            if lab is None:  # never foldoc/jargon (they are not in train/heldout anyway)
                continue
            sents = sentences(d["src"], d["text"])
            if sents:
                by[lab].append(sents)
    return by


def sample_snippet(rnd, sents, long=False):
    k = rnd.randint(3, 6) if long else rnd.choices([1, 2, 3], weights=[0.4, 0.35, 0.25])[0]
    k = min(k, len(sents))
    start = 0 if rnd.random() < 0.3 else rnd.randrange(0, len(sents) - k + 1)
    return " ".join(sents[start:start + k])


def build_train(tok, per_class, seed=0):
    rnd = random.Random(seed)
    docs = load_docs("train")
    rows = []
    for lab, ds in docs.items():
        for _ in range(per_class):
            long = rnd.random() < 0.10
            text = sample_snippet(rnd, rnd.choice(ds), long)
            text, ids = truncate(tok, text, MAX_POS if long else SNIPPET_TOKENS)
            if ids:
                rows.append((ids, lab))
    rnd.shuffle(rows)
    return rows, {LABELS[l]: len(ds) for l, ds in docs.items()}


def build_heldout(tok, per_class, seed=1):
    """Deterministic, de-duplicated held-out snippets (<= 64 tokens) from heldout.jsonl only."""
    rnd = random.Random(seed)
    docs = load_docs("heldout")
    rows = []
    for lab, ds in docs.items():
        seen = set()
        tries = 0
        while len(seen) < per_class and tries < per_class * 20:
            tries += 1
            text, ids = truncate(tok, sample_snippet(rnd, rnd.choice(ds)), SNIPPET_TOKENS)
            if not ids or text in seen:
                continue
            seen.add(text)
            rows.append({"text": text, "label": LABELS[lab], "label_id": lab, "input_ids": ids})
    return rows, {LABELS[l]: len(ds) for l, ds in docs.items()}


def collate(batch_ids):
    T = max(len(x) for x in batch_ids)
    ids = torch.full((len(batch_ids), T), PAD, dtype=torch.long)
    mask = torch.zeros((len(batch_ids), T), dtype=torch.long)
    for i, x in enumerate(batch_ids):
        ids[i, :len(x)] = torch.tensor(x)
        mask[i, :len(x)] = 1
    return ids, mask, torch.zeros_like(ids)

# ---------------------------------------------------------------------------------------------------- model


class Layer(nn.Module):
    def __init__(self, h, heads, ffn, p, eps):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(h, 3 * h)
        self.out = nn.Linear(h, h)
        self.ln1 = nn.LayerNorm(h, eps=eps)
        self.fc1 = nn.Linear(h, ffn)
        self.fc2 = nn.Linear(ffn, h)
        self.ln2 = nn.LayerNorm(h, eps=eps)
        self.drop = nn.Dropout(p)

    def forward(self, x, bias):
        B, T, H = x.shape
        hd = H // self.heads
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        att = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd) + bias
        att = self.drop(torch.softmax(att, dim=-1))
        y = torch.matmul(att, v).transpose(1, 2).reshape(B, T, H)
        x = self.ln1(x + self.drop(self.out(y)))
        x = self.ln2(x + self.drop(self.fc2(F.gelu(self.fc1(x)))))
        return x


class SourceClassifier(nn.Module):
    def __init__(self, vocab_size, num_labels, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
                 max_position_embeddings, type_vocab_size, hidden_dropout_prob, attention_probs_dropout_prob,
                 layer_norm_eps):
        super().__init__()
        h = hidden_size
        self.word = nn.Embedding(vocab_size, h)
        self.pos = nn.Embedding(max_position_embeddings, h)
        self.token_type = nn.Embedding(type_vocab_size, h)
        self.emb_ln = nn.LayerNorm(h, eps=layer_norm_eps)
        self.drop = nn.Dropout(hidden_dropout_prob)
        self.layers = nn.ModuleList([Layer(h, num_attention_heads, intermediate_size, attention_probs_dropout_prob,
                                           layer_norm_eps) for _ in range(num_hidden_layers)])
        self.classifier = nn.Linear(h, num_labels)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, input_ids, attention_mask, token_type_ids):
        T = input_ids.shape[1]
        pos = torch.arange(T, dtype=torch.long, device=input_ids.device).unsqueeze(0)
        x = self.word(input_ids) + self.pos(pos) + self.token_type(token_type_ids)
        x = self.drop(self.emb_ln(x))
        m = attention_mask.to(x.dtype)
        bias = ((1.0 - m) * -1e9)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, bias)
        pooled = (x * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
        return self.classifier(self.drop(pooled))

# ------------------------------------------------------------------------------------------------- training


@torch.no_grad()
def evaluate(model, rows, bs=128):
    model.eval()
    preds = []
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    out = [None] * len(rows)
    for s in range(0, len(order), bs):
        idx = order[s:s + bs]
        logits = model(*collate([rows[i]["input_ids"] for i in idx]))
        for i, p in zip(idx, logits.argmax(-1).tolist()):
            out[i] = p
    preds = out
    correct = [p == r["label_id"] for p, r in zip(preds, rows)]
    per = {}
    for lab in LABELS:
        c = [ok for ok, r in zip(correct, rows) if r["label"] == lab]
        per[lab] = {"n": len(c), "accuracy": round(sum(c) / max(1, len(c)), 4)}
    conf = [[0] * len(LABELS) for _ in LABELS]
    for p, r in zip(preds, rows):
        conf[r["label_id"]][p] += 1
    return sum(correct) / len(rows), per, conf


def train(args, tok, log):
    t0 = time.time()
    train_rows, train_docs = build_train(tok, args.per_class)
    held_rows, held_docs = build_heldout(tok, args.heldout_per_class)
    t_data = time.time() - t0
    log(f"data: {len(train_rows)} train snippets from {train_docs} docs, {len(held_rows)} held-out snippets "
        f"from {held_docs} docs, built in {t_data:.1f}s")
    with open(os.path.join(WORK, "heldout.jsonl"), "w", encoding="utf-8") as f:
        for r in held_rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

    torch.manual_seed(0)
    vocab = max(tok.inv) + 1
    model = SourceClassifier(vocab, len(LABELS), **ARCH)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"model: {nparams} params, vocab {vocab}")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "pos." not in n and "token_type" not in n]
    nodecay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "pos." not in n and "token_type" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98))
    warm = max(1, args.steps // 20)

    def lr_at(step):
        if step < warm:
            return args.lr * (step + 1) / warm
        p = (step - warm) / max(1, args.steps - warm)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))

    # length-bucketed batches: sort chunks of 50 batches by length, then shuffle the batches
    rnd = random.Random(0)
    pos, ema, ema_acc = 0, None, None
    batches = []
    t_train = time.time()
    for step in range(args.steps):
        if not batches:
            chunk = train_rows[pos:pos + args.batch * 50]
            pos += args.batch * 50
            if len(chunk) < args.batch * 50:
                rnd.shuffle(train_rows)
                pos = 0
                chunk = train_rows[:args.batch * 50]
                pos = args.batch * 50
            chunk.sort(key=lambda r: len(r[0]))
            batches = [chunk[i:i + args.batch] for i in range(0, len(chunk), args.batch)]
            rnd.shuffle(batches)
        b = batches.pop()
        model.train()
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        ids, mask, tt = collate([r[0] for r in b])
        y = torch.tensor([r[1] for r in b])
        logits = model(ids, mask, tt)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        acc = (logits.argmax(-1) == y).float().mean().item()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        ema_acc = acc if ema_acc is None else 0.98 * ema_acc + 0.02 * acc
        if step % 100 == 0 or step == args.steps - 1:
            log(f"step {step:5d} loss {ema:.4f} train-acc {ema_acc:.3f} lr {lr_at(step):.2e} "
                f"{time.time() - t_train:.0f}s")
    t_train = time.time() - t_train
    acc, per, conf = evaluate(model, held_rows)
    log(f"held-out accuracy {acc:.4f} per class {json.dumps(per)}")
    log("confusion (rows true, cols pred, order " + ",".join(LABELS) + "): " + json.dumps(conf))
    meta = {
        "params": nparams, "vocab_size": vocab, "arch": ARCH, "labels": LABELS, "steps": args.steps,
        "batch": args.batch, "lr": args.lr, "threads": args.threads, "train_snippets": len(train_rows),
        "train_examples_seen": args.steps * args.batch, "train_docs": train_docs, "heldout_docs": held_docs,
        "heldout_snippets": len(held_rows), "heldout_accuracy": round(acc, 4), "heldout_per_class": per,
        "confusion": conf, "final_train_loss_ema": round(ema, 4), "data_seconds": round(t_data, 1),
        "train_seconds": round(t_train, 1), "per_class": args.per_class,
    }
    torch.save({"state_dict": model.state_dict(), "meta": meta}, os.path.join(WORK, "ckpt.pt"))
    return model, meta

# --------------------------------------------------------------------------------------------------- export

PARITY_TEXTS = [
    "And the LORD spake unto Moses, saying, Speak unto the children of Israel.",
    "Helium is a colourless, odourless gaseous nonmetallic element. It was discovered in the solar spectrum in 1868.",
    "lighthouse (n): a tower with a light that gives warning of shoals to passing ships.",
    "Never put off till tomorrow what you can do today. -- Café wisdom",
]


def export(model, meta, tok, out, log):
    os.makedirs(out, exist_ok=True)
    model.eval()
    onnx_path = os.path.join(out, "model.onnx")
    dummy = collate([tok.encode("a test"), tok.encode("another longer test sentence here")])
    dyn = {n: {0: "batch_size", 1: "sequence_length"} for n in ("input_ids", "attention_mask", "token_type_ids")}
    dyn["logits"] = {0: "batch_size"}
    torch.onnx.export(model, dummy, onnx_path, input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["logits"], dynamic_axes=dyn, opset_version=OPSET, do_constant_folding=True)
    import onnx
    m = onnx.load(onnx_path)
    onnx.checker.check_model(m)
    io = {
        "inputs": [(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim],
                    onnx.TensorProto.DataType.Name(i.type.tensor_type.elem_type)) for i in m.graph.input],
        "outputs": [(o.name, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim],
                     onnx.TensorProto.DataType.Name(o.type.tensor_type.elem_type)) for o in m.graph.output],
    }
    size = os.path.getsize(onnx_path)
    log(f"onnx: {size} bytes, io {io}")
    assert size <= 4 * 1024 * 1024, "model.onnx over 4 MB"

    # tokenizer files (the family's, right padding, 128 positions)
    write_classifier_tokenizer(TOK_DIR, out, MAX_POS)

    cfg = {
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "vocab_size": meta["vocab_size"],
        "hidden_size": ARCH["hidden_size"],
        "num_hidden_layers": ARCH["num_hidden_layers"],
        "num_attention_heads": ARCH["num_attention_heads"],
        "intermediate_size": ARCH["intermediate_size"],
        "hidden_act": "gelu",
        "hidden_dropout_prob": ARCH["hidden_dropout_prob"],
        "attention_probs_dropout_prob": ARCH["attention_probs_dropout_prob"],
        "max_position_embeddings": MAX_POS,
        "type_vocab_size": ARCH["type_vocab_size"],
        "layer_norm_eps": ARCH["layer_norm_eps"],
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
        "classifier_pooling": "mean",
        "pad_token_id": PAD,
        "num_labels": len(LABELS),
        "id2label": {str(i): l for i, l in enumerate(LABELS)},
        "label2id": {l: i for i, l in enumerate(LABELS)},
        "problem_type": "single_label_classification",
        "torch_dtype": "float32",
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)

    # parity fixtures: each text alone, then all of them as one right-padded batch
    with torch.no_grad():
        singles = []
        for t in PARITY_TEXTS:
            ids = tok.encode(t)
            i, m_, tt = collate([ids])
            lg = model(i, m_, tt)[0]
            singles.append({"text": t, "input_ids": ids, "attention_mask": [1] * len(ids),
                            "token_type_ids": [0] * len(ids), "logits": lg.tolist(),
                            "label": LABELS[int(lg.argmax())]})
        i, m_, tt = collate([s["input_ids"] for s in singles])
        blg = model(i, m_, tt)
        pad_diff = max(float((blg[k] - torch.tensor(s["logits"])).abs().max()) for k, s in enumerate(singles))
    parity = {
        "kind": "sequence-classification",
        "tolerance": 1e-4,
        "inputs": ["input_ids", "attention_mask", "token_type_ids"],
        "outputs": {"logits": ["batch_size", len(LABELS)]},
        "id2label": cfg["id2label"],
        "single": singles,
        "batch": {"texts": PARITY_TEXTS, "padding_side": "right", "pad_token_id": PAD,
                  "input_ids": i.tolist(), "attention_mask": m_.tolist(), "token_type_ids": tt.tolist(),
                  "logits": blg.tolist()},
        "torch_padded_vs_single_max_abs_diff": pad_diff,
    }
    with open(os.path.join(out, "parity.json"), "w", encoding="utf-8") as f:
        json.dump(parity, f, ensure_ascii=False, indent=1)
    log(f"parity: {[s['label'] for s in singles]}; torch padded-vs-single max diff {pad_diff:.2e}")
    meta["onnx_bytes"] = size
    meta["onnx_io"] = io
    write_card(out, meta)


def write_card(out, meta):
    per = meta["heldout_per_class"]
    rows = "\n".join(f"| {l} | {per[l]['n']} | {per[l]['accuracy'] * 100:.1f}% |" for l in LABELS)
    conf = "\n".join(f"| {l} | " + " | ".join(str(c) for c in meta["confusion"][i]) + " |" for i, l in enumerate(LABELS))
    a = meta["arch"]
    pairs = sorted(((meta["confusion"][i][j], LABELS[i], LABELS[j]) for i in range(len(LABELS))
                    for j in range(len(LABELS)) if i != j), reverse=True)
    top = ", ".join(f"{t} -> {p} ({n})" for n, t, p in pairs[:3] if n > 0) or "none"
    src = {"wordnet": "wordnet (`/usr/share/wordnet/data.*` glosses)", "gcide": "dict-gcide",
           "bible": "bible-kjv-text (KJV)", "fortune": "fortunes, fortunes-min", "elements": "dict-elements"}
    docs = "\n".join(f"| {i} | {l} | {src[l]} | {meta['train_docs'][l]} | {meta['heldout_docs'][l]} |"
                     for i, l in enumerate(LABELS))
    card = f"""# {NAME}

A tiny BERT-style sequence classifier that predicts which Debian text corpus a snippet comes from. Part of the
Tandem model family (same byte-level BPE tokenizer, 4,096 tokens). Built by `recipes/classifier.py`.

**Intended use**: (1) a real, fast test fixture for Tandem's classifier path (`Classifier.classify(texts)` on
onnxruntime-node: tokenizer, right padding, `token_type_ids`, `id2label`, softmax); (2) a corpus-source detector
for the family's data (e.g. checking where generated or retrieved text "sounds like" it comes from). It is not a
general-purpose text classifier: anything that is not one of the five corpora still gets one of the five labels.

## Labels

| id | label | Debian source | train docs | held-out docs |
|---|---|---|---|---|
{docs}

foldoc / jargon (BLADE domain corpus) are never used.

## Model

| | |
|---|---|
| architecture | post-LN BERT encoder: word + learned absolute position + token-type embeddings, LayerNorm; {a['num_hidden_layers']} layers, hidden {a['hidden_size']}, {a['num_attention_heads']} heads, FFN {a['intermediate_size']} (GELU); **mean pooling over `attention_mask`** (the tokenizer adds no [CLS]; config `classifier_pooling: "mean"`); linear head |
| parameters | {meta['params']:,} |
| max positions | 128 (`model_max_length` 128; truncate longer inputs) |
| tokenizer | the family's byte-level BPE, no special tokens added; `<pad>` = id 3, **padding on the right** |
| ONNX | `model.onnx`, opset {OPSET}, fp32, {meta['onnx_bytes'] / 1e6:.2f} MB |
| inputs | `input_ids`, `attention_mask`, `token_type_ids`: int64 `[batch_size, sequence_length]` (token types all 0) |
| output | `logits`: float32 `[batch_size, {len(LABELS)}]` (apply softmax; single-label) |

`config.json` says `BertForSequenceClassification` / `model_type: bert` so Optimum-layout loaders treat it as one;
the weights are only shipped as ONNX (pooling is mean, not BERT's [CLS] pooler, so they would not load into
transformers' class as-is).

## Data and split

Documents from `recipes/build/corpus/train.jsonl` (training) and `heldout.jsonl` (evaluation), built by
`recipes/corpus.py` with the family's one split rule (`recipes/SPLITS.md`):
`int(sha1(key), 16) % 10 == 0` is held out, keys `word:<headword>` (gcide and wordnet share them),
`kjv:<Book> <chapter>:<verse>` (verse level), `fortune:<sha1>`, `element:<name>`. No held-out document or verse
is in the training snippets.

A snippet is 1-3 consecutive sentences of one document (whitespace collapsed; KJV chapter headers and verse
numbers removed; 30% start at the document's beginning, i.e. with the headword), cut to at most 64 tokens.
Training: {meta['per_class']:,} snippets per class sampled with replacement from the training documents (classes
balanced; 10% of them are 3-6 sentences cut to 128 tokens so that all position embeddings are trained),
{meta['train_snippets']:,} snippets in all. Held-out evaluation: {meta['heldout_snippets']:,} de-duplicated snippets
(<= 64 tokens) from the held-out documents (fewer for elements: only {meta['heldout_docs']['elements']} held-out
elements exist).

## Training

{meta['steps']:,} steps x batch {meta['batch']} ({meta['train_examples_seen']:,} examples seen), AdamW (lr {meta['lr']},
betas 0.9/0.98, weight decay 0.01), 5% warmup then cosine, dropout 0.1, seed 0; torch {torch.__version__} on CPU with
{meta['threads']} thread. Wall time: snippets {meta['data_seconds']:.0f} s, training {meta['train_seconds']:.0f} s.
Final training loss (EMA) {meta['final_train_loss_ema']}.

## Held-out accuracy

**{meta['heldout_accuracy'] * 100:.1f}%** over {meta['heldout_snippets']:,} held-out snippets.

| class | snippets | accuracy |
|---|---|---|
{rows}

Confusion (rows: true, columns: predicted; order {', '.join(LABELS)}):

| true \\ pred | {' | '.join(LABELS)} |
|---|{'---|' * len(LABELS)}
{conf}

Largest confusions (true -> predicted): {top}. GCIDE entries carry literary citations (proverbs, verse, some
from the KJV) that read like fortunes or scripture, and fortunes include definitions and quotations, so part of the
remaining error is genuine ambiguity of a one-sentence snippet.

## Files

`model.onnx`, `config.json` (id2label / label2id), `tokenizer.json`, `tokenizer_config.json` (padding right,
model_max_length 128), `special_tokens_map.json`, `parity.json` (PyTorch logits for 4 fixed texts, alone and as one
right-padded batch, with their ids and masks; onnxruntime must match within 1e-4; checked by
`node recipes/check_classifier.mjs`).

## Retrain

```
/usr/bin/python3 recipes/classifier.py --steps {meta['steps']} --batch {meta['batch']} --per-class {meta['per_class']}
node recipes/check_classifier.mjs
```
"""
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(card)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--per-class", type=int, default=12000)
    ap.add_argument("--heldout-per-class", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("TANDEM_CLS_THREADS", 1)))
    ap.add_argument("--out", default=os.path.join(MODELS, NAME))
    ap.add_argument("--export-only", action="store_true")
    args = ap.parse_args()
    log = run_log(WORK, args.threads)

    t0 = time.time()
    tok = load_tok()
    if args.export_only:
        ck = torch.load(os.path.join(WORK, "ckpt.pt"))
        meta = ck["meta"]
        model = SourceClassifier(meta["vocab_size"], len(LABELS), **ARCH)
        model.load_state_dict(ck["state_dict"])
    else:
        log(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}")
        model, meta = train(args, tok, log)
    export(model, meta, tok, args.out, log)
    log(f"total wall time {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
