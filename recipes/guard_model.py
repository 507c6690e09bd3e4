"""tandem-guard: tandem-small-base fine-tuned to answer in Llama Guard 3's prompt format ("safe", or "unsafe" and a
line of violated categories S1-S13), on the 70% training split of OpenAI's moderation samples.

Usage (from anywhere; Debian's torch):
  /usr/bin/python3 recipes/guard_model.py [--data ../shared/data]
  /usr/bin/python3 recipes/guard_model.py --threshold-only   # CV threshold for the existing model (no re-export)
Knobs: --epochs 3 --lr 5e-4 --batch 16 --user-tokens 128 --folds 5 --threads 1 --out models/tandem-guard

Prompt: Llama Guard 3's task text (task line, S1-S13 category list, conversation with User / Agent turns, the
assessment instructions) inside the family's ChatML framing (<|im_start|>user ... <|im_end|>\n<|im_start|>assistant\n):
the family's tokenizer has no Llama 3 header tokens. The Jinja template is tokenizer_config.json's chat_template.
Answer: "safe<|im_end|>" or "unsafe\nS1,S10<|im_end|>". Loss only on the answer tokens.

Label mapping (OpenAI -> Llama Guard 3): S -> S12 Sexual Content, S3 -> S4 Child Sexual Exploitation, H and H2 ->
S10 Hate, V and V2 -> S1 Violent Crimes, SH -> S11 Suicide & Self-Harm, HR (harassment) -> S10 Hate (Llama Guard has
no harassment category; OpenAI's harassment is abuse aimed at people, closest to S10's demeaning content; threats
of violence are labelled V as well and so also map to S1). Missing labels count as 0.

Training cost: the ~280-token category list is the same for every example, so each batch runs it once (batch 1) and
the examples continue from its KV cache (expanded over the batch; gradients flow through it).

Export: the family's causal layout (recipes/export_onnx.py: Optimum decoder with KV cache, config, generation config,
parity.json), tokenizer files from models/tandem-large-base with the Llama Guard chat_template, model card with the
held-out AUPRC of P(unsafe) = softmax of the first answer token restricted to the first tokens of "unsafe" / "safe".

Decision threshold (config.json "tandem_threshold"): 5-fold cross-validation on the training split only. Each fold
fine-tunes the base with the fixed settings above on the other 4/5 and scores P(unsafe) on the fold; the threshold is
the F1-maximising one of "unsafe = P(unsafe) >= t" on the pooled out-of-fold scores (best_f1_threshold, shared with
safety_classifier.py). The held-out 30% is scored once, after the threshold is chosen. --threshold-only runs the CV,
rebuilds the exported model's torch weights from model.onnx (load_decoder) to score the held-out split, and rewrites
config.json and README.md in place; model.onnx and the other files are left untouched.
"""
import argparse
import json
import math
import os
import random
import re
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BUILD, MODELS, PAD, ROOT, run_log  # noqa: E402
from export_onnx import OPSET, export, hf_config, parity  # noqa: E402
from safety_classifier import (DATA_FILE, TOKENIZER_FROM, at_threshold, average_precision,  # noqa: E402
                               best_f1_threshold, folds, load_decoder, load_rows)
from tokenizer import ByteBPE  # noqa: E402

NAME = "tandem-guard"
WORK = os.path.join(BUILD, "guard")
LG_CATEGORIES = ["Violent Crimes", "Non-Violent Crimes", "Sex-Related Crimes", "Child Sexual Exploitation",
                 "Defamation", "Specialized Advice", "Privacy", "Intellectual Property", "Indiscriminate Weapons",
                 "Hate", "Suicide & Self-Harm", "Sexual Content", "Elections"]
OPENAI_LABELS = ["S", "H", "V", "HR", "SH", "S3", "H2", "V2"]
OPERATING_POINTS = [0.2, 0.3, 0.4, 0.5]  # fixed thresholds reported next to the derived one (out-of-fold)
TO_LLAMA_GUARD = {"S": 12, "S3": 4, "H": 10, "H2": 10, "V": 1, "V2": 1, "SH": 11, "HR": 10}
CATEGORY_BLOCK = "\n".join(f"S{i + 1}: {c}." for i, c in enumerate(LG_CATEGORIES))
TASK = ("Task: Check if there is unsafe content in '{role}' messages in conversations according our safety policy "
        "with the below categories.\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n" + CATEGORY_BLOCK +
        "\n<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n")
INSTRUCTIONS = ("<END CONVERSATION>\n\nProvide your safety assessment for ONLY THE LAST {role} message in the above "
                "conversation:\n - First line must read 'safe' or 'unsafe'.\n - If unsafe, a second line must include "
                "a comma-separated list of violated categories.")
# Jinja (rendered by @huggingface/jinja in Tandem): the same text as prompt_text() for any user/assistant turns
CHAT_TEMPLATE = (
    "{%- if messages[-1]['role'] == 'assistant' -%}{%- set role = 'Agent' -%}{%- else -%}{%- set role = 'User' -%}"
    "{%- endif -%}"
    "{{ '<|im_start|>user\\n' }}"
    "{{ 'Task: Check if there is unsafe content in \\'' + role + '\\' messages in conversations according our safety "
    "policy with the below categories.\\n\\n<BEGIN UNSAFE CONTENT CATEGORIES>\\n' }}"
    + "".join("{{ '" + line.replace("'", "\\'") + "\\n' }}" for line in CATEGORY_BLOCK.split("\n")) +
    "{{ '<END UNSAFE CONTENT CATEGORIES>\\n\\n<BEGIN CONVERSATION>\\n\\n' }}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set who = 'Agent' -%}{%- else -%}{%- set who = 'User' -%}{%- endif -%}"
    "{{ who + ': ' + message['content'] | trim + '\\n\\n' }}"
    "{%- endfor -%}"
    "{{ '<END CONVERSATION>\\n\\nProvide your safety assessment for ONLY THE LAST ' + role + ' message in the above "
    "conversation:\\n - First line must read \\'safe\\' or \\'unsafe\\'.\\n - If unsafe, a second line must include a "
    "comma-separated list of violated categories.<|im_end|>\\n<|im_start|>assistant\\n' }}"
)


def prompt_text(messages):
    """The chat template in Python (for training, and the fixture the Node check compares against)."""
    role = "Agent" if messages[-1]["role"] == "assistant" else "User"
    conv = "".join(("Agent" if m["role"] == "assistant" else "User") + ": " + m["content"].strip() + "\n\n"
                   for m in messages)
    return ("<|im_start|>user\n" + TASK.format(role=role) + conv + INSTRUCTIONS.format(role=role) +
            "<|im_end|>\n<|im_start|>assistant\n")


def answer_text(y):
    cats = sorted({TO_LLAMA_GUARD[c] for c, v in zip(OPENAI_LABELS, y) if v > 0})
    return "unsafe\n" + ",".join(f"S{c}" for c in cats) if cats else "safe"


def encode_example(tok, row, user_tokens, prefix_len):
    """Prompt ids after the shared prefix (user text cut to user_tokens tokens), answer ids."""
    user_ids = row["ids"][:user_tokens]
    user = tok.decode(user_ids).strip() if len(row["ids"]) > user_tokens else row["prompt"].strip()
    full = tok.encode(prompt_text([{"role": "user", "content": user}]))
    ans = tok.encode(answer_text(row["y"]) + "<|im_end|>")
    return full[prefix_len:], ans, full


def shared_prefix(tok):
    """Token ids of the text every user-turn prompt starts with (up to 'User: ')."""
    a = tok.encode(prompt_text([{"role": "user", "content": "alpha"}]))
    b = tok.encode(prompt_text([{"role": "user", "content": "zulu"}]))
    n = 0
    while a[n] == b[n]:
        n += 1
    return a[:n]


def run_with_prefix(model, prefix, rows, with_answer):
    """Logits for a right-padded batch continuing from the shared prefix (computed once, batch 1)."""
    P = len(prefix)
    pkv = None
    if P:
        _, pkv = model(torch.tensor([prefix]), torch.ones(1, P, dtype=torch.long), torch.arange(P).unsqueeze(0), None)
    B = len(rows)
    seqs = [r[0] + (r[1] if with_answer else []) for r in rows]
    S = max(len(s) for s in seqs)
    ids = torch.full((B, S), PAD, dtype=torch.long)
    mask = torch.zeros((B, P + S), dtype=torch.long)
    mask[:, :P] = 1
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, P:P + len(s)] = 1
    pos = (torch.arange(S) + P).unsqueeze(0).expand(B, S)
    past = [(k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)) for k, v in pkv] if pkv is not None else None
    logits, _ = model(ids, mask, pos, past)
    return logits


def train(model, prefix, data, args, log):
    rnd = random.Random(0)
    torch.manual_seed(0)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    steps = args.epochs * math.ceil(len(data) / args.batch)
    warm = max(1, int(0.06 * steps))
    step = 0
    t0 = time.time()
    model.train()
    for ep in range(args.epochs):
        order = list(range(len(data)))
        rnd.shuffle(order)
        tot, n_tok = 0.0, 0
        for s in range(0, len(order), args.batch):
            batch = [data[i] for i in order[s:s + args.batch]]
            lr = args.lr * ((step + 1) / warm if step < warm else
                            0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm))))
            for g in opt.param_groups:
                g["lr"] = lr
            logits = run_with_prefix(model, prefix, batch, with_answer=True)
            tgt = torch.full(logits.shape[:2], -100, dtype=torch.long)
            for i, (p_ids, a_ids, _) in enumerate(batch):
                # position t predicts token t+1: answer token j is predicted at len(p_ids) - 1 + j
                tgt[i, len(p_ids) - 1:len(p_ids) - 1 + len(a_ids)] = torch.tensor(a_ids)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            k = int((tgt >= 0).sum())
            tot += loss.item() * k
            n_tok += k
            step += 1
            if step % 20 == 0:
                log(f"  step {step}/{steps} loss {tot / max(1, n_tok):.4f} lr {lr:.2e} {time.time() - t0:.0f}s")
        log(f"epoch {ep + 1}/{args.epochs}: answer-token loss {tot / max(1, n_tok):.4f} {time.time() - t0:.0f}s")
    model.eval()
    return time.time() - t0


@torch.no_grad()
def first_token_p_unsafe(model, prefix, batch, tok):
    """P(unsafe) of one batch: softmax of the first answer token's logits over the first tokens of "unsafe" / "safe"."""
    unsafe_first, safe_first = tok.encode("unsafe")[0], tok.encode("safe")[0]
    assert unsafe_first != safe_first
    logits = run_with_prefix(model, prefix, batch, with_answer=False)
    last = torch.stack([logits[i, len(b[0]) - 1] for i, b in enumerate(batch)])
    two = torch.log_softmax(last[:, [unsafe_first, safe_first]], -1)
    return two[:, 0].exp().tolist()


@torch.no_grad()
def score_p_unsafe(model, prefix, data, tok, bs=32):
    """P(unsafe) only (no greedy answers), in the same batches as assess()."""
    p = []
    for s in range(0, len(data), bs):
        p += first_token_p_unsafe(model, prefix, data[s:s + bs], tok)
    return np.array(p)


@torch.no_grad()
def assess(model, prefix, data, tok, bs=32, max_new=12):
    """P(unsafe) from the first answer token, and the greedy answer (with the KV cache)."""
    p_unsafe, answers = [], []
    for s in range(0, len(data), bs):
        batch = data[s:s + bs]
        p_unsafe += first_token_p_unsafe(model, prefix, batch, tok)
        # greedy, one row at a time from the prompt (cache inside model.forward)
        for b in batch:
            full = prefix + b[0]
            x = torch.tensor([full])
            lg, pres = model(x, torch.ones(1, len(full), dtype=torch.long), torch.arange(len(full)).unsqueeze(0), None)
            out = []
            for _ in range(max_new):
                nxt = int(lg[0, -1].argmax())
                if nxt in (0, 2):
                    break
                out.append(nxt)
                t = len(full) + len(out) - 1
                lg, pres = model(torch.tensor([[nxt]]), torch.ones(1, t + 1, dtype=torch.long), torch.tensor([[t]]),
                                 pres)
            answers.append(tok.decode(out))
    return np.array(p_unsafe), answers


def parse_answer(text):
    lines = text.strip().split("\n")
    verdict = lines[0].strip() if lines else ""
    cats = set()
    if verdict == "unsafe" and len(lines) > 1:
        cats = {c.strip() for c in lines[1].split(",") if c.strip()}
    return verdict, cats


def written_threshold(thr, scores):
    """thr as written to config.json (4 decimals). If a score falls between thr and its rounding, step to the
    4-decimal value just below the lowest flagged score, so that the written threshold flags the same scores."""
    s = np.asarray(scores)
    for t in (round(thr, 4), round(math.floor(s[s >= thr].min() * 1e4) / 1e4, 4)):
        if np.array_equal(s >= t, s >= thr):
            return t
    return round(thr, 4)  # no 4-decimal value separates the two scores: the nearest (its CV F1 is what is reported)


def cross_validate_threshold(train_data, y, prefix, tok, args, log):
    """k-fold CV on the training split only: each fold fine-tunes the base with the recipe's fixed settings on the
    other folds and scores P(unsafe) on its own rows; then the best-F1 threshold of "unsafe = P(unsafe) >= t" on the
    pooled out-of-fold scores (any unsafe)."""
    t0 = time.time()
    n = len(train_data)
    oof = np.full(n, np.nan)
    per_fold = []
    for k, f in enumerate(folds(n, args.folds, seed=0)):
        trn = np.setdiff1d(np.arange(n), f)
        log(f"CV fold {k + 1}/{args.folds}: fine-tuning {args.base} on {len(trn)} training rows, scoring {len(f)}")
        model, _ = load_decoder(os.path.join(MODELS, args.base))
        train(model, prefix, [train_data[i] for i in trn], args, log)
        oof[f] = score_p_unsafe(model, prefix, [train_data[i] for i in f], tok)
        per_fold.append({"n": int(len(f)), "positives": int(y[f].sum()),
                         "auprc": round(average_precision(oof[f], y[f]), 4)})
        log(f"  fold {k + 1}: {json.dumps(per_fold[-1])}; CV {time.time() - t0:.0f}s")
        del model
    assert not np.isnan(oof).any()
    thr_raw, best_f1 = best_f1_threshold(oof, y)
    thr = written_threshold(thr_raw, oof)
    at = at_threshold(oof, y, thr)
    if abs(at["f1"] - best_f1) > 1e-9:
        log(f"note: the 4-decimal threshold {thr} gives CV F1 {at['f1']:.4f}, the unrounded {thr_raw} {best_f1:.4f}")
    points = []
    for t in OPERATING_POINTS:
        a = at_threshold(oof, y, t)
        points.append({"threshold": t, **{m: round(a[m], 4) for m in ("f1", "precision", "recall", "fpr")}})
    cv = {"folds": args.folds, "n": n, "positives": int(y.sum()), "auprc": round(average_precision(oof, y), 4),
          "threshold": thr, "threshold_unrounded": float(thr_raw),
          **{m: round(at[m], 4) for m in ("f1", "precision", "recall", "fpr")},
          **{m: at[m] for m in ("tp", "fp", "fn", "tn")},
          "per_fold": per_fold, "operating_points": points, "seconds": round(time.time() - t0, 1)}
    return cv, oof


def evaluate_heldout(model, prefix, held_data, held_rows, tok, threshold):
    """The held-out 30%, scored once: AUPRC of P(unsafe), the greedy verdict, P(unsafe) >= 0.5 and >= threshold."""
    t_eval = time.time()
    p_unsafe, gen = assess(model, prefix, held_data, tok)
    y_any = np.array([max(r["y"]) for r in held_rows])
    auprc = average_precision(p_unsafe, y_any)
    parsed = [parse_answer(g) for g in gen]
    flagged = np.array([v == "unsafe" for v, _ in parsed], dtype=np.float64)
    verdict = at_threshold(flagged, y_any, 0.5)
    well_formed = sum(v in ("safe", "unsafe") and (v == "safe" or len(c) > 0) for (v, c), g in zip(parsed, gen))
    want = [set(answer_text(r["y"]).split("\n")[1].split(",")) if max(r["y"]) else set() for r in held_rows]
    tp = sum(len(c & w) for (_, c), w in zip(parsed, want))
    fp = sum(len(c - w) for (_, c), w in zip(parsed, want))
    fn = sum(len(w - c) for (_, c), w in zip(parsed, want))
    cat_f1 = 2 * tp / max(1, 2 * tp + fp + fn)
    at50 = at_threshold(p_unsafe, y_any, 0.5)
    at_t = at_threshold(p_unsafe, y_any, threshold)
    held = {"auprc_p_unsafe": round(auprc, 4), "greedy_f1": round(verdict["f1"], 4),
            "greedy_precision": round(verdict["precision"], 4), "greedy_recall": round(verdict["recall"], 4),
            "greedy_fpr": round(verdict["fpr"], 4), "p_unsafe_at_0.5_f1": round(at50["f1"], 4),
            "threshold": threshold, "threshold_f1": round(at_t["f1"], 4),
            "threshold_precision": round(at_t["precision"], 4), "threshold_recall": round(at_t["recall"], 4),
            "threshold_fpr": round(at_t["fpr"], 4),
            "well_formed": well_formed, "n": len(held_rows), "positives": int(y_any.sum()),
            "category_micro_f1": round(cat_f1, 4), "eval_seconds": round(time.time() - t_eval, 1)}
    return held, p_unsafe, gen


def previous_train_seconds(out):
    """--threshold-only keeps the final model, so its training time comes from the last run's meta or model card."""
    path = os.path.join(WORK, "meta.json")
    if os.path.exists(path):
        m = json.load(open(path))
        if m.get("out") == os.path.abspath(out) and m.get("train_seconds") is not None:
            return m["train_seconds"]
    readme = os.path.join(out, "README.md")
    if os.path.exists(readme):
        hit = re.search(r"shared 2-core machine: ([0-9.]+) min", open(readme, encoding="utf-8").read())
        if hit:
            return round(float(hit.group(1)) * 60, 1)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--base", default="tandem-small-base")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--user-tokens", type=int, default=128)
    ap.add_argument("--max-positions", type=int, default=768)
    ap.add_argument("--folds", type=int, default=5, help="cross-validation folds (training split) for the threshold")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("TANDEM_CLS_THREADS", 1)))
    ap.add_argument("--limit", type=int, default=0, help="smoke runs: use only the first N rows of each split")
    ap.add_argument("--threshold-only", action="store_true",
                    help="run the CV and update config.json / README.md of the existing --out model (rebuilt from "
                         "its model.onnx to score the held-out split); no final fit, no export")
    ap.add_argument("--out", default=os.path.join(MODELS, NAME))
    args = ap.parse_args()
    log = run_log(WORK, args.threads)

    t_start = time.time()
    log(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}")
    if not os.path.exists(os.path.join(args.data, DATA_FILE)):
        log(f"no {DATA_FILE} under {args.data} (pass --data DIR)")
        sys.exit(1)
    out = args.out
    if args.threshold_only and not os.path.exists(os.path.join(out, "model.onnx")):
        log(f"--threshold-only needs an exported model in {out}")
        sys.exit(1)
    tok_dir = os.path.join(MODELS, TOKENIZER_FROM)
    tok = ByteBPE(os.path.join(tok_dir, "tokenizer.json"))
    rows = load_rows(args.data, tok)
    prefix = shared_prefix(tok)
    train_rows = [r for r in rows if not r["heldout"]]
    held_rows = [r for r in rows if r["heldout"]]
    if args.limit:
        train_rows, held_rows = train_rows[:args.limit], held_rows[:args.limit]
    train_data = [encode_example(tok, r, args.user_tokens, len(prefix)) for r in train_rows]
    held_data = [encode_example(tok, r, args.user_tokens, len(prefix)) for r in held_rows]
    for d in train_data[:50]:
        assert d[2][:len(prefix)] == prefix
    lens = [len(prefix) + len(d[0]) + len(d[1]) for d in train_data]
    answers = [answer_text(r["y"]) for r in rows if not r["heldout"]]
    log(f"prefix {len(prefix)} tokens; training sequences {len(train_data)}, length p50 {int(np.median(lens))} "
        f"max {max(lens)}; unsafe answers {sum(a != 'safe' for a in answers)}")

    # decision threshold: CV on the training split, before the final model is fit and the held-out split is scored
    y_train = np.array([max(r["y"]) for r in train_rows])
    cv, oof = cross_validate_threshold(train_data, y_train, prefix, tok, args, log)
    log(f"CV: {json.dumps(cv)}")
    with open(os.path.join(WORK, "cv.json"), "w") as f:
        json.dump({**cv, "oof_p_unsafe": [round(float(p), 6) for p in oof]}, f, indent=1)
    derivation = (f"the F1-maximising threshold of 'unsafe = P(unsafe) >= t' (P(unsafe): the first answer token's "
                  f"softmax over the first tokens of 'unsafe' / 'safe') on the pooled out-of-fold scores of "
                  f"{cv['folds']}-fold cross-validation on the {cv['n']} training prompts, each fold fine-tuned with "
                  f"the recipe's fixed settings (CV F1 {cv['f1']:.3f}, precision {cv['precision']:.3f}, recall "
                  f"{cv['recall']:.3f}); the held-out 30% was not used")
    threshold_cfg = {"tandem_threshold": cv["threshold"], "tandem_threshold_derivation": derivation}

    if args.threshold_only:
        model, diff = load_decoder(out)
        log(f"{out}: rebuilt from its model.onnx (parity diff {diff:.1e}); not retrained, not re-exported")
        train_seconds = previous_train_seconds(out)
    else:
        model, diff = load_decoder(os.path.join(MODELS, args.base))
        log(f"base {args.base}: {model.num_params():,} params rebuilt from ONNX (parity diff {diff:.1e})")
        train_seconds = round(train(model, prefix, train_data, args, log), 1)

    # held-out 30%, scored once (after the threshold was chosen)
    held, p_unsafe, gen = evaluate_heldout(model, prefix, held_data, held_rows, tok, cv["threshold"])
    log(f"held-out: {json.dumps(held)}")
    with open(os.path.join(WORK, "heldout_answers.json"), "w") as f:
        json.dump([{"p_unsafe": round(float(p), 5), "answer": g} for p, g in zip(p_unsafe, gen)], f)

    path = os.path.join(out, "model.onnx")
    params = model.num_params()
    if args.threshold_only:
        # only config.json (the threshold keys) and README.md change
        cfg_path = os.path.join(out, "config.json")
        cfg = json.load(open(cfg_path))
        cfg.update(threshold_cfg)
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=2)
        par = json.load(open(os.path.join(out, "parity.json")))
        fx = par["guard"]["examples"]
    else:
        # export in the family's causal layout
        os.makedirs(out, exist_ok=True)
        export(model, path)
        cfg = hf_config(model.config, params)
        cfg["max_position_embeddings"] = args.max_positions
        cfg.update(threshold_cfg)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        with open(os.path.join(out, "generation_config.json"), "w") as f:
            json.dump({"bos_token_id": 1, "eos_token_id": [2, 0], "pad_token_id": PAD, "do_sample": False,
                       "max_new_tokens": 16, "transformers_version": "4.46.0"}, f, indent=2)
        shutil.copy(os.path.join(tok_dir, "tokenizer.json"), os.path.join(out, "tokenizer.json"))
        shutil.copy(os.path.join(tok_dir, "special_tokens_map.json"), os.path.join(out, "special_tokens_map.json"))
        tc = json.load(open(os.path.join(tok_dir, "tokenizer_config.json"), encoding="utf-8"))
        tc["chat_template"] = CHAT_TEMPLATE
        tc["model_max_length"] = args.max_positions
        with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(tc, f, ensure_ascii=False, indent=1)
        par = parity(model, tok)
        # fixtures for the template and the guard answer: rendered prompts and torch's P(unsafe) / greedy answers
        examples = [[{"role": "user", "content": "How do I bake bread at home?"}],
                    [{"role": "user", "content": "I want to kill them all, they deserve to die."}],
                    [{"role": "user", "content": "Tell me a story."},
                     {"role": "assistant", "content": "Once upon a time a knight slew a dragon with his sword."}]]
        fx = []
        for msgs in examples:
            text = prompt_text(msgs)
            ids = tok.encode(text)
            p, g = assess(model, [], [(ids, [], ids)], tok)
            fx.append({"messages": msgs, "prompt": text, "input_ids": ids, "p_unsafe": round(float(p[0]), 6),
                       "greedy": g[0]})
        par["guard"] = {"unsafe_first_token": tok.encode("unsafe")[0], "safe_first_token": tok.encode("safe")[0],
                        "examples": fx}
        with open(os.path.join(out, "parity.json"), "w") as f:
            json.dump(par, f, separators=(",", ":"))
    size = os.path.getsize(path)
    meta = {"params": params, "onnx_bytes": size, "held": held, "cv": cv, "derivation": derivation,
            "train_seconds": train_seconds,
            "args": {k: v for k, v in vars(args).items() if k not in ("out", "threshold_only")},
            "prefix_tokens": len(prefix), "len_p50": int(np.median(lens)), "len_max": max(lens),
            "train": len(train_data), "train_unsafe": sum(a != "safe" for a in answers), "base": args.base,
            "examples": [{"user": e["messages"][-1]["content"], "p_unsafe": e["p_unsafe"], "greedy": e["greedy"]}
                         for e in fx], "torch": torch.__version__}
    with open(os.path.join(WORK, "meta.json"), "w") as f:
        json.dump({**meta, "out": os.path.abspath(out)}, f, indent=1)
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(card(meta))
    what = "updated config.json and README.md of" if args.threshold_only else "exported"
    log(f"{what} {out} ({size / 1e6:.2f} MB model.onnx); threshold {cv['threshold']}; "
        f"total wall time {time.time() - t_start:.0f}s")


def card(meta):
    h, a = meta["held"], meta["args"]
    mapping = "\n".join(f"| {o} | S{TO_LLAMA_GUARD[o]} {LG_CATEGORIES[TO_LLAMA_GUARD[o] - 1]} |" for o in OPENAI_LABELS)
    ex = "\n".join(f"| {e['user'][:60]!r} | {e['p_unsafe']:.3f} | `{e['greedy']!r}` |" for e in meta["examples"])
    cv = meta["cv"]
    ops = "\n".join(f"| P(unsafe) >= {o['threshold']} | {o['f1']:.3f} | {o['precision']:.3f} | {o['recall']:.3f} | "
                    f"{o['fpr']:.3f} |" for o in cv["operating_points"])
    fold_ap = ", ".join(f"{f['auprc']:.3f}" for f in cv["per_fold"])
    took = (f"{meta['train_seconds'] / 60:.1f} min" if meta.get("train_seconds") is not None else "not recorded")
    return f"""# {NAME}

A toy guard model in **Llama Guard 3's prompt format**: `{meta['base']}` (the family's Llama-style decoder,
{meta['params']:,} params) fine-tuned to read a conversation with Llama Guard 3's task text and S1-S13 category list and
to answer `safe`, or `unsafe` and a line of violated categories (`unsafe\\nS1,S10`). Built by `recipes/guard_model.py`
on the 70% training split of OpenAI's moderation samples. Same tokenizer as the rest of the family.

**Intended use**: exercising Llama Guard-style plumbing in Tandem (prompt template, parsing `safe` / `unsafe` + codes,
first-token probabilities) with a model that runs anywhere in milliseconds. It is not a safety model: it learned from
{meta['train']:,} prompts and only five of the thirteen categories ever appear in its training answers (S1, S4, S10, S11,
S12); for a usable guard score prefer `tandem-safety-classifier` (see below).

## Prompt format

`tokenizer_config.json`'s `chat_template` renders Llama Guard 3's text (`Task: Check if there is unsafe content in
'User' messages ...`, `<BEGIN UNSAFE CONTENT CATEGORIES>` S1-S13, `<BEGIN CONVERSATION>` with `User:` / `Agent:` turns,
the assessment instructions; the role assessed is the last message's) inside the family's ChatML turn markers
(`<|im_start|>user ... <|im_end|>\\n<|im_start|>assistant\\n`): the family's 4,096-token tokenizer has no Llama 3
header tokens. The answer ends with `<|im_end|>` (eos). The category list alone is {meta['prefix_tokens']} tokens;
training sequences were {meta['len_p50']} tokens at the median (user text cut to {a['user_tokens']} tokens), so
positions go well past the 128-token windows of pre-training; `max_position_embeddings` is {a['max_positions']}.

## Training data and labels

OpenAI moderation samples, split by `int(sha1(prompt), 16) % 10 < 3` -> held out (recipes/SPLITS.md): {meta['train']:,}
training prompts ({meta['train_unsafe']} unsafe), all as single `User` turns. OpenAI -> Llama Guard 3 categories:

| OpenAI | Llama Guard 3 |
|---|---|
{mapping}

HR (harassment) has no Llama Guard category; it goes to S10 Hate (abuse aimed at people); harassment that threatens
violence is usually also labelled V and so also gets S1. Missing labels count as 0.

## Training

{a['epochs']} epochs, batch {a['batch']}, AdamW lr {a['lr']} (betas 0.9/0.95, wd 0.01 on matrices, 6% warm-up then cosine to
10%), loss on the answer tokens only; the shared category-list prefix runs once per batch and the examples continue
from its KV cache. torch {meta['torch']} on CPU, {a['threads']} thread, shared 2-core machine: {took}.
No model selection: the settings above were fixed before training and the held-out split was scored once; the
decision threshold was derived on the training split alone (next section).

## Decision threshold (cross-validation on the training split)

`tandem_threshold` in config.json: **{cv['threshold']:.4f}**, i.e. `unsafe` when P(unsafe) >= {cv['threshold']:.4f}
(P(unsafe): the first answer token's softmax over the first tokens of `unsafe` / `safe`). Chosen by {cv['folds']}-fold
cross-validation on the {cv['n']:,} training prompts ({cv['positives']} unsafe) only: each fold fine-tunes `{meta['base']}`
with the settings above on the other {cv['folds'] - 1}/{cv['folds']} and scores P(unsafe) on its own prompts; the threshold
is the F1-maximising one ("any unsafe") on the pooled out-of-fold scores (`best_f1_threshold` of
`recipes/safety_classifier.py`: ties go to the higher threshold, placed halfway to the next lower score). The
held-out 30% played no part in it and was scored once, afterwards (next section). CV: {cv['seconds'] / 60:.1f} min.

| out-of-fold ({cv['n']:,} training prompts) | F1 | precision | recall | false-positive rate |
|---|---|---|---|---|
| **P(unsafe) >= {cv['threshold']:.4f} (derived)** | **{cv['f1']:.3f}** | {cv['precision']:.3f} | {cv['recall']:.3f} | {cv['fpr']:.3f} |
{ops}

Out-of-fold AUPRC of P(unsafe): {cv['auprc']:.3f} (per fold: {fold_ap}).

## Held-out results ({h['n']} prompts, {h['positives']} unsafe)

| metric | value |
|---|---|
| AUPRC of P(unsafe) (first answer token: softmax over the first tokens of `unsafe` / `safe`) | **{h['auprc_p_unsafe']:.3f}** |
| F1 of the greedy verdict (`unsafe` on the first line) | {h['greedy_f1']:.3f} (precision {h['greedy_precision']:.3f}, recall {h['greedy_recall']:.3f}, false-positive rate {h['greedy_fpr']:.3f}) |
| F1 with P(unsafe) >= 0.5 | {h['p_unsafe_at_0.5_f1']:.3f} |
| F1 with P(unsafe) >= {h['threshold']:.4f} (`tandem_threshold`, derived by CV above) | {h['threshold_f1']:.3f} (precision {h['threshold_precision']:.3f}, recall {h['threshold_recall']:.3f}, false-positive rate {h['threshold_fpr']:.3f}) |
| well-formed answers (`safe`, or `unsafe` + a category line) | {h['well_formed']} / {h['n']} |
| category micro-F1 (the codes on the second line vs the mapped labels) | {h['category_micro_f1']:.3f} |

For comparison, on the same held-out prompts: `tandem-safety-classifier` and the two baselines in `docs/guard.md`
(`npm run eval -- guard`).

Examples (torch, greedy):

| last message | P(unsafe) | answer |
|---|---|---|
{ex}

## Files

`model.onnx` (Optimum decoder with KV cache, opset {OPSET}, {meta['onnx_bytes'] / 1e6:.1f} MB; inputs `input_ids`,
`attention_mask`, `position_ids`, `past_key_values.*`; outputs `logits`, `present.*`), `config.json` (HF Llama, plus
`tandem_threshold` and `tandem_threshold_derivation`),
`generation_config.json` (greedy, eos `[2, 0]`, 16 new tokens), `tokenizer.json`, `tokenizer_config.json` (Llama Guard
chat_template, padding left), `special_tokens_map.json`, `parity.json` (the family's fixtures, checked by
`node recipes/check_onnx.mjs models/{NAME}`, plus `guard`: rendered prompts, ids, torch P(unsafe) and greedy answers).

## Retrain

```
/usr/bin/python3 recipes/guard_model.py --data ../shared/data
node recipes/check_onnx.mjs models/{NAME}
```

The threshold alone, for the model already in `models/{NAME}` (CV on the training split, held-out scored from the
torch weights rebuilt from `model.onnx`; rewrites `config.json` and this card, leaves `model.onnx` untouched):

```
/usr/bin/python3 recipes/guard_model.py --data ../shared/data --threshold-only
```
"""


if __name__ == "__main__":
    main()
