"""Pre-train a Tandem base model on build/tokens/train.bin, validating on build/tokens/heldout.bin.

python3 train.py --name tandem-large-base --hidden 256 --layers 4 --heads 8 --kv-heads 2 --ffn 704 --steps 1500
Writes build/ckpt/<name>/{model.pt,metrics.json} and logs to stdout.
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
from common import BUILD, CKPT_DIR, ensure, set_threads  # noqa: E402
from model import Config, LlamaForCausalLM, load, save  # noqa: E402


def get_args():
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--ffn", type=int, default=704)
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--eval-batches", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-bin", help="training tokens (uint16, as tokenizer.py writes them) instead of "
                   "build/tokens/train.bin, e.g. knowledge.py's mix")
    p.add_argument("--init", help="continue from build/ckpt/<INIT>/model.pt (its architecture; a fresh optimiser and "
                   "learning-rate schedule); the earlier training is kept in the metrics as stage 1")
    return p.parse_args()


@torch.no_grad()
def evaluate(model, data, batches, batch, seq):
    model.eval()
    rng = np.random.default_rng(123)  # fixed validation windows
    losses = []
    for _ in range(batches):
        ix = rng.integers(0, len(data) - seq - 1, batch)
        x = torch.from_numpy(np.stack([data[i:i + seq] for i in ix]).astype(np.int64))
        y = torch.from_numpy(np.stack([data[i + 1:i + 1 + seq] for i in ix]).astype(np.int64))
        logits, _ = model(x)
        losses.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).item())
    model.train()
    return float(np.mean(losses))


def stage_of(m):
    return {k: m[k] for k in ("steps", "batch", "seq", "train_tokens", "lr", "wall_time_s", "val_loss")}


def main():
    a = get_args()
    set_threads()
    torch.manual_seed(a.seed)
    tokdir = os.path.join(BUILD, "tokens")
    train = np.fromfile(a.train_bin or os.path.join(tokdir, "train.bin"), dtype=np.uint16)
    val = np.fromfile(os.path.join(tokdir, "heldout.bin"), dtype=np.uint16)
    cfg = Config(hidden_size=a.hidden, intermediate_size=a.ffn, num_hidden_layers=a.layers,
                 num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, max_position_embeddings=a.ctx)
    prior = None
    if a.init:
        model, prior = load(os.path.join(CKPT_DIR, a.init, "model.pt"))
        model.train()
        cfg = model.config
        if "train_tokens" not in prior:
            # Rebuilt from a committed model.onnx (ckpt_from_onnx.py without --metrics): the earlier stages are in
            # that model's card, not here; this run's metrics then cover only what it trains.
            print(f"--init {a.init}: no training metrics in its checkpoint; recording this run's stage only", flush=True)
            prior = {"stages": []}
    else:
        model = LlamaForCausalLM(cfg)
    n_params = model.num_params()
    print(f"{a.name}: {n_params} params, train {len(train)} tokens, val {len(val)} tokens", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95))
    rng = np.random.default_rng(a.seed)
    out = os.path.join(CKPT_DIR, a.name)
    ensure(out)
    history = []
    if prior:
        vl0 = evaluate(model, val, a.eval_batches, a.batch, a.seq)
        history.append({"step": 0, "val_loss": vl0, "time_s": 0.0})
        reported = f" (stage 1 reported {prior['val_loss']:.4f})" if "val_loss" in prior else ""
        print(f"--init {a.init}: val_loss {vl0:.4f} before continuing{reported}", flush=True)
    t0 = time.time()
    model.train()
    for step in range(1, a.steps + 1):
        lr = a.lr * min(1.0, step / a.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / a.steps))))
        for g in opt.param_groups:
            g["lr"] = lr
        ix = rng.integers(0, len(train) - a.seq - 1, a.batch)
        x = torch.from_numpy(np.stack([train[i:i + a.seq] for i in ix]).astype(np.int64))
        y = torch.from_numpy(np.stack([train[i + 1:i + 1 + a.seq] for i in ix]).astype(np.int64))
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            el = time.time() - t0
            print(f"step {step} loss {loss.item():.4f} lr {lr:.2e} {step * a.batch * a.seq / el:.0f} tok/s {el:.0f}s", flush=True)
        if step % a.eval_every == 0 or step == a.steps:
            vl = evaluate(model, val, a.eval_batches, a.batch, a.seq)
            history.append({"step": step, "train_loss": loss.item(), "val_loss": vl, "time_s": time.time() - t0})
            print(f"eval step {step} val_loss {vl:.4f}", flush=True)
            stage = {"steps": step, "batch": a.batch, "seq": a.seq, "train_tokens": step * a.batch * a.seq,
                     "lr": a.lr, "wall_time_s": time.time() - t0, "val_loss": vl}
            earlier = (prior["stages"] if "stages" in prior else [stage_of(prior)]) if prior else []
            stages = earlier + [stage]
            metrics = {"name": a.name, "params": n_params, "steps": sum(s["steps"] for s in stages), "batch": a.batch,
                       "seq": a.seq, "train_tokens": sum(s["train_tokens"] for s in stages),
                       "wall_time_s": sum(s["wall_time_s"] for s in stages), "val_loss": vl, "history": history,
                       "config": cfg.to_dict(), "lr": a.lr, "stages": stages, "corpus_train_tokens": int(len(train)),
                       "corpus_val_tokens": int(len(val))}
            save(model, os.path.join(out, "model.pt"), metrics)
            with open(os.path.join(out, "metrics.json"), "w") as f:
                json.dump(metrics, f, indent=1)
    print("done", json.dumps({k: v for k, v in metrics.items() if k != "history"}), flush=True)


if __name__ == "__main__":
    main()
