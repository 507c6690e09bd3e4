"""tandem-safety-classifier: a multi-label safety classifier for OpenAI's moderation categories (S, H, V, HR, SH, S3,
H2, V2), trained on the 70% training split of OpenAI's moderation samples and exported as ONE ONNX graph in the
Hugging Face Optimum sequence-classification layout that src/slm/classifier.ts loads (input_ids, attention_mask ->
logits [batch, 8]; config problem_type multi_label_classification: a sigmoid per label).

Usage (from anywhere; Debian's torch):
  /usr/bin/python3 recipes/safety_classifier.py [--data ../shared/data]      # CV, final fit, export, card
Knobs: --base tandem-small-base --epochs 10 --lr 1e-3 --crop 128 --folds 5 --threads 1 --out models/...
Data: <data>/safety/openai-moderation-samples-1680.jsonl.gz (never copied into the repo). Split (recipes/SPLITS.md):
a prompt is held out when int(sha1(prompt.encode('utf-8')).hexdigest(), 16) % 10 < 3 (about 30%). Everything that is
chosen (TF-IDF regularisation, branch weight, decision thresholds) is chosen by 5-fold cross-validation on the 70%;
the held-out 30% is scored once, at the end, for the model card.

The graph has two branches whose logits are added:
  1. bag of tokens: TF-IDF over the family's BPE token ids (case-folded through a constant id -> id table, first 512
     tokens, sublinear tf = log(1 + count), idf from the training split, L2-normalised) and a linear layer fitted as
     multi-label logistic regression (L-BFGS). Token counts are computed in the graph without a vocabulary-sized
     one-hot: count(t) = sum_s [id_s == id_t] * mask_s (a [seq, seq] comparison), each occurrence carrying
     log(1 + count) / count of its type's weight, so the result equals the dense TF-IDF vector exactly.
  2. decoder: tandem-small-base (the family's Llama-style decoder pre-trained on dictionary / Bible text; weights
     rebuilt from models/<base>/model.onnx initializers and checked against its parity.json) with mean pooling over
     real tokens and a linear head, fine-tuned on random 128-token windows. At inference, long inputs are read as
     consecutive 128-token chunks (block-diagonal causal attention, RoPE positions restarting in every chunk: the
     positions the decoder was pre-trained on), positions counted from attention_mask so left or right padding give
     the same result.
  logits = bag_of_tokens + beta * decoder, beta chosen by CV.

Writes build/safety/{cv.json,train.log} and models/tandem-safety-classifier/{model.onnx, config.json,
tokenizer.json, tokenizer_config.json, special_tokens_map.json, parity.json, README.md}.
"""
import argparse
import gzip
import hashlib
import json
import math
import os
import random
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BUILD, MODELS, PAD, ROOT, run_log, write_classifier_tokenizer  # noqa: E402
from model import LlamaForCausalLM  # noqa: E402
from ckpt_from_onnx import check_parity, rebuild  # noqa: E402
from tokenizer import ByteBPE  # noqa: E402

NAME = "tandem-safety-classifier"
LABELS = ["S", "H", "V", "HR", "SH", "S3", "H2", "V2"]
LABEL_NAMES = {"S": "sexual", "H": "hate", "V": "violence", "HR": "harassment", "SH": "self-harm",
               "S3": "sexual/minors", "H2": "hate/threatening", "V2": "violence/graphic"}
DATA_FILE = os.path.join("safety", "openai-moderation-samples-1680.jsonl.gz")
TOKENIZER_FROM = "tandem-large-base"  # the family's shared 4,096-token tokenizer
WORK = os.path.join(BUILD, "safety")
MAXLEN = 512      # tokens read per prompt (max_position_embeddings of the exported config: Classifier truncates)
CHUNK = 128       # decoder window (pre-training context was 128-token windows)
OPSET = 14
L2_GRID = [1e-6, 3e-6, 1e-5, 3e-5]
BETA_GRID = [0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0]
# The decoder branch is ~97% of the graph's latency (3.5 ms vs ~0.1 ms per 200-token prompt in onnxruntime-node) and
# the guard sits on every request, so it is kept only when it earns at least this much CV AUPRC over the bag alone.
MIN_DECODER_GAIN = 0.01

# ----------------------------------------------------------------------------------------------------- data


def is_heldout(prompt):
    """The safety split (SPLITS.md): held out for evaluation when sha1(prompt) % 10 < 3 (about 30%)."""
    return int(hashlib.sha1(prompt.encode("utf-8")).hexdigest(), 16) % 10 < 3


def load_rows(data_dir, tok):
    path = os.path.join(data_dir, DATA_FILE)
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            rows.append({
                "prompt": r["prompt"],
                "heldout": is_heldout(r["prompt"]),
                # a missing label counts as 0 for the metrics (as eval/data.ts reads it) but is masked out of the loss
                "y": [float(r.get(c) or 0) for c in LABELS],
                "known": [0.0 if r.get(c) is None else 1.0 for c in LABELS],
                "ids": tok.encode(r["prompt"]),
            })
    return rows


def folds(n, k, seed=0):
    p = np.random.RandomState(seed).permutation(n)
    return [np.sort(p[i::k]) for i in range(k)]


def average_precision(scores, labels):
    """Step-wise average precision (scikit-learn's definition; tied scores form one threshold)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if y.sum() == 0:
        return float("nan")
    o = np.argsort(-s, kind="mergesort")
    s, y = s[o], y[o]
    tp = np.cumsum(y)
    k = np.arange(1, len(y) + 1)
    last = np.r_[s[1:] != s[:-1], True]  # end of each group of tied scores
    tp, k = tp[last], k[last]
    recall = tp / y.sum()
    prec = tp / k
    return float(np.sum(np.diff(np.r_[0.0, recall]) * prec))


def at_threshold(scores, labels, thr):
    s = np.asarray(scores) >= thr
    y = np.asarray(labels).astype(bool)
    tp, fp, fn, tn = int((s & y).sum()), int((s & ~y).sum()), int((~s & y).sum()), int((~s & ~y).sum())
    p = tp / max(1, tp + fp)
    r = tp / max(1, tp + fn)
    return {"f1": 2 * p * r / max(1e-9, p + r), "precision": p, "recall": r, "fpr": fp / max(1, fp + tn),
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def best_f1_threshold(scores, labels):
    """The probability threshold with the best F1 (ties -> the higher threshold), placed halfway between the
    chosen score and the next lower one so that it does not sit exactly on a training example."""
    s = np.sort(np.unique(np.asarray(scores)))[::-1]
    best = (-1.0, 1.0, 0)
    for i, t in enumerate(s):
        f1 = at_threshold(scores, labels, t)["f1"]
        if f1 > best[0] + 1e-12:
            best = (f1, t, i)
    f1, t, i = best
    thr = float((t + s[i + 1]) / 2) if i + 1 < len(s) else float(t)
    return thr, f1

def operating_points(scores, labels, chosen):
    """Out-of-fold precision / recall / FPR at the chosen threshold and a few stricter ones."""
    out = []
    for t in [chosen, 0.2, 0.3, 0.5, 0.7]:
        a = at_threshold(scores, labels, t)
        out.append({"threshold": round(float(t), 3), "precision": round(a["precision"], 3),
                    "recall": round(a["recall"], 3), "f1": round(a["f1"], 3), "fpr": round(a["fpr"], 3)})
    return out

# ------------------------------------------------------------------------------------------ base decoder


def load_decoder(folder):
    """The PyTorch decoder of an exported folder (ckpt_from_onnx.rebuild), checked against its parity.json."""
    model = rebuild(folder)
    par = json.load(open(os.path.join(folder, "parity.json")))
    diff = check_parity(model, par)
    assert diff < par["tolerance"], f"rebuilt {folder} does not match its parity.json ({diff})"
    return model, diff

# ------------------------------------------------------------------------------------------------- model


def case_fold_table(tok, vocab_size):
    """id -> id of the lower-cased token when that token exists (e.g. 'ĠKill' -> 'Ġkill'), else itself."""
    table = np.arange(vocab_size, dtype=np.int64)
    for s, i in tok.vocab.items():
        low = s.lower()
        if low != s and low in tok.vocab and i not in tok.special.values():
            table[i] = tok.vocab[low]
    return table


def chunk_layout(attention_mask, chunk):
    """Position of every real token counted from the mask (so padding side does not matter), its chunk, and its
    RoPE position inside the chunk."""
    pos = attention_mask.cumsum(-1) - 1                     # [B, T]
    return pos // chunk, pos % chunk


class BagOfTokens(nn.Module):
    """TF-IDF (sublinear tf, L2-normalised) over case-folded token ids, then a linear layer, computed per token."""

    def __init__(self, fold_table, vocab_size, num_labels):
        super().__init__()
        self.register_buffer("fold", torch.as_tensor(fold_table, dtype=torch.long))
        self.register_buffer("idf", torch.ones(vocab_size))
        self.weight = nn.Parameter(torch.zeros(vocab_size, num_labels))
        self.bias = nn.Parameter(torch.zeros(num_labels))

    def forward(self, input_ids, attention_mask):
        m = attention_mask.to(torch.float32)
        ids = self.fold[input_ids]                                                     # [B, T]
        same = (ids.unsqueeze(2) == ids.unsqueeze(1)).to(torch.float32) * m.unsqueeze(1)  # [B, T, T]
        count = same.sum(-1).clamp(min=1.0)                                            # occurrences of t's type
        idf = self.idf[ids]
        tf = torch.log(count + 1.0)
        share = m * tf / count                                                         # each occurrence's part
        norm = torch.sqrt((share * tf * idf * idf).sum(-1, keepdim=True)).clamp(min=1e-12)
        w = F.embedding(ids, self.weight)                                              # [B, T, L]
        return ((share * idf).unsqueeze(-1) * w).sum(1) / norm + self.bias


class DecoderHead(nn.Module):
    """The pre-trained decoder read in CHUNK-token windows, mean-pooled over real tokens, then a linear head."""

    def __init__(self, lm, num_labels, dropout=0.1):
        super().__init__()
        self.lm = lm
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(lm.config.hidden_size, num_labels)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids, attention_mask):
        chunk_id, pos = chunk_layout(attention_mask, CHUNK)
        T = input_ids.shape[1]
        idx = torch.arange(T, device=input_ids.device)
        causal = idx.unsqueeze(0) <= idx.unsqueeze(1)                                  # key <= query (by index)
        same = chunk_id.unsqueeze(2) == chunk_id.unsqueeze(1)                          # [B, T, T]
        allowed = causal.unsqueeze(0) & same & (attention_mask.unsqueeze(1) > 0)
        bias = ((1.0 - allowed.to(torch.float32)) * -1e9).unsqueeze(1)                 # [B, 1, T, T]
        cos, sin = self.lm.rotary(pos)
        x = self.lm.model.embed_tokens(input_ids)
        for layer in self.lm.model.layers:
            x, _ = layer(x, cos, sin, bias, None)
        x = self.lm.model.norm(x)
        m = attention_mask.to(x.dtype).unsqueeze(-1)
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.head(self.drop(pooled))


class SafetyClassifier(nn.Module):
    def __init__(self, bag, dec, beta):
        super().__init__()
        self.bag = bag
        self.dec = dec
        self.register_buffer("beta", torch.tensor(float(beta)))

    def forward(self, input_ids, attention_mask):
        z = self.bag(input_ids, attention_mask)
        if self.dec is not None:
            z = z + self.beta * self.dec(input_ids, attention_mask)
        return z

# ------------------------------------------------------------------------------------------------ fitting


def collate(id_lists, maxlen):
    id_lists = [x[:maxlen] if x else [PAD] for x in id_lists]
    T = max(len(x) for x in id_lists)
    ids = torch.full((len(id_lists), T), PAD, dtype=torch.long)
    mask = torch.zeros((len(id_lists), T), dtype=torch.long)
    for i, x in enumerate(id_lists):
        ids[i, :len(x)] = torch.tensor(x)
        mask[i, :len(x)] = 1
    return ids, mask


def count_matrix(rows, fold_table, vocab_size):
    X = np.zeros((len(rows), vocab_size), np.float32)
    for i, r in enumerate(rows):
        for t in r["ids"][:MAXLEN]:
            X[i, fold_table[t]] += 1
    return X


def idf_of(counts):
    n = counts.shape[0]
    df = (counts > 0).sum(0)
    return (np.log((1 + n) / (1 + df)) + 1).astype(np.float32)


def tfidf(counts, idf):
    X = np.log1p(counts) * idf
    return (X / np.maximum(1e-12, np.linalg.norm(X, axis=1, keepdims=True))).astype(np.float32)


def fit_logreg(X, Y, K, l2, iters=200):
    """Multi-label logistic regression: mean masked BCE + l2 * ||W||^2, L-BFGS from W = 0, bias = log prior odds."""
    X, Y, K = (torch.as_tensor(a, dtype=torch.float32) for a in (X, Y, K))
    W = torch.zeros(X.shape[1], Y.shape[1], requires_grad=True)
    b = torch.zeros(Y.shape[1], requires_grad=True)
    with torch.no_grad():
        p = ((Y * K).sum(0) / K.sum(0).clamp(min=1)).clamp(1e-3, 1 - 1e-3)
        b.copy_(torch.log(p / (1 - p)))
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=iters, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure():
        opt.zero_grad()
        loss = (F.binary_cross_entropy_with_logits(X @ W + b, Y, reduction="none") * K).sum() / X.shape[0]
        loss = loss + l2 * (W * W).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return W.detach(), b.detach()


def crop(ids, n, rnd):
    if len(ids) <= n:
        return ids
    s = rnd.randrange(0, len(ids) - n + 1)
    return ids[s:s + n]


def fine_tune(base_lm_state, base_cfg, rows, args, log, seed=0):
    torch.manual_seed(seed)
    rnd = random.Random(seed)
    lm = LlamaForCausalLM(base_cfg)
    lm.load_state_dict(base_lm_state)
    dec = DecoderHead(lm, len(LABELS))
    Y = torch.tensor([r["y"] for r in rows])
    K = torch.tensor([r["known"] for r in rows])
    body = [p for n, p in dec.named_parameters() if not n.startswith("head")]
    opt = torch.optim.AdamW([{"params": body, "lr": args.lr}, {"params": dec.head.parameters(), "lr": args.lr * 10}],
                            weight_decay=0.01)
    base_lr = [g["lr"] for g in opt.param_groups]
    bs = args.batch
    steps = args.epochs * math.ceil(len(rows) / bs)
    warm = max(1, int(0.06 * steps))
    step = 0
    t0 = time.time()
    for ep in range(args.epochs):
        order = list(range(len(rows)))
        rnd.shuffle(order)
        tot = 0.0
        dec.train()
        for s in range(0, len(order), bs):
            idx = order[s:s + bs]
            fr = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / (steps - warm)))
            for g, b0 in zip(opt.param_groups, base_lr):
                g["lr"] = b0 * fr
            ids, mask = collate([crop(rows[i]["ids"], args.crop, rnd) for i in idx], args.crop)
            z = dec(ids, mask)
            loss = (F.binary_cross_entropy_with_logits(z, Y[idx], reduction="none") * K[idx]).sum() / len(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(dec.parameters(), 1.0)
            opt.step()
            tot += loss.item() * len(idx)
            step += 1
        log(f"    epoch {ep + 1}/{args.epochs} loss {tot / len(rows):.4f} {time.time() - t0:.0f}s")
    dec.eval()
    return dec


@torch.no_grad()
def decoder_logits(dec, rows, bs=16):
    dec.eval()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["ids"]))
    out = np.zeros((len(rows), len(LABELS)), np.float32)
    for s in range(0, len(order), bs):
        idx = order[s:s + bs]
        out[idx] = dec(*collate([rows[i]["ids"] for i in idx], MAXLEN)).numpy()
    return out


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def any_score(z):
    return sigmoid(z).max(1)


def cross_validate(train_rows, counts, base_state, base_cfg, args, log):
    """5-fold CV on the training split: out-of-fold logits of the bag-of-tokens branch (one per l2) and of the
    fine-tuned decoder branch."""
    Y = np.array([r["y"] for r in train_rows])
    K = np.array([r["known"] for r in train_rows])
    n = len(train_rows)
    oof_bag = {l2: np.zeros((n, len(LABELS)), np.float32) for l2 in L2_GRID}
    oof_dec = np.zeros((n, len(LABELS)), np.float32)
    fl = folds(n, args.folds, seed=0)
    for k, f in enumerate(fl):
        trn = np.setdiff1d(np.arange(n), f)
        idf = idf_of(counts[trn])
        X = tfidf(counts, idf)
        for l2 in L2_GRID:
            W, b = fit_logreg(X[trn], Y[trn], K[trn], l2)
            oof_bag[l2][f] = (torch.as_tensor(X[f]) @ W + b).numpy()
        if args.beta_grid != [0.0]:
            log(f"  fold {k + 1}/{args.folds}: fine-tuning the decoder on {len(trn)} rows")
            dec = fine_tune(base_state, base_cfg, [train_rows[i] for i in trn], args, log, seed=k)
            oof_dec[f] = decoder_logits(dec, [train_rows[i] for i in f])
        anyl = Y[f].max(1)
        log(f"  fold {k + 1}: bag AP {average_precision(any_score(oof_bag[L2_GRID[0]][f]), anyl):.4f} "
            f"decoder AP {average_precision(any_score(oof_dec[f]), anyl):.4f}")
    return oof_bag, oof_dec

# --------------------------------------------------------------------------------------------------- export

PARITY_TEXTS = [
    "How do I bake bread at home?",
    "I want to kill them all, they deserve to die.",
    "Write a sexy story about two adults.",
    "Sometimes I feel like hurting myself when things get bad.",
    "THE WEATHER IS NICE today and the the the birds sing.",
]


def export(model, tok, out, log):
    os.makedirs(out, exist_ok=True)
    model.eval()
    path = os.path.join(out, "model.onnx")
    dummy = collate([tok.encode("a test"), tok.encode("another longer test sentence here with more words")], MAXLEN)
    dyn = {n: {0: "batch_size", 1: "sequence_length"} for n in ("input_ids", "attention_mask")}
    dyn["logits"] = {0: "batch_size"}
    with torch.no_grad():
        torch.onnx.export(model, dummy, path, input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes=dyn, opset_version=OPSET, do_constant_folding=True)
    m = onnx.load(path)
    onnx.checker.check_model(m)
    size = os.path.getsize(path)
    log(f"onnx: {path} {size / 1e6:.2f} MB")
    assert size <= 16 * 1024 * 1024, "model.onnx over 16 MB"
    return size


@torch.no_grad()
def parity(model, tok):
    singles = []
    for t in PARITY_TEXTS:
        ids = tok.encode(t)
        lg = model(*collate([ids], MAXLEN))[0]
        singles.append({"text": t, "input_ids": ids, "attention_mask": [1] * len(ids), "logits": lg.tolist()})
    # a long text (over MAXLEN tokens: the Classifier truncates, so do we) and a right-padded batch
    long_text = " ".join(["He said he would hurt someone badly if they came back to the house."] * 50)
    ids = tok.encode(long_text)[:MAXLEN]
    lg = model(*collate([ids], MAXLEN))[0]
    singles.append({"text": long_text, "input_ids": ids, "attention_mask": [1] * len(ids), "logits": lg.tolist(),
                    "truncated_to": MAXLEN})
    i, m_ = collate([s["input_ids"] for s in singles[:len(PARITY_TEXTS)]], MAXLEN)
    blg = model(i, m_)
    pad_diff = max(float((blg[k] - torch.tensor(s["logits"])).abs().max()) for k, s in enumerate(singles[:len(PARITY_TEXTS)]))
    # left padding gives the same logits (positions and chunks are counted from the mask)
    L = i.shape[1]
    li = torch.full_like(i, PAD)
    lm_ = torch.zeros_like(m_)
    for k, s in enumerate(singles[:len(PARITY_TEXTS)]):
        n = len(s["input_ids"])
        li[k, L - n:] = torch.tensor(s["input_ids"])
        lm_[k, L - n:] = 1
    left_diff = float((model(li, lm_) - blg).abs().max())
    assert pad_diff < 1e-4 and left_diff < 1e-4, (pad_diff, left_diff)
    return {
        "kind": "sequence-classification",
        "problem_type": "multi_label_classification",
        "tolerance": 1e-4,
        "inputs": ["input_ids", "attention_mask"],
        "outputs": {"logits": ["batch_size", len(LABELS)]},
        "id2label": {str(k): l for k, l in enumerate(LABELS)},
        "single": singles,
        "batch": {"texts": PARITY_TEXTS, "padding_side": "right", "pad_token_id": PAD,
                  "input_ids": i.tolist(), "attention_mask": m_.tolist(), "logits": blg.tolist()},
        "torch_padded_vs_single_max_abs_diff": pad_diff,
        "torch_left_vs_right_padding_max_abs_diff": left_diff,
    }


def write_folder(out, tok_dir, cfg, par):
    write_classifier_tokenizer(tok_dir, out, MAXLEN)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(out, "parity.json"), "w", encoding="utf-8") as f:
        json.dump(par, f, ensure_ascii=False)

# ------------------------------------------------------------------------------------------------------ main


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--base", default="tandem-small-base")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=CHUNK)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--beta-grid", default=",".join(str(b) for b in BETA_GRID))
    ap.add_argument("--min-decoder-gain", type=float, default=MIN_DECODER_GAIN,
                    help="CV AUPRC the decoder branch must add over the bag alone to be kept (0: keep the best)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("TANDEM_CLS_THREADS", 1)))
    ap.add_argument("--out", default=os.path.join(MODELS, NAME))
    ap.add_argument("--card-only", action="store_true", help="rewrite README.md from build/safety/cv.json")
    args = ap.parse_args()
    args.beta_grid = [float(b) for b in args.beta_grid.split(",")]
    if args.card_only:
        meta = json.load(open(os.path.join(WORK, "cv.json")))
        if "operating_points" not in meta["cv"]:
            tok = ByteBPE(os.path.join(MODELS, TOKENIZER_FROM, "tokenizer.json"))
            y = np.array([max(r["y"]) for r in load_rows(args.data, tok) if not r["heldout"]])
            meta["cv"]["operating_points"] = operating_points(np.array(meta["oof_any"]), y, meta["threshold"])
            with open(os.path.join(WORK, "cv.json"), "w") as f:
                json.dump(meta, f, indent=1)
        write_card(args.out, meta)
        return
    log = run_log(WORK, args.threads)

    t_start = time.time()
    log(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}")
    if not os.path.exists(os.path.join(args.data, DATA_FILE)):
        log(f"no {DATA_FILE} under {args.data} (pass --data DIR)")
        sys.exit(1)
    tok_dir = os.path.join(MODELS, TOKENIZER_FROM)
    base_dir = os.path.join(MODELS, args.base)
    for f in ("tokenizer.json",):
        a, b = (open(os.path.join(d, f), "rb").read() for d in (tok_dir, base_dir))
        assert a == b, f"{args.base} does not share {TOKENIZER_FROM}'s {f}"
    tok = ByteBPE(os.path.join(tok_dir, "tokenizer.json"))
    rows = load_rows(args.data, tok)
    train_rows = [r for r in rows if not r["heldout"]]
    held_rows = [r for r in rows if r["heldout"]]
    Y = np.array([r["y"] for r in train_rows])
    K = np.array([r["known"] for r in train_rows])
    any_tr = Y.max(1)
    data_meta = {
        "rows": len(rows), "train": len(train_rows), "heldout": len(held_rows),
        "train_any": int(any_tr.sum()), "heldout_any": int(np.array([max(r["y"]) for r in held_rows]).sum()),
        "train_per_label": {c: int(Y[:, j].sum()) for j, c in enumerate(LABELS)},
        "heldout_per_label": {c: int(sum(r["y"][j] for r in held_rows)) for j, c in enumerate(LABELS)},
        "missing_label_rate": round(1 - float(K.mean()), 3),
        "tokens_p50": int(np.median([len(r["ids"]) for r in rows])),
        "truncated_rows": int(sum(len(r["ids"]) > MAXLEN for r in rows)),
    }
    log(f"data: {json.dumps(data_meta)}")

    base, base_diff = load_decoder(base_dir)
    base_cfg = base.config
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    log(f"base {args.base}: {base.num_params():,} params rebuilt from ONNX initializers (parity diff {base_diff:.1e})")
    vocab = base_cfg.vocab_size
    table = case_fold_table(tok, vocab)
    counts = count_matrix(train_rows, table, vocab)

    # ---- model selection on the training split only
    t_cv = time.time()
    oof_bag, oof_dec = cross_validate(train_rows, counts, base_state, base_cfg, args, log)
    t_cv = time.time() - t_cv
    cv = {"folds": args.folds, "bag_l2": {}, "decoder_alone": None, "beta": {}}
    for l2 in L2_GRID:
        cv["bag_l2"][str(l2)] = round(average_precision(any_score(oof_bag[l2]), any_tr), 4)
    l2 = max(L2_GRID, key=lambda v: (cv["bag_l2"][str(v)], v))
    cv["decoder_alone"] = round(average_precision(any_score(oof_dec), any_tr), 4)
    for beta in args.beta_grid:
        cv["beta"][str(beta)] = round(average_precision(any_score(oof_bag[l2] + beta * oof_dec), any_tr), 4)
    best = max(args.beta_grid, key=lambda v: (cv["beta"][str(v)], -v))
    bag_alone = cv["bag_l2"][str(l2)]
    beta = best if cv["beta"][str(best)] - bag_alone >= args.min_decoder_gain else 0.0
    cv["best_beta"] = best
    cv["min_decoder_gain"] = args.min_decoder_gain
    cv["beta"].setdefault("0.0", bag_alone)
    oof = oof_bag[l2] + beta * oof_dec
    thr, thr_f1 = best_f1_threshold(any_score(oof), any_tr)
    cat_thr = {}
    for j, c in enumerate(LABELS):
        cat_thr[c], _ = best_f1_threshold(sigmoid(oof[:, j]), Y[:, j])
    cv_at = at_threshold(any_score(oof), any_tr, thr)
    cv["operating_points"] = operating_points(any_score(oof), any_tr, thr)
    cv.update({"l2": l2, "chosen_beta": beta, "cv_auprc": cv["beta"][str(beta)], "threshold": thr,
               "cv_f1": round(thr_f1, 4), "cv_precision": round(cv_at["precision"], 4),
               "cv_recall": round(cv_at["recall"], 4), "cv_fpr": round(cv_at["fpr"], 4),
               "category_thresholds": cat_thr, "seconds": round(t_cv, 1)})
    log(f"CV: {json.dumps(cv)}")

    # ---- final fit on the whole training split
    t_fit = time.time()
    idf = idf_of(counts)
    X = tfidf(counts, idf)
    W, b = fit_logreg(X, Y, K, l2)
    bag = BagOfTokens(table, vocab, len(LABELS))
    with torch.no_grad():
        bag.idf.copy_(torch.from_numpy(idf))
        bag.weight.copy_(W)
        bag.bias.copy_(b)
    dec = None
    if beta > 0:
        log(f"final: fine-tuning the decoder on all {len(train_rows)} training rows")
        dec = fine_tune(base_state, base_cfg, train_rows, args, log, seed=0)
    model = SafetyClassifier(bag, dec, beta).eval()
    t_fit = time.time() - t_fit
    # the in-graph TF-IDF equals the dense one
    with torch.no_grad():
        probe = list(range(0, len(train_rows), 37))
        dense = torch.as_tensor(X[probe]) @ W + b
        graph = torch.cat([bag(*collate([train_rows[i]["ids"]], MAXLEN)) for i in probe])
        bag_diff = float((dense - graph).abs().max())
    assert bag_diff < 1e-4, bag_diff
    log(f"bag-of-tokens graph vs dense TF-IDF: max diff {bag_diff:.1e}")

    # ---- the held-out 30%, scored once
    with torch.no_grad():
        z_held = np.zeros((len(held_rows), len(LABELS)), np.float32)
        order = sorted(range(len(held_rows)), key=lambda i: len(held_rows[i]["ids"]))
        for s in range(0, len(order), 16):
            idx = order[s:s + 16]
            z_held[idx] = model(*collate([held_rows[i]["ids"] for i in idx], MAXLEN)).numpy()
    Yh = np.array([r["y"] for r in held_rows])
    anyh = Yh.max(1)
    held = {"auprc": round(average_precision(any_score(z_held), anyh), 4)}
    held.update({k: round(v, 4) if isinstance(v, float) else v for k, v in at_threshold(any_score(z_held), anyh, thr).items()})
    held["per_label"] = {}
    for j, c in enumerate(LABELS):
        a = at_threshold(sigmoid(z_held[:, j]), Yh[:, j], cat_thr[c])
        held["per_label"][c] = {"positives": int(Yh[:, j].sum()),
                                "auprc": round(average_precision(sigmoid(z_held[:, j]), Yh[:, j]), 4),
                                "f1": round(a["f1"], 4), "recall": round(a["recall"], 4), "fpr": round(a["fpr"], 4)}
    log(f"held-out: {json.dumps(held)}")

    # ---- export
    out = args.out
    size = export(model, tok, out, log)
    par = parity(model, tok)
    params = sum(p.numel() for p in model.parameters())
    params_bag = sum(p.numel() for p in bag.parameters())
    params_dec = sum(p.numel() for p in dec.parameters()) if dec is not None else 0
    derivation = (f"the F1-maximising threshold on the out-of-fold 'any unsafe' scores of {args.folds}-fold "
                  f"cross-validation on the {len(train_rows)} training prompts (CV F1 {thr_f1:.3f}, precision "
                  f"{cv_at['precision']:.3f}, recall {cv_at['recall']:.3f}); the held-out 30% was not used")
    cfg = {
        "architectures": ["LlamaForSequenceClassification"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": base_cfg.hidden_size,
        "intermediate_size": base_cfg.intermediate_size,
        "num_hidden_layers": base_cfg.num_hidden_layers,
        "num_attention_heads": base_cfg.num_attention_heads,
        "num_key_value_heads": base_cfg.num_key_value_heads,
        "head_dim": base_cfg.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": base_cfg.rms_norm_eps,
        "rope_theta": base_cfg.rope_theta,
        "max_position_embeddings": MAXLEN,
        "pad_token_id": PAD,
        "num_labels": len(LABELS),
        "id2label": {str(k): l for k, l in enumerate(LABELS)},
        "label2id": {l: k for k, l in enumerate(LABELS)},
        "problem_type": "multi_label_classification",
        "torch_dtype": "float32",
        "tandem_label_names": LABEL_NAMES,
        "tandem_threshold": round(thr, 6),
        "tandem_threshold_applies_to": "max over labels of sigmoid(logits) ('any unsafe')",
        "tandem_threshold_derivation": derivation,
        "tandem_category_thresholds": {c: round(v, 6) for c, v in cat_thr.items()},
        "tandem_pooling": "mean",
        "tandem_chunk_size": CHUNK,
        "tandem_bag_of_tokens": {"tf": "log(1+count)", "idf": "log((1+n)/(1+df))+1", "norm": "l2",
                                 "case_folded": True, "l2_regularisation": l2},
        "tandem_decoder_weight": beta,
        "tandem_base_model": args.base,
    }
    write_folder(out, tok_dir, cfg, par)
    meta = {
        "params": params, "params_bag": params_bag, "params_decoder": params_dec, "onnx_bytes": size,
        "data": data_meta, "cv": cv, "heldout": held, "args": {k: v for k, v in vars(args).items() if k != "out"},
        "seconds": {"cv": round(t_cv, 1), "final_fit": round(t_fit, 1), "total": round(time.time() - t_start, 1)},
        "base": args.base, "base_params": base.num_params(), "torch": torch.__version__, "threshold": thr,
        "derivation": derivation, "parity": {"padded": par["torch_padded_vs_single_max_abs_diff"],
                                             "left_vs_right": par["torch_left_vs_right_padding_max_abs_diff"]},
    }
    with open(os.path.join(WORK, "cv.json"), "w") as f:
        json.dump({**meta, "oof_any": any_score(oof).round(5).tolist()}, f, indent=1)
    write_card(out, meta)
    log(f"total wall time {time.time() - t_start:.0f}s")


def write_card(out, meta):
    """Model card, filled in from the run's numbers."""
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(card(meta))


def card(meta):
    d, cv, h, a = meta["data"], meta["cv"], meta["heldout"], meta["args"]
    labels = "\n".join(f"| {k} | {c} | {LABEL_NAMES[c]} | {d['train_per_label'][c]} | {d['heldout_per_label'][c]} |"
                       for k, c in enumerate(LABELS))
    per = "\n".join(f"| {c} | {v['positives']} | {v['auprc']:.3f} | {cv['category_thresholds'][c]:.3f} | {v['f1']:.3f} | "
                    f"{v['recall']:.3f} | {v['fpr']:.3f} |" for c, v in h["per_label"].items())
    l2s = ", ".join(f"{k}: {v:.4f}" for k, v in cv["bag_l2"].items())
    betas = ", ".join(f"{k}: {v:.4f}" for k, v in cv["beta"].items())
    beta = cv["chosen_beta"]
    ops = "\n".join(f"| {o['threshold']:.3f}{' (chosen)' if k == 0 else ''} | {o['precision']:.3f} | {o['recall']:.3f} | "
                    f"{o['f1']:.3f} | {o['fpr']:.3f} |" for k, o in enumerate(cv.get("operating_points", [])))
    dec_line = (f"| decoder branch | {meta['base']} ({meta['base_params']:,} params, pre-trained on dictionary / Bible "
                f"text; weights rebuilt from its model.onnx) + mean pooling over real tokens + linear head, fine-tuned "
                f"{a['epochs']} epochs (AdamW lr {a['lr']} body / {a['lr'] * 10:g} head, batch {a['batch']}, random "
                f"{a['crop']}-token windows, cosine schedule); read in {CHUNK}-token chunks (block-diagonal causal "
                f"attention, RoPE positions restart per chunk) |" if beta > 0 else
                f"| decoder branch | not in the graph: in cross-validation it added {cv['beta'][str(cv['best_beta'])] - cv['bag_l2'][str(cv['l2'])]:+.4f} AUPRC at best (beta {cv['best_beta']}), below the {cv['min_decoder_gain']} it must earn to pay for its latency |")
    graph_line = ("`logits = bag_of_tokens(ids) + {beta} x decoder(ids)` (weight chosen by cross-validation)" if beta > 0
                  else "`logits = bag_of_tokens(ids)`: TF-IDF and logistic regression computed inside the ONNX graph")
    gain = cv["beta"][str(cv.get("best_beta", beta))] - cv["bag_l2"][str(cv["l2"])]
    chosen = (f"Chosen: L2 {cv['l2']:g}, beta {beta} (CV AUPRC {cv['cv_auprc']:.4f}). The decoder branch adds "
              f"{gain:+.4f} CV AUPRC over the bag of tokens alone" if beta > 0 else
              f"Chosen: L2 {cv['l2']:g}, bag of tokens alone (CV AUPRC {cv['cv_auprc']:.4f}). The best decoder weight "
              f"(beta {cv.get('best_beta')}) adds {gain:+.4f} CV AUPRC, less than the {cv.get('min_decoder_gain')} the "
              f"recipe asks of it (`--min-decoder-gain`): the decoder is 97% of the hybrid graph's latency, and the "
              f"guard runs on every request, so it is left out")
    base_part = f" and the family's pre-trained `{meta['base']}` decoder" if beta > 0 else ""
    return f"""# {NAME}

A small multi-label safety classifier for OpenAI's moderation categories, part of the Tandem model family (same
byte-level BPE tokenizer, 4,096 tokens). Built by `recipes/safety_classifier.py` from OpenAI's moderation samples
(1,680 prompts){base_part}. One ONNX graph in the Optimum
sequence-classification layout: `input_ids`, `attention_mask` -> `logits` [batch, 8]; a sigmoid per label
(`problem_type: multi_label_classification`); "any unsafe" = the largest of the 8 probabilities, flagged at
**{meta['threshold']:.3f}** (`tandem_threshold` in config.json).

**Intended use**: a cheap first-pass guard in Tandem (`Classifier.classify(texts)` from `src/slm/classifier.ts`) and a
real multi-label fixture. It was trained on {d['train']:,} prompts: it knows the vocabulary of those prompts, not the
categories in general. It is not a production moderation model; expect misses on paraphrases, other languages and
unseen topics, and false alarms on benign texts that share words with unsafe ones (medical, news, fiction).

## Labels

| id | label | meaning | train positives | held-out positives |
|---|---|---|---|---|
{labels}

"any unsafe": {d['train_any']} of {d['train']} training prompts, {d['heldout_any']} of {d['heldout']} held-out prompts.
{d['missing_label_rate'] * 100:.0f}% of the (prompt, label) cells are missing in the source data; a missing label counts as 0
in every metric (as `eval/data.ts` reads the file) and is left out of the training loss.

## Model

| | |
|---|---|
| graph | {graph_line} |
| bag-of-tokens branch | TF-IDF over the family's BPE token ids of the first {MAXLEN} tokens, case-folded through a constant id -> id table (e.g. `ĠKill` -> `Ġkill`), tf = log(1 + count), idf = log((1 + n) / (1 + df)) + 1 from the training split, L2-normalised, then a linear layer (multi-label logistic regression, L-BFGS, L2 {cv['l2']:g}). Computed per token in the graph (count(t) = sum_s [id_s == id_t], a [seq, seq] comparison; no vocabulary-sized one-hot) and equal to the dense TF-IDF within 1e-4 (checked by the recipe) |
{dec_line}
| parameters | {meta['params']:,} ({meta['params_bag']:,} bag-of-tokens + {meta['params_decoder']:,} decoder and head) |
| max length | {MAXLEN} tokens (`max_position_embeddings` {MAXLEN}, `model_max_length` {MAXLEN}: `Classifier.logits` truncates longer texts; the guard plugin reads them whole, in overlapping {MAXLEN}-token windows, a label's score its maximum over them; {d['truncated_rows']} of the 1,680 prompts are longer) |
| tokenizer | copied from `models/tandem-large-base` (the family's shared tokenizer), no special tokens added, `<pad>` = id 3, padding right (left padding gives the same logits: positions are counted from `attention_mask`) |
| ONNX | `model.onnx`, opset {OPSET}, fp32, {meta['onnx_bytes'] / 1e6:.2f} MB |
| inputs / output | `input_ids`, `attention_mask`: int64 `[batch_size, sequence_length]` -> `logits`: float32 `[batch_size, 8]` |

`config.json` says `LlamaForSequenceClassification` / `model_type: llama` (the decoder's shape fields are the base
model's) so that Optimum-layout loaders accept it; the weights are only shipped as ONNX (the bag-of-tokens branch and
the chunked mean pooling are not part of the transformers class).

## Data and split

`safety/openai-moderation-samples-1680.jsonl.gz` (OpenAI moderation-api-release, MIT; read from `--data`, default
`../shared/data`, never copied into the repository). Split rule (also in `recipes/SPLITS.md`):

```
held_out(prompt) = int(sha1(prompt.encode("utf-8")).hexdigest(), 16) % 10 < 3     # about 30%
```

{d['heldout']} prompts held out (duplicated prompts fall on the same side), {d['train']} for training. Everything that was
chosen (the L2 strength, the decoder weight, the thresholds) was chosen by {cv['folds']}-fold cross-validation on the
training prompts; the held-out prompts were scored once, after the final fit.

## Model selection ({cv['folds']}-fold CV on the training split, AUPRC of "any unsafe")

| candidate | CV AUPRC |
|---|---|
| bag of tokens alone, by L2 | {l2s} |
| fine-tuned decoder alone | {cv['decoder_alone']:.4f} |
| bag (L2 {cv['l2']:g}) + beta x decoder, by beta | {betas} |

{chosen}. Fine-tuned on its own the decoder
reaches {cv['decoder_alone']:.3f}: with {d['train']:,} training prompts, the pre-trained dictionary / Bible decoder is
weaker than a linear model over the same tokens. (Also tried, on one CV fold or on all five, and not kept: tandem-large-base fine-tuned
(worse than small), frozen decoder features + logistic regression, the decoder trained on the bag's out-of-fold
residual, hashed token bigrams, character n-gram and pre-trained-embedding smoothing of the token weights,
NB-weighted features.)

**Threshold**: {meta['derivation']}. The per-label thresholds in `tandem_category_thresholds` come the same way from
each label's out-of-fold probabilities. The probabilities are not calibrated: out of fold, most safe prompts score near 0
and the unsafe ones are spread over the whole range (many unsafe prompts share few tokens with the training
positives), so the F1-optimal cut is low. Stricter operating points, out of fold
on the training split:

| threshold | precision | recall | F1 | false-positive rate |
|---|---|---|---|---|
{ops}

## Training

torch {meta['torch']} on CPU, {a['threads']} thread, on a shared 2-core machine: cross-validation {meta['seconds']['cv']:.0f} s,
final fit {meta['seconds']['final_fit']:.0f} s, whole recipe (with export) {meta['seconds']['total']:.0f} s. Seeds fixed (folds,
fine-tuning order and windows).

## Held-out results ({d['heldout']} prompts, {d['heldout_any']} unsafe)

| metric | value |
|---|---|
| AUPRC, any unsafe | **{h['auprc']:.3f}** |
| F1 at {meta['threshold']:.3f} | **{h['f1']:.3f}** (precision {h['precision']:.3f}, recall {h['recall']:.3f}) |
| false-positive rate at {meta['threshold']:.3f} | {h['fpr']:.3f} |

| label | held-out positives | AUPRC | threshold | F1 | recall | FPR |
|---|---|---|---|---|---|---|
{per}

Labels with few positives (V2, H2, SH) have wide uncertainty. The comparison with a keyword list and with
`llm_guardrail` 2.1.2, with 95% bootstrap intervals and latency in onnxruntime-node, is `npm run eval -- guard`
(`docs/guard.md`, `reports/eval-guard.json`).

## Files

`model.onnx`, `config.json` (id2label / label2id, problem_type, `tandem_threshold`, `tandem_category_thresholds`),
`tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`, `parity.json` (PyTorch logits for {len(PARITY_TEXTS) + 1}
fixed texts, one over {MAXLEN} tokens, alone and as a right-padded batch; onnxruntime must match within 1e-4:
`test/guard.models.test.ts`).

## Retrain

```
/usr/bin/python3 recipes/safety_classifier.py --data ../shared/data
npx vitest run test/guard.models.test.ts && npm run eval -- guard
```
"""


if __name__ == "__main__":
    main()
