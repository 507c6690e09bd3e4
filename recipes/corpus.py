"""Build text corpora from Debian packages.

Outputs (recipes/build/corpus/):
  train.jsonl     pre-training documents (gcide, wordnet, fortunes, kjv, elements)  {"src","key","text"}
  heldout.jsonl   held-out documents of the same sources (validation)
  domain.jsonl    BLADE domain corpus (dict-foldoc + dict-jargon), with a "split" field; NEVER used by
                  the general models
  records.jsonl   structured facts for chat SFT: definitions, element facts, verses  {"kind",...,"key","split"}
  stats.json      counts and sizes

Split rule (SPLITS.md): sha1(key) % 10 == 0 -> held out. Keys:
  word:<lowercased headword>  (gcide entry, wordnet synset by its first lemma: the same word is held out in both)
  kjv:<Book> <chapter>:<verse>  (verse level; a held-out verse is never in training text)
  element:<lowercased name>
  fortune:<sha1 of the fortune text>
  foldoc:/jargon:<lowercased headword>  (domain corpus only)
"""
import glob
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CORPUS_DIR, clean, ensure, is_heldout  # noqa: E402

DICTD = "/usr/share/dictd"
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
GCIDE_MAX_CHARS = int(os.environ.get("TANDEM_GCIDE_MAX_CHARS", 9_000_000))


def b64(s):
    v = 0
    for c in s:
        v = v * 64 + B64.index(c)
    return v


def read_dictd(name):
    """Yield (headword, text) per unique offset (several headwords share one entry)."""
    data = gzip.open(os.path.join(DICTD, name + ".dict.dz")).read()
    seen = set()
    with open(os.path.join(DICTD, name + ".index"), encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3:
                continue
            head, off, ln = parts[0], b64(parts[1]), b64(parts[2])
            if head.startswith("00database") or head.startswith("00-database"):
                continue
            if off in seen:
                continue
            seen.add(off)
            yield head, data[off:off + ln].decode("utf-8", errors="replace")


def para_join(text):
    """Collapse hard-wrapped lines inside paragraphs; keep blank lines between paragraphs."""
    paras = [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", text)]
    return "\n".join(p for p in paras if p)


SRC_TAG = re.compile(r"\[(1913 Webster|WordNet 1\.5|PJC|Century Dict\.|Webster 1913 Suppl\.|[A-Z][A-Za-z. 0-9]{0,30})\]")


def clean_gcide(head, text):
    text = clean(text)
    lines = text.split("\n")
    first = lines[0]
    first = re.sub(r"\\[^\\]*\\", "", first)          # pronunciation \Ap"ple\
    first = re.sub(r"\([^)]*\)", "", first)            # (pron)
    rest = "\n".join(lines[1:])
    body = first + "\n" + rest
    body = re.sub(r"\[[^\]]{0,400}\]", lambda m: "" if not SRC_TAG.fullmatch(m.group(0)) else "", body)
    body = re.sub(r"\{([^{}]*)\}", r"\1", body)
    body = re.sub(r"--[A-Z][\w. ]{0,25}\.", "", body)  # --Swift.
    body = body.replace("`", "").replace('"', "") if False else body
    body = para_join(body)
    body = re.sub(r" ,", ",", body)
    body = re.sub(r"\s+\.", ".", body)
    return body.strip()


def gcide_docs():
    out, total = [], 0
    for head, text in read_dictd("gcide"):
        body = clean_gcide(head, text)
        if len(body) < 20:
            continue
        key = "word:" + head.lower()
        out.append(("gcide", key, body))
    # deterministic cap: keep entries in sha1 order until the budget is used (keeps the corpus balanced)
    out.sort(key=lambda r: hashlib.sha1(r[2].encode()).hexdigest())
    kept = []
    for r in out:
        if total > GCIDE_MAX_CHARS:
            break
        kept.append(r)
        total += len(r[2])
    return kept


POS = {"noun": "n", "verb": "v", "adj": "adj", "adv": "adv"}


def wordnet():
    docs, recs = [], []
    for pos in ["noun", "verb", "adj", "adv"]:
        with open(f"/usr/share/wordnet/data.{pos}", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                head, _, gloss = line.partition("|")
                fields = head.split()
                n = int(fields[3], 16)
                words = [fields[4 + 2 * i] for i in range(n)]
                words = [re.sub(r"\(.*\)$", "", w).replace("_", " ") for w in words]
                gloss = clean(gloss).strip()
                defn, _, ex = gloss.partition("; \"")
                examples = re.findall(r'"([^"]+)"', gloss)
                defn = defn.strip().rstrip(";").strip()
                if not defn:
                    continue
                key = "word:" + words[0].lower()
                syn = ", ".join(words[1:4])
                text = f"{words[0]} ({POS[pos]}): {defn}."
                if syn:
                    text += f" Also: {syn}."
                if examples:
                    text += " Example: \"" + examples[0] + "\""
                docs.append(("wordnet", key, text))
                recs.append({"kind": "definition", "src": "wordnet", "word": words[0], "pos": POS[pos],
                             "definition": defn, "synonyms": words[1:4], "examples": examples[:2], "key": key})
    return docs, recs


def fortunes():
    docs = []
    for path in sorted(glob.glob("/usr/share/games/fortunes/*")):
        base = os.path.basename(path)
        if "." in base or os.path.isdir(path) or base in ("art", "ascii-art"):
            continue
        raw = open(path, "rb").read()
        try:
            txt = raw.decode("utf-8")
        except UnicodeDecodeError:
            txt = raw.decode("latin-1")
        for item in re.split(r"\n%\n", clean(txt)):
            item = item.strip("\n%").rstrip()
            if len(item.strip()) < 10:
                continue
            key = "fortune:" + hashlib.sha1(item.encode()).hexdigest()
            docs.append(("fortunes", key, item))
    return docs


def kjv():
    out = subprocess.run(["bible", "gen1:1-rev22:21"], capture_output=True, text=True).stdout
    verses = []  # (book, chapter, verse, text)
    book = chap = None
    cur = None
    for line in out.split("\n"):
        m = re.match(r"^(\S.*) (\d+)$", line)
        if m and not line.startswith(" "):
            book, chap = m.group(1), int(m.group(2))
            continue
        m = re.match(r"^\s+(\d+) (.*)$", line)
        if m:
            cur = [book, chap, int(m.group(1)), m.group(2).strip()]
            verses.append(cur)
        elif line.strip() and cur is not None:
            cur[3] += " " + line.strip()
    docs_train, docs_held, recs = [], [], []
    chapters = {}
    for b, c, v, t in verses:
        key = f"kjv:{b} {c}:{v}"
        t = clean(t)
        recs.append({"kind": "verse", "src": "kjv", "ref": f"{b} {c}:{v}", "text": t, "key": key})
        chapters.setdefault((b, c), []).append((v, t, is_heldout(key)))
    for (b, c), vs in chapters.items():
        tr = [f"{v} {t}" for v, t, h in vs if not h]
        he = [f"{v} {t}" for v, t, h in vs if h]
        if tr:
            docs_train.append(("kjv", f"kjv:{b} {c}", f"{b} {c}\n" + "\n".join(tr)))
        if he:
            docs_held.append(("kjv", f"kjv:{b} {c}", f"{b} {c}\n" + "\n".join(he)))
    return docs_train, docs_held, recs, len(verses)


def elements():
    docs, recs = [], []
    for head, text in read_dictd("elements"):
        text = clean(text).strip()
        lines = text.split("\n")
        name = lines[0].strip()
        facts = {}
        desc = []
        for l in lines[1:]:
            m = re.match(r"^(Symbol|Atomic number|Atomic weight): (.*)$", l.strip())
            if m:
                facts[m.group(1)] = m.group(2).strip()
            else:
                desc.append(l)
        desc = re.sub(r"\s+", " ", " ".join(desc)).strip()
        key = "element:" + name.lower()
        body = f"{name}\nSymbol: {facts.get('Symbol','')}\nAtomic number: {facts.get('Atomic number','')}\n" \
               f"Atomic weight: {facts.get('Atomic weight','')}\n{desc}"
        docs.append(("elements", key, body))
        recs.append({"kind": "element", "src": "elements", "name": name, "symbol": facts.get("Symbol"),
                     "number": facts.get("Atomic number"), "weight": facts.get("Atomic weight"),
                     "description": desc, "key": key})
    return docs, recs


def domain():
    docs = []
    for name in ["foldoc", "jargon"]:
        for head, text in read_dictd(name):
            body = para_join(re.sub(r"\{([^{}]*)\}", r"\1", clean(text))).strip()
            if len(body) < 20:
                continue
            key = f"{name}:{head.lower()}"
            docs.append({"src": name, "key": key, "head": head, "text": body,
                         "split": "heldout" if is_heldout(key) else "train"})
    return docs


def main():
    ensure(CORPUS_DIR)
    stats = {}
    train, held = [], []

    def add(docs):
        for src, key, text in docs:
            (held if is_heldout(key) else train).append({"src": src, "key": key, "text": text})

    g = gcide_docs(); add(g); stats["gcide_entries"] = len(g)
    wd, wrec = wordnet(); add(wd); stats["wordnet_synsets"] = len(wd)
    fo = fortunes(); add(fo); stats["fortunes"] = len(fo)
    kt, kh, krec, nverses = kjv()
    train += [{"src": s, "key": k, "text": t} for s, k, t in kt]
    held += [{"src": s, "key": k, "text": t} for s, k, t in kh]
    stats["kjv_verses"] = nverses
    ed, erec = elements(); add(ed); stats["elements"] = len(ed)
    dom = domain(); stats["domain_entries"] = len(dom)

    # guard: nothing from the BLADE domain may reach the general corpus
    assert not any(d["src"] in ("foldoc", "jargon") for d in train + held)

    import random
    rnd = random.Random(1234)
    rnd.shuffle(train)
    for name, rows in [("train", train), ("heldout", held)]:
        with open(os.path.join(CORPUS_DIR, name + ".jsonl"), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        stats[name + "_docs"] = len(rows)
        stats[name + "_chars"] = sum(len(r["text"]) for r in rows)
    with open(os.path.join(CORPUS_DIR, "domain.jsonl"), "w", encoding="utf-8") as f:
        for r in dom:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(os.path.join(CORPUS_DIR, "records.jsonl"), "w", encoding="utf-8") as f:
        for r in wrec + erec + krec:
            r["split"] = "heldout" if is_heldout(r["key"]) else "train"
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    stats["records"] = len(wrec) + len(erec) + len(krec)
    with open(os.path.join(CORPUS_DIR, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
