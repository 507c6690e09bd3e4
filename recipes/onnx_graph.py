"""The family's decoder graph, written node by node from a checkpoint's weights (instead of torch.onnx.export).

Same inputs, outputs and function as Optimum's Llama decoder with KV cache; what differs is the number of nodes a
decode step runs. A tracer records every `view(B, S, ...)` as Shape -> Gather -> Unsqueeze -> Concat and every GQA
repeat as Expand + Reshape: torch.onnx.export gave tandem-small-chat 248 nodes per step after onnxruntime's own
fusions, most of them shape arithmetic, and at this size each node costs about as much as a small matrix product.
Here:
  * reshapes take constant shapes (0 = keep that dimension), so no shape arithmetic per layer;
  * the causal mask and RoPE's cos/sin are built once per step, not per layer;
  * rotate_half is a matrix product with a signed permutation (exact: one nonzero per column);
  * GQA needs no repeat: the queries of the heads that share a key head are stacked as the rows of one product,
    [batch, kv_heads, group * seq, head_dim] times that head's keys, so each key head is read once per step by one
    matrix product (broadcasting [batch, kv_heads, group, seq, head_dim] over the keys ran a vector product per
    query head instead, reading each key head once per query head); the causal mask is tiled to those rows once
    per step.
Operation order within each formula follows recipes/model.py (scores divided after the product, RMSNorm as
x * (1 / sqrt(mean(x^2) + eps)) * w, SiLU as x * sigmoid(x)), so onnxruntime's fusions apply as before and parity
against torch stays within the same 1e-4.

Naming: HF names for the embedding and norm weights; a projection's weight is stored transposed (MatMul's [in, out])
as `transposed.<HF name>` and read by a node named `/m/layers.N/<block>/<proj>/MatMul`, the scope ckpt_from_onnx.py
maps back to the HF name.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 14
NEG = -1e9  # recipes/model.py's additive mask value


class _Builder:
    def __init__(self):
        self.nodes, self.inits = [], []
        self._consts = {}
        self._n = 0

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, values, dtype=np.int64):
        key = (dtype, tuple(np.asarray(values).reshape(-1).tolist()), np.asarray(values).shape)
        if key not in self._consts:
            self._consts[key] = self.init(f"const_{len(self._consts)}", np.asarray(values, dtype=dtype))
        return self._consts[key]

    def op(self, op_type, inputs, name=None, out=None, **attrs):
        self._n += 1
        name = name or f"/m/{op_type}_{self._n}"
        out = out or f"{name}_output_0"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name, **attrs))
        return out


def _rotate_half_matrix(d):
    """R with x @ R == cat(-x[..., d/2:], x[..., :d/2]) (HF rotate_half)."""
    h = d // 2
    r = np.zeros((d, d), dtype=np.float32)
    for i in range(h):
        r[i + h, i] = -1.0
        r[i, i + h] = 1.0
    return r


def build(model):
    """The ONNX ModelProto of a recipes/model.py LlamaForCausalLM (eval mode, weights as they are)."""
    c = model.config
    sd = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    n, nh, nkv, hd = c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim
    rep = nh // nkv
    b = _Builder()
    f32 = lambda v: b.const(v, np.float32)  # noqa: E731

    # Mask [batch, 1, seq, total]: key j is visible to query i when j <= (total - seq) + i and not padding.
    seq = b.op("Gather", [b.op("Shape", ["input_ids"]), b.const(1)], axis=0)
    total = b.op("Gather", [b.op("Shape", ["attention_mask"]), b.const(1)], axis=0)
    qpos = b.op("Add", [b.op("Range", [b.const(0), seq, b.const(1)]), b.op("Sub", [total, seq])])
    kpos = b.op("Range", [b.const(0), total, b.const(1)])
    causal = b.op("Not", [b.op("Greater", [b.op("Unsqueeze", [kpos, b.const([0])]),
                                             b.op("Unsqueeze", [qpos, b.const([1])])])])
    real = b.op("Greater", [b.op("Unsqueeze", ["attention_mask", b.const([1, 2])]), b.const(0)])
    mask = b.op("Where", [b.op("And", [causal, real]), f32(0.0), f32(NEG)])
    mask = b.op("Tile", [mask, b.const([1, 1, rep, 1])])  # [batch, 1, group * seq, total], rows as the queries'.

    # RoPE tables once per step, laid out to broadcast over [batch, seq, heads..., head_dim].
    inv_freq = model.rotary.inv_freq.numpy()  # a non-persistent buffer: not in the state dict
    freqs = b.op("Mul", [b.op("Unsqueeze", [b.op("Cast", ["position_ids"], to=TensorProto.FLOAT), b.const([2])]),
                         b.init("rotary.inv_freq", inv_freq.astype(np.float32))])
    emb = b.op("Concat", [freqs, freqs], axis=-1)
    cos_k = b.op("Unsqueeze", [b.op("Cos", [emb]), b.const([2])])  # [batch, seq, 1, head_dim]
    sin_k = b.op("Unsqueeze", [b.op("Sin", [emb]), b.const([2])])
    cos_q = b.op("Unsqueeze", [cos_k, b.const([3])])  # [batch, seq, 1, 1, head_dim]
    sin_q = b.op("Unsqueeze", [sin_k, b.const([3])])
    rot = b.init("rotary.rotate_half", _rotate_half_matrix(hd))

    def rms(x, weight, scope):
        var = b.op("ReduceMean", [b.op("Pow", [x, f32(2.0)], name=f"{scope}/Pow")], name=f"{scope}/ReduceMean",
                   axes=[-1], keepdims=1)
        inv = b.op("Div", [f32(1.0), b.op("Sqrt", [b.op("Add", [var, f32(c.rms_norm_eps)], name=f"{scope}/Add")],
                                           name=f"{scope}/Sqrt")], name=f"{scope}/Div")
        return b.op("Mul", [weight, b.op("Mul", [x, inv], name=f"{scope}/Mul")], name=f"{scope}/Mul_1")

    def proj(x, layer, block, name):
        hf = f"model.layers.{layer}.{block}.{name}.weight"
        w = b.init(f"transposed.{hf}", sd[hf].T)
        return b.op("MatMul", [x, w], name=f"/m/layers.{layer}/{block}/{name}/MatMul")

    def rope(x, cos, sin):
        return b.op("Add", [b.op("Mul", [x, cos]), b.op("Mul", [b.op("MatMul", [x, rot]), sin])])

    x = b.op("Gather", [b.init("model.embed_tokens.weight", sd["model.embed_tokens.weight"]), "input_ids"],
             name="/m/embed_tokens/Gather")
    scale = f32(float(np.sqrt(hd)))
    for i in range(n):
        p = f"model.layers.{i}"
        h = rms(x, b.init(f"{p}.input_layernorm.weight", sd[f"{p}.input_layernorm.weight"]),
                f"/m/layers.{i}/input_layernorm")
        q = b.op("Reshape", [proj(h, i, "self_attn", "q_proj"), b.const([0, 0, nkv, rep, hd])])
        k = b.op("Reshape", [proj(h, i, "self_attn", "k_proj"), b.const([0, 0, nkv, hd])])
        v = b.op("Reshape", [proj(h, i, "self_attn", "v_proj"), b.const([0, 0, nkv, hd])])
        q = b.op("Transpose", [rope(q, cos_q, sin_q)], perm=[0, 2, 3, 1, 4])  # [batch, kv, group, seq, hd]
        q = b.op("Reshape", [q, b.const([0, 0, -1, hd])])  # [batch, kv, group * seq, hd]
        k = b.op("Transpose", [rope(k, cos_k, sin_k)], perm=[0, 2, 1, 3])  # [batch, kv, seq, hd]
        v = b.op("Transpose", [v], perm=[0, 2, 1, 3])
        k = b.op("Concat", [f"past_key_values.{i}.key", k], axis=2, out=f"present.{i}.key")
        v = b.op("Concat", [f"past_key_values.{i}.value", v], axis=2, out=f"present.{i}.value")
        # Transpose right before the product: onnxruntime folds it into the MatMul (FusedMatMul transB), where a
        # stand-alone Transpose of the whole cache cost as much as the layer's projections at batch 8.
        kt = b.op("Transpose", [k], perm=[0, 1, 3, 2])  # [batch, kv, hd, total]
        att = b.op("Add", [b.op("Div", [b.op("MatMul", [q, kt]), scale]), mask])
        att = b.op("Softmax", [att], axis=-1)
        y = b.op("MatMul", [att, v])  # [batch, kv, group * seq, hd]
        y = b.op("Reshape", [y, b.const([0, nkv, rep, -1, hd])])
        y = b.op("Reshape", [b.op("Transpose", [y], perm=[0, 3, 1, 2, 4]), b.const([0, 0, nh * hd])])
        x = b.op("Add", [x, proj(y, i, "self_attn", "o_proj")])
        h = rms(x, b.init(f"{p}.post_attention_layernorm.weight", sd[f"{p}.post_attention_layernorm.weight"]),
                f"/m/layers.{i}/post_attention_layernorm")
        g = proj(h, i, "mlp", "gate_proj")
        act = b.op("Mul", [b.op("Mul", [g, b.op("Sigmoid", [g])]), proj(h, i, "mlp", "up_proj")])
        x = b.op("Add", [x, proj(act, i, "mlp", "down_proj")])
    x = rms(x, b.init("model.norm.weight", sd["model.norm.weight"]), "/m/norm")
    # Tied head: a Transpose of the embedding (onnxruntime folds it at load) instead of a second copy on disk.
    head = b.op("Transpose", ["model.embed_tokens.weight"], name="lm_head_tied_transpose", perm=[1, 0])
    b.op("MatMul", [x, head], name="/m/lm_head/MatMul", out="logits")

    def io(name, elem, shape):
        return helper.make_tensor_value_info(name, elem, shape)

    inputs = [io("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
              io("attention_mask", TensorProto.INT64, ["batch_size", "past_sequence_length + sequence_length"]),
              io("position_ids", TensorProto.INT64, ["batch_size", "sequence_length"])]
    outputs = [io("logits", TensorProto.FLOAT, ["batch_size", "sequence_length", c.vocab_size])]
    for i in range(n):
        for t in ("key", "value"):
            inputs.append(io(f"past_key_values.{i}.{t}", TensorProto.FLOAT,
                             ["batch_size", nkv, "past_sequence_length", hd]))
            outputs.append(io(f"present.{i}.{t}", TensorProto.FLOAT,
                              ["batch_size", nkv, "past_sequence_length + sequence_length", hd]))
    graph = helper.make_graph(b.nodes, "tandem_llama_decoder", inputs, outputs, b.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tandem-recipes")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m
