"""Build the ChatML SFT set from build/corpus/records.jsonl.

Kinds of pairs:
  definition  "What does X mean?" / "Define X." / ... -> the WordNet gloss ("references" = every gloss of X)
  synonym     "Give a synonym for X." -> another lemma of the synset
  example     "Use X in a sentence." -> the WordNet example
  element     symbol / atomic number / atomic weight / "Which element has the symbol S?" / "Tell me about E."
  verse       "Finish the verse: \"<first half>\"" -> second half; "Quote <ref>." -> verse text

Split: the record's key (word:<lemma>, element:<name>, kjv:<ref>) with the same rule as the corpus
(sha1(key) % 10 == 0 -> held out), so a held-out question's answer was never in any training text.

Outputs: build/chat/train.jsonl, build/chat/heldout.jsonl (all held-out pairs, >= 400),
         recipes/eval/chat-heldout.jsonl (committed copy, <= 1 MB, one question per key).
"""
import collections
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CHAT_DIR, CORPUS_DIR, HERE, ensure  # noqa: E402

SYSTEMS = ["You are Tandem, a helpful assistant.", "You are a concise assistant. Answer briefly.",
           "You are a helpful assistant."]
DEF_Q = ["What does {w} mean?", "Define {w}.", "What is the meaning of \"{w}\"?", "What is the definition of {w}?",
         "Explain the word \"{w}\".", "What does the word {w} mean?"]
POSN = {"n": "noun", "v": "verb", "adj": "adjective", "adv": "adverb"}


def cap(s):
    return s[:1].upper() + s[1:] if s else s


def definition_pairs(r, rnd):
    w, d = r["word"], r["definition"]
    out = [("definition", rnd.choice(DEF_Q).format(w=w), f"{cap(d)}.")]
    if rnd.random() < 0.3:
        out.append(("definition", f"What does the {POSN[r['pos']]} \"{w}\" mean?", f"As a {POSN[r['pos']]}, {w} means {d}."))
    if r["synonyms"]:
        out.append(("synonym", f"Give a synonym for {w}.", f"{cap(r['synonyms'][0])}."))
    if r["examples"]:
        out.append(("example", f"Use \"{w}\" in a sentence.", cap(r["examples"][0].strip()) + ("" if r["examples"][0].rstrip().endswith((".", "!", "?")) else ".")))
    return out


def element_pairs(r):
    n, s, z, wt, desc = r["name"], r["symbol"], r["number"], r["weight"], r["description"]
    N = cap(n)
    out = []
    if s:
        out.append(("element", f"What is the chemical symbol for {n}?", f"The chemical symbol for {n} is {s}."))
        out.append(("element", f"Which element has the symbol {s}?", f"{N} has the symbol {s}."))
    if z:
        out.append(("element", f"What is the atomic number of {n}?", f"The atomic number of {n} is {z}."))
        out.append(("element", f"Which element has atomic number {z}?", f"Element number {z} is {n}."))
    if wt:
        out.append(("element", f"What is the atomic weight of {n}?", f"The atomic weight of {n} is {wt}."))
    if desc:
        first = desc.split(". ")[0].rstrip(".") + "."
        out.append(("element", f"Tell me about {n}.", f"{N} ({s}, atomic number {z}): {first}"))
    return out


def verse_pairs(r):
    t = r["text"]
    words = t.split()
    out = [("verse", f"Quote {r['ref']} from the King James Bible.", t)]
    if len(words) >= 8:
        k = len(words) // 2
        out.append(("verse", f"Finish the verse: \"{' '.join(words[:k])} ...\"", " ".join(words[k:])))
    return out


def to_messages(q, a, rnd, system_p=0.25):
    msgs = []
    if rnd.random() < system_p:
        msgs.append({"role": "system", "content": rnd.choice(SYSTEMS)})
    msgs.append({"role": "user", "content": q})
    msgs.append({"role": "assistant", "content": a})
    return msgs


def main():
    ensure(CHAT_DIR, os.path.join(HERE, "eval"))
    rnd = random.Random(42)
    recs = [json.loads(l) for l in open(os.path.join(CORPUS_DIR, "records.jsonl"), encoding="utf-8")]
    # every gloss of a word (per split) becomes a reference for the held-out eval
    glosses = collections.defaultdict(list)
    for r in recs:
        if r["kind"] == "definition":
            glosses[r["word"].lower()].append(cap(r["definition"]) + ".")
    train, held = [], []
    for r in recs:
        if r["kind"] == "definition":
            pairs = definition_pairs(r, rnd)
        elif r["kind"] == "element":
            pairs = element_pairs(r) * (4 if r["split"] == "train" else 1)  # small set: upweight in training
        else:
            pairs = verse_pairs(r)
        for kind, q, a in pairs:
            row = {"kind": kind, "key": r["key"], "question": q, "reference": a}
            if r["kind"] == "definition" and kind == "definition":
                row["references"] = glosses[r["word"].lower()][:8]
            if r["split"] == "heldout":
                held.append(row)
            else:
                row["messages"] = to_messages(q, a, rnd)
                train.append(row)
    # cap the training set (definitions dominate) and shuffle
    rnd.shuffle(train)
    by_kind = collections.Counter()
    capped = []
    limits = {"definition": 45000, "synonym": 8000, "example": 8000, "verse": 14000, "element": 10**6}
    for row in train:
        if by_kind[row["kind"]] < limits[row["kind"]]:
            by_kind[row["kind"]] += 1
            capped.append(row)
    with open(os.path.join(CHAT_DIR, "train.jsonl"), "w", encoding="utf-8") as f:
        for row in capped:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(os.path.join(CHAT_DIR, "heldout.jsonl"), "w", encoding="utf-8") as f:
        for row in held:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    # committed eval copy: one question per (key, kind), a fixed sample, <= 1 MB
    seen, pool = set(), []
    for row in held:
        k = (row["key"], row["kind"], row["question"].split(" ")[0])
        if k in seen:
            continue
        seen.add(k)
        pool.append(row)
    erng = random.Random(2024)
    erng.shuffle(pool)
    want = {"definition": 700, "synonym": 100, "example": 100, "element": 60, "verse": 240}
    got = collections.Counter()
    evalset = []
    for row in pool:
        if got[row["kind"]] < want[row["kind"]]:
            got[row["kind"]] += 1
            evalset.append(row)
    evalset.sort(key=lambda r: (r["kind"], r["key"], r["question"]))
    path = os.path.join(HERE, "eval", "chat-heldout.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for i, row in enumerate(evalset):
            out = {"id": f"heldout-{i:04d}", "kind": row["kind"], "key": row["key"],
                   "messages": [{"role": "user", "content": row["question"]}],
                   "question": row["question"], "reference": row["reference"]}
            if "references" in row:
                out["references"] = row["references"]
            f.write(json.dumps(out, ensure_ascii=False) + "\n")
    size = os.path.getsize(path)
    assert size <= 1_000_000, size
    print(json.dumps({"train": len(capped), "train_by_kind": dict(by_kind), "heldout": len(held),
                      "eval_committed": len(evalset), "eval_by_kind": dict(got), "eval_bytes": size}, indent=1))


if __name__ == "__main__":
    main()
