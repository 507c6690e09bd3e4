#!/usr/bin/env bash
# EFT's fine-tuned pair, from the committed base models: tandem-small-chat (EFT's expert) and tandem-large-oracle (the
# large base fine-tuned directly, `npm run eval -- eft`'s oracle), both with the same light chat SFT (EFT_SFT_STEPS,
# default 300, as in train_all.sh); then ONNX export, the held-out chat eval and the model cards (~5 min on 2 cores).
# train_all.sh does the same inside a whole retrain; this script redoes only that stage on models/'s bases. The bases'
# (and tandem-large-chat's) training metrics, for the cards, are in metrics/ as their model cards give them.
# Needs the build of `npm run recipes` (tokenizer, chat data, corpus stats).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PY:-/usr/bin/python3}
BUILD=${TANDEM_BUILD:-build}
STEPS=${EFT_SFT_STEPS:-300}
mkdir -p "$BUILD/logs"
T0=$(date +%s)
stage() { echo "[$(( $(date +%s) - T0 ))s] $*"; }

for m in tandem-small-base tandem-large-base tandem-large-chat; do
  stage "committed $m -> build/ckpt"; $PY ckpt_from_onnx.py --name "$m" --metrics "metrics/$m.json" > /dev/null
done
stage "SFT tandem-small-chat ($STEPS steps)"
$PY finetune.py --base tandem-small-base --name tandem-small-chat --steps "$STEPS" --lr 2e-3 > "$BUILD/logs/sft-small.log" 2>&1
stage "SFT tandem-large-oracle ($STEPS steps)"
$PY finetune.py --base tandem-large-base --name tandem-large-oracle --steps "$STEPS" > "$BUILD/logs/sft-oracle.log" 2>&1
for m in tandem-small-chat tandem-large-oracle; do
  stage "export $m"; $PY export_onnx.py --ckpt "$m" > "$BUILD/logs/export-$m.log" 2>&1
done
stage "held-out chat eval"; $PY eval_chat.py > "$BUILD/logs/eval_chat.log"
for m in tandem-large-base tandem-small-base tandem-small-chat tandem-large-chat tandem-large-oracle; do
  $PY model_card.py "$m" > /dev/null
done
stage "ORT parity"; node check_onnx.mjs
stage "done"
