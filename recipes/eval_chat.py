"""Greedy-decode the chat (and base) checkpoints on recipes/eval/chat-heldout.jsonl and score against the references.

python3 eval_chat.py [model ...]   (default: tandem-small-chat tandem-large-chat tandem-small-base tandem-large-base)
Metrics: token F1 (best over `references`), exact match (normalised), share of answers closed by <|im_end|>.
Writes build/eval/<model>.jsonl (answers) and build/eval/summary.json.
"""
import collections
import json
import os
import re
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BUILD, CKPT_DIR, HERE, PAD, ensure, set_threads  # noqa: E402
from model import load  # noqa: E402
from tokenizer import load as load_tok  # noqa: E402


def norm(s):
    return re.sub(r"[^a-z0-9 ]", " ", s.lower()).split()


def f1(pred, ref):
    p, r = norm(pred), norm(ref)
    if not p or not r:
        return float(p == r)
    common = sum((collections.Counter(p) & collections.Counter(r)).values())
    if common == 0:
        return 0.0
    prec, rec = common / len(p), common / len(r)
    return 2 * prec * rec / (prec + rec)


@torch.no_grad()
def generate(model, prompts, max_new=48):
    """Left-padded batched greedy decoding with the KV cache (the same scheme the ONNX runtime uses)."""
    L = max(len(p) for p in prompts)
    ids = torch.tensor([[PAD] * (L - len(p)) + p for p in prompts])
    am = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in prompts])
    pos = (am.cumsum(-1) - 1).masked_fill(am == 0, 1)
    logits, past = model(ids, am, pos, None)
    out = [[] for _ in prompts]
    done = [False] * len(prompts)
    last_pos = pos[:, -1]
    for _ in range(max_new):
        nxt = logits[:, -1].argmax(-1)
        for i, t in enumerate(nxt.tolist()):
            if not done[i]:
                out[i].append(t)
                done[i] = t in (0, 2)
        if all(done):
            break
        last_pos = last_pos + 1
        am = torch.cat([am, torch.ones(len(prompts), 1, dtype=am.dtype)], 1)
        logits, past = model(nxt[:, None], am, last_pos[:, None], past)
    return out


def main():
    set_threads()
    names = sys.argv[1:] or [
        "tandem-small-chat", "tandem-large-chat", "tandem-small-base", "tandem-large-base", "tandem-large-oracle"]
    tok = load_tok()
    rows = [json.loads(l) for l in open(os.path.join(HERE, "eval", "chat-heldout.jsonl"), encoding="utf-8")]
    ensure(os.path.join(BUILD, "eval"))
    summary = {}
    for name in names:
        path = os.path.join(CKPT_DIR, name, "model.pt")
        if not os.path.exists(path):
            continue
        model, _ = load(path)
        t0 = time.time()
        prompts = [tok.encode(f"<|im_start|>user\n{r['question']}<|im_end|>\n<|im_start|>assistant\n") for r in rows]
        answers = []
        for i in range(0, len(prompts), 32):
            answers += generate(model, prompts[i:i + 32])
        by_kind = collections.defaultdict(list)
        closed = 0
        with open(os.path.join(BUILD, "eval", name + ".jsonl"), "w", encoding="utf-8") as f:
            for r, a in zip(rows, answers):
                closed += int(bool(a) and a[-1] == 2)
                text = tok.decode([t for t in a if t not in (0, 2)])
                refs = r.get("references") or [r["reference"]]
                score = max(f1(text, ref) for ref in refs)
                em = float(any(norm(text) == norm(ref) for ref in refs))
                by_kind[r["kind"]].append((score, em))
                f.write(json.dumps({"id": r["id"], "question": r["question"], "answer": text, "f1": score}, ensure_ascii=False) + "\n")
        allv = [v for vs in by_kind.values() for v in vs]
        summary[name] = {
            "n": len(rows), "token_f1": sum(s for s, _ in allv) / len(allv), "exact_match": sum(e for _, e in allv) / len(allv),
            "closed_with_im_end": closed / len(rows), "seconds": round(time.time() - t0, 1),
            "f1_by_kind": {k: round(sum(s for s, _ in v) / len(v), 4) for k, v in by_kind.items()},
        }
        print(name, json.dumps(summary[name]), flush=True)
    with open(os.path.join(BUILD, "eval", "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
