#!/usr/bin/env bash
# Debian packages the recipes need (torch/onnx for Python, OpenBLAS, and the text corpora).
# Node side (onnxruntime-node, @huggingface/tokenizers, @huggingface/jinja) comes from the project's package.json.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
$SUDO apt-get update
$SUDO apt-get install -y \
  python3-torch python3-onnx python3-numpy python3-regex libopenblas0-openmp \
  wordnet dict-gcide dict-elements bible-kjv bible-kjv-text \
  fortunes fortunes-min dict-foldoc dict-jargon
# Debian's torch lives under /usr/bin/python3 (another python3 may come first on PATH)
/usr/bin/python3 -c "import torch, onnx, regex, numpy; print('torch', torch.__version__, 'onnx', onnx.__version__)"
