"""tandem-guard: tandem-small-base fine-tuned to answer in Llama Guard 3's prompt format ("safe", or "unsafe" and a
line of violated categories S1-S13), on the 70% training split of OpenAI's moderation samples.

Usage (from anywhere; Debian's torch):
  /usr/bin/python3 recipes/guard_model.py [--data ../shared/data]
Knobs: --epochs 3 --lr 5e-4 --batch 16 --user-tokens 128 --threads 1 --out models/tandem-guard

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
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BUILD, MODELS, PAD, ROOT  # noqa: E402
from export_onnx import OPSET, export, hf_config, parity  # noqa: E402
from safety_classifier import (DATA_FILE, TOKENIZER_FROM, at_threshold, average_precision,  # noqa: E402
                               load_decoder, load_rows)
from tokenizer import ByteBPE  # noqa: E402

NAME = "tandem-guard"
WORK = os.path.join(BUILD, "guard")
LG_CATEGORIES = ["Violent Crimes", "Non-Violent Crimes", "Sex-Related Crimes", "Child Sexual Exploitation",
                 "Defamation", "Specialized Advice", "Privacy", "Intellectual Property", "Indiscriminate Weapons",
                 "Hate", "Suicide & Self-Harm", "Sexual Content", "Elections"]
OPENAI_LABELS = ["S", "H", "V", "HR", "SH", "S3", "H2", "V2"]
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
def assess(model, prefix, data, tok, bs=32, max_new=12):
    """P(unsafe) from the first answer token, and the greedy answer (with the KV cache)."""
    unsafe_first, safe_first = tok.encode("unsafe")[0], tok.encode("safe")[0]
    assert unsafe_first != safe_first
    p_unsafe, answers = [], []
    P = len(prefix)
    for s in range(0, len(data), bs):
        batch = data[s:s + bs]
        logits = run_with_prefix(model, prefix, batch, with_answer=False)
        last = torch.stack([logits[i, len(b[0]) - 1] for i, b in enumerate(batch)])
        two = torch.log_softmax(last[:, [unsafe_first, safe_first]], -1)
        p_unsafe += two[:, 0].exp().tolist()
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--base", default="tandem-small-base")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--user-tokens", type=int, default=128)
    ap.add_argument("--max-positions", type=int, default=768)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("TANDEM_CLS_THREADS", 1)))
    ap.add_argument("--limit", type=int, default=0, help="smoke runs: use only the first N rows of each split")
    ap.add_argument("--out", default=os.path.join(MODELS, NAME))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(WORK, exist_ok=True)
    logf = open(os.path.join(WORK, "train.log"), "a", encoding="utf-8")

    def log(msg):
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    t_start = time.time()
    log(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}")
    if not os.path.exists(os.path.join(args.data, DATA_FILE)):
        log(f"no {DATA_FILE} under {args.data} (pass --data DIR)")
        sys.exit(1)
    tok_dir = os.path.join(MODELS, TOKENIZER_FROM)
    tok = ByteBPE(os.path.join(tok_dir, "tokenizer.json"))
    rows = load_rows(args.data, tok)
    prefix = shared_prefix(tok)
    train_data = [encode_example(tok, r, args.user_tokens, len(prefix)) for r in rows if not r["heldout"]]
    held_rows = [r for r in rows if r["heldout"]]
    if args.limit:
        train_data, held_rows = train_data[:args.limit], held_rows[:args.limit]
    held_data = [encode_example(tok, r, args.user_tokens, len(prefix)) for r in held_rows]
    for d in train_data[:50]:
        assert d[2][:len(prefix)] == prefix
    lens = [len(prefix) + len(d[0]) + len(d[1]) for d in train_data]
    answers = [answer_text(r["y"]) for r in rows if not r["heldout"]]
    log(f"prefix {len(prefix)} tokens; training sequences {len(train_data)}, length p50 {int(np.median(lens))} "
        f"max {max(lens)}; unsafe answers {sum(a != 'safe' for a in answers)}")

    model, diff = load_decoder(os.path.join(MODELS, args.base))
    log(f"base {args.base}: {model.num_params():,} params rebuilt from ONNX (parity diff {diff:.1e})")
    train_seconds = train(model, prefix, train_data, args, log)

    # held-out 30%, scored once
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
    held = {"auprc_p_unsafe": round(auprc, 4), "greedy_f1": round(verdict["f1"], 4),
            "greedy_precision": round(verdict["precision"], 4), "greedy_recall": round(verdict["recall"], 4),
            "greedy_fpr": round(verdict["fpr"], 4), "p_unsafe_at_0.5_f1": round(at50["f1"], 4),
            "well_formed": well_formed, "n": len(held_rows), "positives": int(y_any.sum()),
            "category_micro_f1": round(cat_f1, 4), "eval_seconds": round(time.time() - t_eval, 1)}
    log(f"held-out: {json.dumps(held)}")
    with open(os.path.join(WORK, "heldout_answers.json"), "w") as f:
        json.dump([{"p_unsafe": round(float(p), 5), "answer": g} for p, g in zip(p_unsafe, gen)], f)

    # export in the family's causal layout
    out = args.out
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "model.onnx")
    export(model, path)
    params = model.num_params()
    cfg = hf_config(model.config, params)
    cfg["max_position_embeddings"] = args.max_positions
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
    meta = {"params": params, "onnx_bytes": size, "held": held, "train_seconds": round(train_seconds, 1),
            "args": {k: v for k, v in vars(args).items() if k != "out"}, "prefix_tokens": len(prefix),
            "len_p50": int(np.median(lens)), "len_max": max(lens), "train": len(train_data),
            "train_unsafe": sum(a != "safe" for a in answers), "base": args.base,
            "examples": [{"user": e["messages"][-1]["content"], "p_unsafe": e["p_unsafe"], "greedy": e["greedy"]}
                         for e in fx], "torch": torch.__version__}
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(card(meta))
    log(f"exported {out}: {size / 1e6:.2f} MB; total wall time {time.time() - t_start:.0f}s")


def card(meta):
    h, a = meta["held"], meta["args"]
    mapping = "\n".join(f"| {o} | S{TO_LLAMA_GUARD[o]} {LG_CATEGORIES[TO_LLAMA_GUARD[o] - 1]} |" for o in OPENAI_LABELS)
    ex = "\n".join(f"| {e['user'][:60]!r} | {e['p_unsafe']:.3f} | `{e['greedy']!r}` |" for e in meta["examples"])
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
from its KV cache. torch {meta['torch']} on CPU, {a['threads']} thread, shared 2-core machine: {meta['train_seconds'] / 60:.1f} min.
No model selection: the settings above were fixed before training and the held-out split was scored once.

## Held-out results ({h['n']} prompts, {h['positives']} unsafe)

| metric | value |
|---|---|
| AUPRC of P(unsafe) (first answer token: softmax over the first tokens of `unsafe` / `safe`) | **{h['auprc_p_unsafe']:.3f}** |
| F1 of the greedy verdict (`unsafe` on the first line) | {h['greedy_f1']:.3f} (precision {h['greedy_precision']:.3f}, recall {h['greedy_recall']:.3f}, false-positive rate {h['greedy_fpr']:.3f}) |
| F1 with P(unsafe) >= 0.5 | {h['p_unsafe_at_0.5_f1']:.3f} |
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
`attention_mask`, `position_ids`, `past_key_values.*`; outputs `logits`, `present.*`), `config.json` (HF Llama),
`generation_config.json` (greedy, eos `[2, 0]`, 16 new tokens), `tokenizer.json`, `tokenizer_config.json` (Llama Guard
chat_template, padding left), `special_tokens_map.json`, `parity.json` (the family's fixtures, checked by
`node recipes/check_onnx.mjs models/{NAME}`, plus `guard`: rendered prompts, ids, torch P(unsafe) and greedy answers).

## Retrain

```
/usr/bin/python3 recipes/guard_model.py --data ../shared/data
node recipes/check_onnx.mjs models/{NAME}
```
"""


if __name__ == "__main__":
    main()
