"""Export a model folder's weights as Optimum's MERGED decoder (decoder_model_merged.onnx), so the runtime's
`use_cache_branch` path is tested on a real graph of that layout.

/usr/bin/python3 export_merged.py --from ../test/fixtures/tiny-nocache --out ../test/fixtures/tiny-merged

Optimum merges its two decoder exports, decoder_model.onnx (no past: the prompt) and decoder_with_past_model.onnx
(one step on top of a cache), into one graph: the inputs of the second plus a boolean `use_cache_branch`, an `If`
node choosing the subgraph, and the weights both share moved to the main graph. Here both subgraphs come from
onnx_graph.py's decoder: the with-past branch is that graph as it is; the no-past branch is the same graph fed
zero-length caches made inside the branch, so it ignores whatever past the caller passes, as Optimum's does (callers
send a dummy past with use_cache_branch false). The weights are rebuilt from the source folder's model.onnx
(ckpt_from_onnx.py's mapping), and parity.json holds PyTorch's greedy ids and last logits for a fixed prompt.
"""
import argparse
import json
import os
import shutil
import sys

import onnx
import torch
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ckpt_from_onnx import rebuild  # noqa: E402
from export_onnx import greedy, hf_config, r6  # noqa: E402
from onnx_graph import OPSET, build  # noqa: E402
from tokenizer import load as load_tok  # noqa: E402


def branch(graph, prefix, pasts, empty_past):
    """The decoder's nodes as an If branch: intermediates renamed under `prefix`, outputs as the graph's own.
    With empty_past, each past input is replaced by a zero-length cache built in the branch."""
    outer = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    rename = {}
    nodes = []
    if empty_past:
        # [batch, kv_heads, 0, head_dim]: batch from input_ids, the rest from the past input's declared shape.
        batch = f"{prefix}batch"
        nodes.append(helper.make_node("Shape", ["input_ids"], [f"{prefix}ids_shape"], name=f"{prefix}ids_shape"))
        for nm, v in (("zero_i", 0), ("one_i", 1)):
            nodes.append(helper.make_node("Constant", [], [f"{prefix}{nm}"], name=f"{prefix}{nm}",
                                          value=helper.make_tensor(nm, TensorProto.INT64, [1], [v])))
        nodes.append(helper.make_node("Slice", [f"{prefix}ids_shape", f"{prefix}zero_i", f"{prefix}one_i"], [batch],
                                      name=batch))
        for p in pasts:
            dims = [d.dim_value for d in p.type.tensor_type.shape.dim]
            rest = helper.make_tensor(f"{prefix}{p.name}.rest", TensorProto.INT64, [3], [dims[1], 0, dims[3]])
            nodes.append(helper.make_node("Constant", [], [f"{prefix}{p.name}.rest"], value=rest,
                                          name=f"{prefix}{p.name}.rest"))
            nodes.append(helper.make_node("Concat", [batch, f"{prefix}{p.name}.rest"], [f"{prefix}{p.name}.shape"],
                                          axis=0, name=f"{prefix}{p.name}.shape"))
            zero = helper.make_tensor(f"{prefix}zero", TensorProto.FLOAT, [1], [0.0])
            nodes.append(helper.make_node("ConstantOfShape", [f"{prefix}{p.name}.shape"], [f"{prefix}{p.name}"],
                                          value=zero, name=f"{prefix}{p.name}.empty"))
            rename[p.name] = f"{prefix}{p.name}"
    for node in graph.node:
        n = onnx.NodeProto()
        n.CopyFrom(node)
        n.name = prefix + n.name
        n.input[:] = [rename.get(x, x) for x in n.input]
        for j, o in enumerate(n.output):
            rename.setdefault(o, o if o in outer else prefix + o)
            n.output[j] = rename[o]
        nodes.append(n)
    outputs = []
    for o in graph.output:
        v = onnx.ValueInfoProto()
        v.CopyFrom(o)
        v.name = rename[o.name]
        outputs.append(v)
    return helper.make_graph(nodes, prefix.strip("/"), [], outputs)


def merge(decoder):
    g = decoder.graph
    pasts = [i for i in g.input if i.name.startswith("past_key_values.")]
    with_past = branch(g, "with_past/", pasts, empty_past=False)
    no_past = branch(g, "no_past/", pasts, empty_past=True)
    flag = helper.make_tensor_value_info("use_cache_branch", TensorProto.BOOL, [1])
    node = helper.make_node("If", ["use_cache_branch"], [o.name for o in g.output], name="optimum::if",
                            then_branch=with_past, else_branch=no_past)
    graph = helper.make_graph([node], "tandem_llama_decoder_merged", list(g.input) + [flag], list(g.output),
                              list(g.initializer))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tandem-recipes")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--from", dest="src", required=True, help="a model folder whose model.onnx holds the weights")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    model = rebuild(a.src)
    tok = load_tok()
    prompt = tok.encode("In the beginning God created the heaven and the earth.")
    with torch.no_grad():
        ids = torch.tensor([prompt])
        logits, _ = model(ids, torch.ones_like(ids), torch.arange(len(prompt)).unsqueeze(0), None)
    with open(os.path.join(a.src, "parity.json")) as f:
        src = json.load(f)
    if src.get("prompt_ids") == prompt and "last_logits" in src:
        # The rebuilt weights must be the source's: its own parity logits, within export tolerance.
        diff = (logits[0, -1] - torch.tensor(src["last_logits"])).abs().max().item()
        if diff > 1e-4:
            sys.exit(f"{a.src}: rebuilt weights differ from its parity.json by {diff:.2e}")
    os.makedirs(a.out, exist_ok=True)
    onnx.save(merge(build(model)), os.path.join(a.out, "decoder_model_merged.onnx"))
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump({**hf_config(model.config, model.num_params()), "use_cache": True}, f, indent=2)
    for fn in ("generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(a.src, fn), os.path.join(a.out, fn))
    parity = {"tolerance": 1e-4, "prompt_ids": prompt, "last_logits": r6(logits[0, -1]),
              "greedy_new_ids": greedy(model, prompt, 16), "source": os.path.basename(os.path.normpath(a.src))}
    with open(os.path.join(a.out, "parity.json"), "w") as f:
        json.dump(parity, f)
    print(json.dumps({k: v for k, v in parity.items() if k != "last_logits"}))


if __name__ == "__main__":
    main()
