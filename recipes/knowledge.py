"""Knowledge the large base has and the small models lack: the data of EFT's knowledge probe (knowledge_probe.sh).

python3 knowledge.py [--words 400] [--repeat 10]   (after corpus.py, tokenizer.py and chat_data.py)

EFT and proxy-tuning up-scale a small tuned model with a large base that knows facts the small model does not. The
family's held-out questions ask for facts no model saw (recipes/SPLITS.md), so there the large base has nothing to
give. This builds the other setting:
  * "known" words: training-split WordNet words with no chat SFT row at all (chat_data.py's caps leave most words
    out of SFT), one or two glosses of 3-14 words, single-word headwords; the first N in sha1("known:" + key) order;
  * a second pre-training mix for the large base only: each known gloss in five surface forms ("w (pos): gloss.",
    "w means gloss.", ...; none is a question, so the eval's question templates are never trained on), repeated R
    times, shuffled with twice as many tokens of ordinary training documents (other keys);
  * build/knowledge/known.jsonl: one definition question per known word (chat_data.py's templates), every gloss a
    reference. The questions are held out of chat SFT; their answers were pre-trained on, by the large base only
    as often as the mix repeats them.
Why several surface forms: a base that saw each gloss many times in only its dictionary form memorised those documents
(a throw-away run: their loss fell far below that of any other training text) and still did not produce the gloss
after a question, so EFT had nothing to draw on.
Writes build/knowledge/{train.bin, known.jsonl, known_docs.jsonl, stats.json}.
"""
import argparse
import collections
import hashlib
import json
import os
import random
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chat_data import DEF_Q, cap  # noqa: E402
from common import BUILD, CHAT_DIR, CORPUS_DIR, EOT, ensure  # noqa: E402
from tokenizer import load as load_tok  # noqa: E402

OUT = os.path.join(BUILD, "knowledge")
FORMS = ["{w} ({p}): {d}.", "{w} means {d}.", "The word \"{w}\": {d}.", "Definition of {w}: {d}.",
         "{W} is defined as {d}."]


def known_words(recs, sft_keys, n):
    glosses = collections.defaultdict(list)
    for r in recs:
        if r["kind"] == "definition" and r["split"] == "train" and r.get("src") == "wordnet":
            glosses[r["key"]].append(r)
    cands = [k for k, rs in glosses.items()
             if k not in sft_keys and 1 <= len(rs) <= 2 and all(" " not in r["word"] for r in rs)
             and 3 <= len(rs[0]["definition"].split()) <= 14]
    cands.sort(key=lambda k: hashlib.sha1(("known:" + k).encode()).hexdigest())
    return {k: glosses[k] for k in cands[:n]}, len(cands)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--words", type=int, default=400)
    p.add_argument("--repeat", type=int, default=10, help="times each surface form of each gloss is in the mix")
    a = p.parse_args()
    ensure(OUT)
    recs = [json.loads(line) for line in open(os.path.join(CORPUS_DIR, "records.jsonl"), encoding="utf-8")]
    sft_keys = {json.loads(line)["key"] for line in open(os.path.join(CHAT_DIR, "train.jsonl"), encoding="utf-8")}
    known, candidates = known_words(recs, sft_keys, a.words)
    assert not set(known) & sft_keys
    tok = load_tok()

    forms = []
    for rs in known.values():
        for r in rs:
            w, d = r["word"], r["definition"]
            forms += [tok.encode(f.format(w=w, W=w[:1].upper() + w[1:], p=r["pos"], d=d)) + [EOT] for f in FORMS]
    form_tokens = sum(map(len, forms))
    docs = [json.loads(line) for line in open(os.path.join(CORPUS_DIR, "train.jsonl"), encoding="utf-8")]
    rnd = random.Random(9)
    others = [d for d in docs if d["key"] not in known]
    rnd.shuffle(others)
    filler, filler_tokens = [], 0
    for d in others:
        if filler_tokens >= 2 * form_tokens * a.repeat:
            break
        ids = tok.encode(d["text"]) + [EOT]
        filler.append(ids)
        filler_tokens += len(ids)
    mix = forms * a.repeat + filler
    rnd.shuffle(mix)
    ids = np.array([t for doc in mix for t in doc], dtype=np.uint16)
    ids.tofile(os.path.join(OUT, "train.bin"))

    qrnd = random.Random(11)
    with open(os.path.join(OUT, "known.jsonl"), "w", encoding="utf-8") as f:
        for i, (key, rs) in enumerate(known.items()):
            q = qrnd.choice(DEF_Q).format(w=rs[0]["word"])
            refs = [cap(r["definition"]) + "." for r in rs]
            f.write(json.dumps({"id": f"known-{i:04d}", "kind": "definition", "key": key,
                                "messages": [{"role": "user", "content": q}], "question": q,
                                "reference": refs[0], "references": refs}, ensure_ascii=False) + "\n")
    with open(os.path.join(OUT, "known_docs.jsonl"), "w", encoding="utf-8") as f:
        for d in docs:
            if d["key"] in known:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
    stats = {"candidates": candidates, "known_words": len(known), "surface_forms": len(FORMS),
             "form_tokens": form_tokens, "repeat": a.repeat, "filler_tokens": filler_tokens,
             "mix_tokens": int(len(ids))}
    with open(os.path.join(OUT, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
