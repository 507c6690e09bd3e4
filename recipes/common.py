"""Shared helpers for the Tandem recipes (paths, split rule, text cleaning)."""
import hashlib
import json
import os
import re
import shutil
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.environ.get("TANDEM_BUILD", os.path.join(HERE, "build"))
MODELS = os.environ.get("TANDEM_MODELS", os.path.join(ROOT, "models"))
CORPUS_DIR = os.path.join(BUILD, "corpus")
TOK_DIR = os.path.join(BUILD, "tokenizer")
CKPT_DIR = os.path.join(BUILD, "ckpt")
CHAT_DIR = os.path.join(BUILD, "chat")

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
EOT, IM_START, IM_END, PAD = 0, 1, 2, 3


def is_heldout(key: str) -> bool:
    """The one split rule used everywhere (documented in SPLITS.md):
    int(sha1(key.encode('utf-8')).hexdigest(), 16) % 10 == 0  -> held out."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest(), 16) % 10 == 0


_ctrl = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x85\ufeff\u200b]")


def clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r".\x08", "", text)  # overstrike (fortunes)
    text = _ctrl.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    return text


def ensure(*dirs):
    for d in dirs:
        os.makedirs(d, exist_ok=True)


def set_threads():
    import torch
    torch.set_num_threads(int(os.environ.get("TANDEM_THREADS", "2")))


def run_log(work: str, threads: int):
    """Sets torch's thread count and opens <work>/train.log; returns log(msg), which prints and appends to it."""
    import torch  # here, not at the top: the corpus and tokenizer steps run without torch

    torch.set_num_threads(threads)
    os.makedirs(work, exist_ok=True)
    logf = open(os.path.join(work, "train.log"), "a", encoding="utf-8")

    def log(msg):
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    return log


def write_classifier_tokenizer(tok_dir: str, out: str, max_length: int) -> None:
    """The family's tokenizer files for a sequence classifier: padding and truncation on the right, `max_length`
    positions, no chat template."""
    for f in ("tokenizer.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(tok_dir, f), os.path.join(out, f))
    tc = json.load(open(os.path.join(tok_dir, "tokenizer_config.json"), encoding="utf-8"))
    tc["padding_side"] = "right"
    tc["truncation_side"] = "right"
    tc["model_max_length"] = max_length
    tc.pop("chat_template", None)
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tc, f, ensure_ascii=False, indent=1)
