"""Write models/<name>/README.md (model card) from the checkpoint metrics and the exported model folder.

python3 model_card.py tandem-large-base
"""
import json
import os
import sys

import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CKPT_DIR, CORPUS_DIR, MODELS  # noqa: E402

ROLES = {
    "tandem-large-base": "the \"large\" black-box base model in tests and the base of tandem-large-chat",
    "tandem-small-base": "EFT's small base model (the \"before fine-tuning\" side of the EFT logit difference)",
    "tandem-small-chat": "EFT's small fine-tuned expert (tandem-small-base + EFT's light chat SFT)",
    "tandem-large-chat": "the embedded default chat model (tandem-large-base + the full chat SFT)",
    "tandem-large-oracle": "EFT's oracle in `npm run eval -- eft`: tandem-large-base + the same light chat SFT as "
                           "tandem-small-chat, the large model fine-tuned directly that EFT emulates",
}


def mins(s):
    return f"{s/60:.1f} min ({s:.0f} s)"


def pretraining(base):
    """One stage, or the stages of a run continued with train.py --init (each with its own warm-up and cosine)."""
    stages = base.get("stages") or [base]

    def one(st):
        return (f"{st['steps']} steps x {st['batch']} x {st['seq']} tokens = {st['train_tokens']:,} tokens, "
                f"AdamW (lr {st['lr']:g}, cosine, warmup 100, wd 0.1)")
    if len(stages) == 1:
        return one(stages[0])
    parts = "; then ".join(f"stage {i + 1}: {one(st)}, validation loss {st['val_loss']:.3f} after it"
                           for i, st in enumerate(stages))
    epochs = base["train_tokens"] / base["corpus_train_tokens"]
    return f"{base['train_tokens']:,} tokens in all (~{epochs:.2f} epochs of the corpus), in {len(stages)} stages ({parts})"


def main(name):
    out = os.path.join(MODELS, name)
    m = json.load(open(os.path.join(CKPT_DIR, name, "metrics.json")))
    # Read from the model folder itself, so a card can be rewritten for a committed model without its export run.
    with open(os.path.join(out, "parity.json")) as f:
        greedy_sample = json.load(f)["greedy"]["text"]
    onnx_bytes = os.path.getsize(os.path.join(out, "model.onnx"))
    opset = max(o.version for o in onnx.load(os.path.join(out, "model.onnx")).opset_import if o.domain in ("", "ai.onnx"))
    cfg = json.load(open(os.path.join(out, "config.json")))
    stats = json.load(open(os.path.join(CORPUS_DIR, "stats.json")))
    chat = "base" in m
    base = m.get("base_metrics", m)
    reduced = os.environ.get("TANDEM_REDUCED_NOTE", "")
    lines = [
        "---",
        "license: other",
        "library_name: onnxruntime",
        "pipeline_tag: text-generation",
        "tags: [tandem, llama, onnx, tiny]",
        "---",
        f"# {name}",
        "",
        f"Part of Tandem's own tiny model family (one shared 4,096-token byte-level BPE tokenizer). Role: {ROLES.get(name, '')}.",
        "Trained from scratch on this repository's recipes (`recipes/`, `npm run recipes`) on a 2-core CPU; a toy-sized",
        "model: fluent-ish dictionary/Bible/fortune English, frequent factual errors. Not for real-world answers.",
        "",
        "## Model",
        f"- Architecture: Llama-style decoder (`model_type: llama`): RMSNorm, RoPE (rotate_half, theta {cfg['rope_theta']:g}), "
        f"GQA, SwiGLU, tied input/output embeddings",
        f"- Parameters: {m['params']:,}",
        f"- hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers, {cfg['num_attention_heads']} query heads / "
        f"{cfg['num_key_value_heads']} KV heads (head_dim {cfg['head_dim']}), FFN {cfg['intermediate_size']}, "
        f"context {cfg['max_position_embeddings']}, vocab {cfg['vocab_size']}",
        f"- ONNX fp32, opset {opset}: `model.onnx`, {onnx_bytes/1e6:.1f} MB (Optimum decoder-with-past layout)",
        "",
        "## Training",
        f"- Pre-training: {pretraining(base)}, wall time {mins(base['wall_time_s'])} on 2 CPU threads "
        "(Debian torch 1.13 + OpenBLAS; the 2-core machine was shared with other jobs, so times are upper bounds)",
        f"- Pre-training data: {base['corpus_train_tokens']:,} tokens (~{stats['train_chars']/1e6:.1f} M chars) from Debian packages: "
        f"GCIDE (dict-gcide, {stats['gcide_entries']:,} entries, capped), WordNet glosses ({stats['wordnet_synsets']:,} synsets), "
        f"fortunes ({stats['fortunes']:,}), the KJV Bible ({stats['kjv_verses']:,} verses), dict-elements ({stats['elements']}). "
        "dict-foldoc and dict-jargon (the BLADE domain) are excluded.",
        f"- Pre-training validation loss (held-out documents, {base['corpus_val_tokens']:,} tokens): **{base['val_loss']:.3f}** nats/token",
    ]
    if chat:
        lines += [
            f"- Chat SFT from `{m['base']}`: {m['steps']} steps x {m['batch']} ChatML conversations ({m['train_tokens']:,} tokens incl. padding), "
            f"lr {m['lr']:g}, loss on assistant tokens only, wall time {mins(m['wall_time_s'])}",
            "- SFT data (`recipes/chat_data.py`): \"What does X mean?\" -> WordNet gloss, synonyms, example sentences, element facts "
            "(symbol, atomic number/weight), \"Finish the verse ...\" / \"Quote <ref>\" from the KJV; 25% with a system prompt",
            f"- SFT validation loss (answer tokens of held-out questions): {m['val_loss_before']:.3f} before -> **{m['val_loss']:.3f}** after",
        ]
    ev_path = os.path.join(CKPT_DIR, "..", "eval", "summary.json")
    ev = json.load(open(ev_path)).get(name) if os.path.exists(ev_path) else None
    if ev:
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in sorted(ev["f1_by_kind"].items()))
        lines += [
            f"- Held-out chat eval (`recipes/eval_chat.py` on the {ev['n']} questions of `recipes/eval/chat-heldout.jsonl`, greedy, "
            f"max 48 new tokens): token F1 {ev['token_f1']:.3f} ({kinds}); exact match {ev['exact_match']:.3f}; "
            f"{100*ev['closed_with_im_end']:.0f}% of answers end with `<|im_end|>`",
        ]
    if reduced:
        lines += [f"- Note: {reduced}"]
    lines += [
        "",
        "## Held-out rule",
        "`sha1(key) % 10 == 0` -> held out, with key `word:<lowercased headword>` (GCIDE entries and WordNet synsets by first lemma),",
        "`kjv:<Book> <chapter>:<verse>`, `element:<name>`, `fortune:<sha1 of text>`. Held-out items never appear in any",
        "training text (pre-training or SFT). See `recipes/SPLITS.md`; `recipes/eval/chat-heldout.jsonl` holds held-out",
        "questions with references.",
        "",
        "## Usage",
        "- Prompt format (chat models): ChatML `<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n`; stop at `<|im_end|>` (id 2) or `<|endoftext|>` (id 0).",
        "- Special tokens: `<|endoftext|>`=0, `<|im_start|>`=1, `<|im_end|>`=2, `<pad>`=3; pad on the left (`padding_side: left`),",
        "  position_ids = cumsum(attention_mask) - 1.",
        "- ONNX inputs: `input_ids`, `attention_mask` [batch, past+seq], `position_ids`, `past_key_values.{i}.key|value`",
        f"  [batch, {cfg['num_key_value_heads']}, past, {cfg['head_dim']}] (past may be 0); outputs: `logits`, `present.{{i}}.key|value`.",
        f"- Greedy sample from the parity fixture prompt (\"What does the word apple mean?\"): `{greedy_sample!r}`",
        "- `parity.json`: PyTorch logits for fixed inputs (no cache, cached steps, left-padded batch); `node recipes/check_onnx.mjs` checks ORT against it.",
        "",
        "## Intended use",
        "Tests, benchmarks and the embedded default of the Tandem proxy; EFT / proxy-tuning experiments; calibration and",
        "hallucination-scoring experiments where a fully known training set matters. Not for factual use.",
        "",
        "## Licence of the data",
        "GCIDE (GPL), WordNet (WordNet licence), fortunes (various, as packaged by Debian), KJV (public domain),",
        "dict-elements (public domain). See each Debian package's copyright file.",
    ]
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", os.path.join(out, "README.md"))


if __name__ == "__main__":
    main(sys.argv[1])
