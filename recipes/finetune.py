"""Supervised chat fine-tuning (ChatML) of a base checkpoint on build/chat/train.jsonl.

python3 finetune.py --base tandem-large-base --name tandem-large-chat --steps 800
Loss is taken on assistant tokens only (the answer and its <|im_end|>). Rows are right-padded with <pad> inside a
batch (causal attention: real tokens never see the padding). Validation loss = the same masked loss on a fixed
sample of build/chat/heldout.jsonl.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CHAT_DIR, CKPT_DIR, PAD, ensure, set_threads  # noqa: E402
from model import load, save  # noqa: E402
from tokenizer import load as load_tok  # noqa: E402


def encode_chat(tok, messages, max_len):
    ids, labels = [], []
    for m in messages:
        head = tok.encode(f"<|im_start|>{m['role']}\n")
        body = tok.encode(m["content"] + "<|im_end|>")
        nl = tok.encode("\n")
        ids += head + body + nl
        if m["role"] == "assistant":
            labels += [-100] * len(head) + body + [-100] * len(nl)
        else:
            labels += [-100] * (len(head) + len(body) + len(nl))
    return ids[:max_len], labels[:max_len]


def batchify(rows):
    L = max(len(r[0]) for r in rows)
    x = torch.full((len(rows), L), PAD, dtype=torch.long)
    y = torch.full((len(rows), L), -100, dtype=torch.long)
    for i, (ids, lab) in enumerate(rows):
        x[i, :len(ids)] = torch.tensor(ids)
        y[i, :len(lab) - 1] = torch.tensor(lab[1:])
    return x, y


def masked_loss(model, x, y):
    logits, _ = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--eval-every", type=int, default=200)
    a = p.parse_args()
    set_threads()
    torch.manual_seed(0)
    tok = load_tok()
    model, base_metrics = load(os.path.join(CKPT_DIR, a.base, "model.pt"))
    model.train()
    train_rows = [json.loads(l) for l in open(os.path.join(CHAT_DIR, "train.jsonl"), encoding="utf-8")]
    held_rows = [json.loads(l) for l in open(os.path.join(CHAT_DIR, "heldout.jsonl"), encoding="utf-8")]
    rng = np.random.default_rng(0)
    vsel = np.random.default_rng(1).choice(len(held_rows), 384, replace=False)
    val = [encode_chat(tok, [{"role": "user", "content": held_rows[i]["question"]},
                             {"role": "assistant", "content": held_rows[i]["reference"]}], a.max_len) for i in vsel]

    @torch.no_grad()
    def evaluate():
        model.eval()
        ls = [masked_loss(model, *batchify(val[i:i + 32])).item() for i in range(0, len(val), 32)]
        model.train()
        return float(np.mean(ls))

    decay = [p_ for n, p_ in model.named_parameters() if p_.dim() >= 2]
    no_decay = [p_ for n, p_ in model.named_parameters() if p_.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95))
    out = os.path.join(CKPT_DIR, a.name)
    ensure(out)
    v0 = evaluate()
    print(f"{a.name} from {a.base}: {len(train_rows)} train rows, val (held-out answers) loss before {v0:.4f}", flush=True)
    history = [{"step": 0, "val_loss": v0}]
    t0 = time.time()
    ntok = 0
    for step in range(1, a.steps + 1):
        lr = a.lr * min(1.0, step / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / a.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = rng.integers(0, len(train_rows), a.batch)
        rows = [encode_chat(tok, train_rows[i]["messages"], a.max_len) for i in idx]
        x, y = batchify(rows)
        ntok += x.numel()
        loss = masked_loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.4f} lr {lr:.2e} {time.time()-t0:.0f}s", flush=True)
        if step % a.eval_every == 0 or step == a.steps:
            vl = evaluate()
            history.append({"step": step, "train_loss": loss.item(), "val_loss": vl, "time_s": time.time() - t0})
            print(f"eval step {step} val_loss {vl:.4f}", flush=True)
    metrics = {"name": a.name, "base": a.base, "params": model.num_params(), "steps": a.steps, "batch": a.batch,
               "train_tokens": ntok, "wall_time_s": time.time() - t0, "val_loss": history[-1]["val_loss"],
               "val_loss_before": v0, "history": history, "config": model.config.to_dict(), "lr": a.lr,
               "base_metrics": {k: v for k, v in base_metrics.items() if k != "history"}}
    save(model, os.path.join(out, "model.pt"), metrics)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    print("done", json.dumps({k: v for k, v in metrics.items() if k not in ("history", "base_metrics")}), flush=True)


if __name__ == "__main__":
    main()
