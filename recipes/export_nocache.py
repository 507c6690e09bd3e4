"""Export a checkpoint as a decoder WITHOUT a KV cache (inputs input_ids, attention_mask, position_ids -> logits),
the layout of older or simpler exports, so the runtime's no-cache path is tested on a real graph.

python3 export_nocache.py --ckpt smoke --out ../test/fixtures/tiny-nocache
Writes the folder files (config, tokenizer, generation config) and parity.json: PyTorch greedy ids for a fixed prompt
and the last-position logits, which the runtime must reproduce without a cache.
"""
import argparse
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CKPT_DIR, set_threads  # noqa: E402
from export_onnx import OPSET, fix_tied_embedding, greedy, hf_config, r6  # noqa: E402
from tokenizer import load as load_tok  # noqa: E402
from model import load  # noqa: E402


class NoCache(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask, position_ids):
        logits, _ = self.m(input_ids, attention_mask, position_ids, None)
        return logits


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    set_threads()
    os.makedirs(a.out, exist_ok=True)
    model, _ = load(os.path.join(CKPT_DIR, a.ckpt, "model.pt"))
    c = model.config
    ids = torch.randint(4, c.vocab_size, (2, 5))
    am = torch.ones(2, 5, dtype=torch.long)
    pos = torch.arange(5).unsqueeze(0).expand(2, 5).contiguous()
    path = os.path.join(a.out, "model.onnx")
    dyn = {n: {0: "batch_size", 1: "sequence_length"} for n in ("input_ids", "attention_mask", "position_ids", "logits")}
    with torch.no_grad():
        torch.onnx.export(NoCache(model).eval(), (ids, am, pos), path, input_names=["input_ids", "attention_mask", "position_ids"],
                          output_names=["logits"], dynamic_axes=dyn, opset_version=OPSET, do_constant_folding=True)
    fix_tied_embedding(path, model)
    from common import PAD, TOK_DIR  # noqa: E402
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump({**hf_config(c, model.num_params()), "use_cache": False}, f, indent=2)
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": [2, 0], "pad_token_id": PAD, "do_sample": False, "max_new_tokens": 32}, f, indent=2)
    for fn in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(TOK_DIR, fn), os.path.join(a.out, fn))
    tok = load_tok()
    prompt = tok.encode("In the beginning God created the heaven and the earth.")
    with torch.no_grad():
        x = torch.tensor([prompt])
        logits, _ = model(x, torch.ones_like(x), torch.arange(len(prompt)).unsqueeze(0), None)
    with open(os.path.join(a.out, "parity.json"), "w") as f:
        json.dump({"prompt_ids": prompt, "last_logits": r6(logits[0, -1]), "greedy_ids": greedy(model, prompt, 24)}, f)
    print(f"{path}: {os.path.getsize(path)/1e6:.2f} MB")


if __name__ == "__main__":
    main()
