#!/usr/bin/env bash
# EFT's knowledge probe: does EFT lift the small chat model when the large base knows answers the small models lack?
#   committed tandem-large-base -> a second pre-training stage on knowledge.py's mix (known glosses in five surface
#   forms + ordinary documents) -> chat SFT of it (the probe's oracle) -> ONNX -> memorisation of the known documents
#   -> `npm run eval -- eft` on the known questions, with the committed family and with the probe's large pair.
# Nothing here touches models/: the probe's models go to build/knowledge/models (about 20 minutes on 2 cores).
# Needs the build of `npm run recipes` (corpus, tokenizer, chat data); build/ckpt/tandem-large-base is rebuilt from
# the committed model.onnx first. Knobs: PY, TANDEM_BUILD, KNOWN_WORDS (400), KNOWN_REPEAT (10), KNOWN_STEPS (600),
# EFT_SFT_STEPS (300: the probe's oracle is fine-tuned as tandem-small-chat and tandem-large-oracle are).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PY:-/usr/bin/python3}
BUILD=${TANDEM_BUILD:-build}
OUT="$BUILD/knowledge"
mkdir -p "$OUT/models" "$BUILD/logs"
T0=$(date +%s)
stage() { echo "[$(( $(date +%s) - T0 ))s] $*"; }

stage "committed tandem-large-base -> build/ckpt"; $PY ckpt_from_onnx.py --name tandem-large-base > /dev/null
stage "knowledge mix and questions"; $PY knowledge.py --words "${KNOWN_WORDS:-400}" --repeat "${KNOWN_REPEAT:-10}"
stage "second pre-training stage: tandem-large-base-known"
$PY train.py --name tandem-large-base-known --init tandem-large-base --train-bin "$OUT/train.bin" \
  --steps "${KNOWN_STEPS:-600}" --lr 5e-4 --warmup 50 --seed 4 > "$BUILD/logs/knowledge-pretrain.log" 2>&1
grep -E "before continuing|^eval step" "$BUILD/logs/knowledge-pretrain.log" | sed -n '1p;$p'
stage "chat SFT: tandem-large-chat-known (the probe's oracle)"
$PY finetune.py --base tandem-large-base-known --name tandem-large-chat-known --steps "${EFT_SFT_STEPS:-300}" \
  > "$BUILD/logs/knowledge-sft.log" 2>&1
for m in tandem-large-base-known tandem-large-chat-known; do
  stage "export $m"; $PY export_onnx.py --ckpt "$m" --out "$OUT/models/$m" > "$BUILD/logs/knowledge-export-$m.log" 2>&1
done
stage "memorisation (nats per token)"
$PY memorization.py --n 300 --ckpt tandem-large-base-known --docs "$OUT/known_docs.jsonl"
cd ..
stage "eval eft on the known questions: committed family"
npm run --silent eval -- eft --questions "recipes/$OUT/known.jsonl" --large-base models/tandem-large-base
stage "eval eft on the known questions: tandem-large-base-known, oracle tandem-large-chat-known"
npm run --silent eval -- eft --questions "recipes/$OUT/known.jsonl" \
  --large-base "recipes/$OUT/models/tandem-large-base-known" --oracle "recipes/$OUT/models/tandem-large-chat-known"
stage "done"
