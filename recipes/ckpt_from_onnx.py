"""Rebuild a torch checkpoint (build/ckpt/<name>/model.pt) from a committed model folder.

python3 ckpt_from_onnx.py --name tandem-large-base [--models ../models]

Fine-tuning starts from the committed base models without re-running their pre-training (34 + 10 min on 2 cores,
and not bit-reproducible across thread counts), so everything fine-tuned later descends from exactly the weights
that are committed. Initializers named model.* keep their Hugging Face names; projection weights, stored transposed
(onnx::MatMul_N in torch.onnx.export graphs, transposed.<HF name> in onnx_graph.py's), are named by the scope of the
node that reads them (/m/layers.N/self_attn/q_proj/MatMul -> model.layers.N.self_attn.q_proj.weight). The rebuilt model must reproduce
the folder's parity.json (torch logits written at export) within its tolerance, or nothing is written.
"""
import argparse
import json
import os
import re
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CKPT_DIR, MODELS, ensure  # noqa: E402
from model import Config, LlamaForCausalLM, save  # noqa: E402

SCOPE = re.compile(r"^/m/(layers\.\d+)/(self_attn|mlp)/(\w+_proj)/MatMul$")


def state_from_onnx(path):
    g = onnx.load(path).graph
    arrays = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    state = {k: v for k, v in arrays.items() if k.startswith("model.")}
    for node in g.node:
        # torch.onnx.export keeps one copy of identical initializers (untrained norm weights are all ones) and gives
        # the others back by Identity nodes named after the module path (m.model.norm.weight under a wrapper).
        if node.op_type == "Identity" and node.input[0] in arrays:
            name = node.output[0][node.output[0].find("model."):]
            if name.startswith("model."):
                state.setdefault(name, arrays[node.input[0]])
        m = SCOPE.match(node.name)
        if node.op_type != "MatMul" or not m:
            continue
        w = next(x for x in node.input if x in arrays)
        state[f"model.{m.group(1)}.{m.group(2)}.{m.group(3)}.weight"] = arrays[w].T  # copied with the rest below
    return {k: torch.from_numpy(np.array(v)) for k, v in state.items()}


def rebuild(folder):
    """The torch model whose weights are those of folder/model.onnx (exits when the graph does not map onto it)."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = Config.from_dict(json.load(f))
    model = LlamaForCausalLM(cfg)
    state = state_from_onnx(os.path.join(folder, "model.onnx"))
    expected = {k for k in model.state_dict() if k != "lm_head.weight"}
    missing, extra = expected - set(state), set(state) - expected
    if missing or extra:
        sys.exit(f"{folder}: cannot map the graph onto the model: missing {sorted(missing)}, unexpected {sorted(extra)}")
    model.load_state_dict(state, strict=False)  # lm_head is tied to the embedding
    return model.eval()


@torch.no_grad()
def check_parity(model, parity):
    full = parity["full"]
    ids = torch.tensor([full["input_ids"]])
    logits, _ = model(ids, torch.ones_like(ids), torch.tensor([full["position_ids"]]), None)
    diff = (logits[0, -1] - torch.tensor(full["last_logits"])).abs().max().item()
    per_pos = torch.tensor(full["first64_per_position"])
    diff = max(diff, (logits[0, :, :64] - per_pos).abs().max().item())
    return diff


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--models", default=MODELS)
    p.add_argument("--metrics", help="a JSON file of the model's training metrics (as train.py writes them: steps, "
                   "batch, seq, train_tokens, lr, wall_time_s, val_loss, corpus_*_tokens), kept in the checkpoint so "
                   "continued training and fine-tuning can report the whole history")
    a = p.parse_args()
    folder = os.path.join(a.models, a.name)
    model = rebuild(folder)
    with open(os.path.join(folder, "parity.json")) as f:
        parity = json.load(f)
    diff = check_parity(model, parity)
    if diff > parity["tolerance"]:
        sys.exit(f"{folder}: rebuilt weights differ from parity.json by {diff:.2e} (tolerance {parity['tolerance']})")
    out = os.path.join(CKPT_DIR, a.name)
    ensure(out)
    extra_info = {"name": a.name, "params": model.num_params(), "rebuilt_from": folder, "parity_max_abs_diff": diff}
    if a.metrics:
        with open(a.metrics) as f:
            extra_info = {**json.load(f), **extra_info}
        with open(os.path.join(out, "metrics.json"), "w") as f:
            json.dump(extra_info, f, indent=1)
    save(model, os.path.join(out, "model.pt"), extra_info)
    print(json.dumps(extra_info))


if __name__ == "__main__":
    main()
