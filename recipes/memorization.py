"""How much better does a base model know texts it was pre-trained on than texts it never saw?

python3 memorization.py [--n 400] [--ckpt NAME ...]

Evaluating EFT on questions whose answers were in pre-training but not in chat SFT (the setting of the EFT and
proxy-tuning papers, where the large base knows facts the small tuned model does not) only helps when the large base
has memorised those texts. This prints, per model, the mean per-token loss on a fixed sample of dictionary documents
from the training split and from the held-out split (recipes/SPLITS.md), and the gap between them: the memorisation a
"seen in pre-training" eval could draw on. The committed base models are rebuilt from their model.onnx
(ckpt_from_onnx.rebuild); --ckpt adds checkpoints under build/ckpt (e.g. an experimental longer-trained base);
--docs adds a column for any documents, e.g. knowledge.py's known words (knowledge_probe.sh).
"""
import argparse
import json
import os
import random
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ckpt_from_onnx import rebuild  # noqa: E402
from common import CKPT_DIR, CORPUS_DIR, EOT, MODELS, set_threads  # noqa: E402
from model import load  # noqa: E402
from tokenizer import load as load_tok  # noqa: E402


def sample(path, n, rnd):
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    rows = [r for r in rows if r["src"] in ("wordnet", "gcide")]
    rnd.shuffle(rows)
    return rows[:n]


@torch.no_grad()
def loss(model, tok, rows, max_tokens=128):
    """Mean negative log-likelihood per token, each document after <|endoftext|> as packed in pre-training."""
    total, count = 0.0, 0
    for r in rows:
        ids = [EOT] + tok.encode(r["text"])[:max_tokens]
        x = torch.tensor([ids])
        logits, _ = model(x, torch.ones_like(x), torch.arange(len(ids)).unsqueeze(0), None)
        lp = torch.log_softmax(logits[0, :-1], -1).gather(1, x[0, 1:, None])
        total -= lp.sum().item()
        count += len(ids) - 1
    return total / count


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=400, help="documents per split")
    p.add_argument("--ckpt", nargs="*", default=[], help="checkpoint names under build/ckpt to add")
    p.add_argument("--docs", help="a JSONL of documents ({text}) to score too, e.g. knowledge.py's known_docs.jsonl")
    a = p.parse_args()
    set_threads()
    tok = load_tok()
    rnd = random.Random(0)
    seen = sample(os.path.join(CORPUS_DIR, "train.jsonl"), a.n, rnd)
    unseen = sample(os.path.join(CORPUS_DIR, "heldout.jsonl"), a.n, rnd)
    models = {name: rebuild(os.path.join(MODELS, name)) for name in ("tandem-small-base", "tandem-large-base")}
    for name in a.ckpt:
        models[f"{name} (build/ckpt)"] = load(os.path.join(CKPT_DIR, name, "model.pt"))[0]
    print(f"{a.n} dictionary documents (WordNet, GCIDE) per split, first 128 tokens each; nats per token")
    extra = [json.loads(line) for line in open(a.docs, encoding="utf-8")] if a.docs else None
    extra_col = f" | {os.path.basename(a.docs)} ({len(extra)} docs)" if extra else ""
    print(f"| model | trained-on docs | held-out docs | gap{extra_col} |\n|---|--:|--:|--:|{'--:|' if extra else ''}")
    for name, model in models.items():
        s, u = loss(model.eval(), tok, seen), loss(model, tok, unseen)
        x = f" {loss(model, tok, extra):.3f} |" if extra else ""
        print(f"| {name} | {s:.3f} | {u:.3f} | {u - s:.3f} |{x}")


if __name__ == "__main__":
    main()
