"""Export a checkpoint to ONNX in the Hugging Face Optimum decoder layout (with KV cache), plus the folder files.

python3 export_onnx.py --ckpt tandem-large-chat [--out models/tandem-large-chat]
python3 export_onnx.py --rewrite-graph models/tandem-small-chat   # a committed folder, weights unchanged

Graph (opset 14, written node by node by recipes/onnx_graph.py):
  inputs   input_ids [batch, seq] int64, attention_mask [batch, past+seq] int64, position_ids [batch, seq] int64,
           past_key_values.{i}.key / .value [batch, kv_heads, past, head_dim] float32 (past may be 0)
  outputs  logits [batch, seq, vocab] float32, present.{i}.key / .value [batch, kv_heads, past+seq, head_dim]
The tied embedding is read through a Transpose node on the embedding initializer (onnxruntime folds it at load), not
stored twice. fix_tied_embedding does the same for torch.onnx.export graphs (export_nocache.py's fixture).

--rewrite-graph rewrites only model.onnx of an exported folder: the weights are read back from its model.onnx
(ckpt_from_onnx.py) and must reproduce its parity.json before and after, so a change of graph layout reaches the
committed models without retraining; the model card's size is updated.

Also writes config.json (HF Llama), generation_config.json, the tokenizer files and parity.json (torch logits for
fixed inputs: full prompt without cache, prefix + cached steps, and a left-padded batch).
"""
import argparse
import json
import os
import re
import shutil
import sys

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CKPT_DIR, MODELS, PAD, TOK_DIR, set_threads  # noqa: E402
from model import load  # noqa: E402
from onnx_graph import OPSET, build  # noqa: E402
from tokenizer import load as load_tok  # noqa: E402


def export(model, path):
    """The decoder graph written node by node (recipes/onnx_graph.py); see there for why not torch.onnx.export."""
    m = build(model)
    onnx.save(m, path)
    print(f"{path}: {len(m.graph.node)} nodes")


def fix_tied_embedding(path, model):
    m = onnx.load(path)
    g = m.graph
    emb = model.model.embed_tokens.weight.detach().numpy()
    emb_name = None
    for init in g.initializer:
        if tuple(init.dims) == emb.shape and np.array_equal(numpy_helper.to_array(init), emb):
            emb_name = init.name
    assert emb_name, "embedding initializer not found"
    removed = 0
    for init in list(g.initializer):
        if tuple(init.dims) == emb.T.shape and np.array_equal(numpy_helper.to_array(init), emb.T):
            tname = init.name
            g.initializer.remove(init)
            g.node.insert(0, helper.make_node("Transpose", [emb_name], [tname], perm=[1, 0], name="lm_head_tied_transpose"))
            removed += 1
    # drop the wrapper's "m." prefix so initializers carry the HF parameter names
    ren = {i.name: i.name[2:] for i in g.initializer if i.name.startswith("m.")}
    for i in g.initializer:
        i.name = ren.get(i.name, i.name)
    for node in g.node:
        for j, nm in enumerate(node.input):
            if nm in ren:
                node.input[j] = ren[nm]
    emb_name = ren.get(emb_name, emb_name)
    print(f"tied embedding: replaced {removed} transposed copies with a Transpose of {emb_name}")
    onnx.checker.check_model(m)
    onnx.save(m, path)


def hf_config(c, params):
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
        "num_attention_heads": c.num_attention_heads, "num_key_value_heads": c.num_key_value_heads,
        "num_hidden_layers": c.num_hidden_layers, "head_dim": c.head_dim, "hidden_act": "silu",
        "rms_norm_eps": c.rms_norm_eps, "rope_theta": c.rope_theta, "rope_scaling": None,
        "vocab_size": c.vocab_size, "max_position_embeddings": c.max_position_embeddings,
        "tie_word_embeddings": True, "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False,
        "initializer_range": 0.02, "pretraining_tp": 1,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": PAD, "use_cache": True,
        "torch_dtype": "float32", "transformers_version": "4.46.0", "num_parameters": params,
    }


def r6(a, n=None):
    a = np.asarray(a).reshape(-1)
    return [round(float(x), 6) for x in (a if n is None else a[:n])]


def position_ids_from_mask(am):
    pos = am.long().cumsum(-1) - 1
    return pos.masked_fill(am == 0, 1)


@torch.no_grad()
def parity(model, tok):
    c = model.config
    prompt = "<|im_start|>user\nWhat does the word apple mean?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.encode(prompt)
    S = len(ids)
    x = torch.tensor([ids])
    am = torch.ones(1, S, dtype=torch.long)
    pos = torch.arange(S).unsqueeze(0)
    logits, _ = model(x, am, pos, None)
    full = {"input_ids": ids, "position_ids": list(range(S)),
            "last_logits": r6(logits[0, -1]), "first64_per_position": [r6(logits[0, t, :64]) for t in range(S)]}
    # prefix without cache, then the remaining tokens one at a time with the cache
    k = S - 4
    l1, pres = model(x[:, :k], am[:, :k], pos[:, :k], None)
    steps = []
    for t in range(k, S):
        lt, pres = model(x[:, t:t + 1], am[:, :t + 1], pos[:, t:t + 1], pres)
        steps.append({"input_ids": [ids[t]], "position_ids": [t], "past_length": t,
                      "logits_first512": r6(lt[0, -1], 512)})
        assert torch.allclose(lt[0, -1], logits[0, t], atol=1e-4)
    steps[-1]["logits"] = r6(lt[0, -1])  # the last cached step also in full
    cached = {"prefix_ids": ids[:k], "prefix_last_logits": r6(l1[0, -1], 512), "steps": steps}
    # left-padded batch of two prompts (no cache), compared with each prompt alone
    p2 = tok.encode("Define fire.")
    p1 = tok.encode("The Lord is my shepherd; I shall not want.")
    L = max(len(p1), len(p2))
    rows = [[PAD] * (L - len(p)) + p for p in (p1, p2)]
    bam = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in (p1, p2)])
    bpos = position_ids_from_mask(bam)
    bl, _ = model(torch.tensor(rows), bam, bpos, None)
    batch = {"input_ids": rows, "attention_mask": bam.tolist(), "position_ids": bpos.tolist(), "last_logits_first512": []}
    for i, p in enumerate((p1, p2)):
        single, _ = model(torch.tensor([p]), torch.ones(1, len(p), dtype=torch.long), torch.arange(len(p)).unsqueeze(0), None)
        d = (single[0, -1] - bl[i, -1]).abs().max().item()
        assert d < 1e-4, d
        batch["last_logits_first512"].append(r6(bl[i, -1], 512))
    gen = greedy(model, ids, 48)
    return {"vocab_size": c.vocab_size, "num_hidden_layers": c.num_hidden_layers,
            "num_key_value_heads": c.num_key_value_heads, "head_dim": c.head_dim, "tolerance": 1e-4,
            "full": full, "cached": cached, "batch_left_padded": batch,
            "greedy": {"prompt_ids": ids, "new_ids": gen, "text": tok.decode(gen)}}


@torch.no_grad()
def greedy(model, ids, n, stop=(0, 2)):
    out = []
    x = torch.tensor([ids])
    pos = torch.arange(len(ids)).unsqueeze(0)
    am = torch.ones(1, len(ids), dtype=torch.long)
    logits, pres = model(x, am, pos, None)
    for _ in range(n):
        nxt = int(logits[0, -1].argmax())
        out.append(nxt)
        if nxt in stop:
            break
        t = len(ids) + len(out) - 1
        am = torch.ones(1, t + 1, dtype=torch.long)
        logits, pres = model(torch.tensor([[nxt]]), am, torch.tensor([[t]]), pres)
    return out


def rewrite_graph(folder):
    from ckpt_from_onnx import check_parity, rebuild
    path = os.path.join(folder, "model.onnx")
    with open(os.path.join(folder, "parity.json")) as f:
        par = json.load(f)
    model = rebuild(folder)
    before = check_parity(model, par)
    export(model, path + ".new")
    os.replace(path + ".new", path)
    after = check_parity(rebuild(folder), par)
    if max(before, after) > par["tolerance"]:
        sys.exit(f"{folder}: weights differ from parity.json by {max(before, after):.2e}")
    size = os.path.getsize(path)
    card = os.path.join(folder, "README.md")
    if os.path.exists(card):
        text = open(card).read()
        # the family's cards ("`model.onnx`, 4.0 MB") and the guard's ("opset 14, 4.0 MB")
        text = re.sub(r"(`model\.onnx`, |opset \d+, )[0-9.]+ MB", lambda m: f"{m.group(1)}{size / 1e6:.1f} MB", text)
        open(card, "w").write(text)
    print(f"{path}: rewritten, {size} bytes; torch vs parity.json {before:.1e} before, {after:.1e} after "
          "(onnxruntime's parity: node recipes/check_onnx.mjs)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt")
    p.add_argument("--out")
    p.add_argument("--rewrite-graph", metavar="FOLDER")
    a = p.parse_args()
    set_threads()
    if a.rewrite_graph:
        return rewrite_graph(a.rewrite_graph)
    if not a.ckpt:
        p.error("--ckpt or --rewrite-graph is required")
    out = a.out or os.path.join(MODELS, a.ckpt)
    os.makedirs(out, exist_ok=True)
    model, metrics = load(os.path.join(CKPT_DIR, a.ckpt, "model.pt"))
    tok = load_tok()
    params = model.num_params()
    path = os.path.join(out, "model.onnx")
    export(model, path)
    print(f"{path}: {os.path.getsize(path)/1e6:.2f} MB, {params} params")
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(hf_config(model.config, params), f, indent=2)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        gen = {"bos_token_id": 1, "eos_token_id": [2, 0], "pad_token_id": PAD, "do_sample": False,
               "max_new_tokens": 64, "transformers_version": "4.46.0"}
        # Greedy decoding of these tiny chat models loops ("a person who is a person who is ..."); a mild
        # repetition penalty (Hugging Face semantics) is their default. Measured by hand on held-out questions.
        if "base" in metrics:  # fine-tuned from a base checkpoint: a chat model
            gen["repetition_penalty"] = 1.2
        json.dump(gen, f, indent=2)
    for fn in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(TOK_DIR, fn), os.path.join(out, fn))
    par = parity(model, tok)
    with open(os.path.join(out, "parity.json"), "w") as f:
        json.dump(par, f, separators=(",", ":"))
    print(f"parity.json {os.path.getsize(os.path.join(out, 'parity.json'))/1e3:.0f} KB; greedy: {par['greedy']['text']!r}")
    with open(os.path.join(CKPT_DIR, a.ckpt, "export.json"), "w") as f:
        json.dump({"onnx_bytes": os.path.getsize(path), "opset": OPSET, "params": params,
                   "greedy_sample": par["greedy"]["text"]}, f, indent=1)


if __name__ == "__main__":
    main()
