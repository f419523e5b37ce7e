#!/usr/bin/env bash
# Every Whisper candidate of the LOCO table in bench/ACCURACY.md, from scratch (hours on 2 cores;
# each step resumes: the cache is chunked, the records are keyed by model and held-out corpus).
# 1. the encoder graph with every hidden state (FP32), 2. the hidden-state cache of All+,
# 3. leave-one-corpus-out for each state choice x head, 4. the report tables.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ENC=cache/whisper-enc/whisper-tiny.en-all-fp32.onnx
CACHE=cache/whisper

[ -f "$ENC" ] || $PY -m convert whisper-encoder --checkpoint ../shared/weights/whisper-tiny.en --layers all --out "$ENC"
$PY -m training extract --corpora all+ --encoder "$ENC" --cache "$CACHE"

# state choice, linear head (a standardised logistic regression on the pooled states)
for pooling in mean_std@0 mean_std@1 mean_std@2 mean_std@3 mean_std@4 mean@2 mean_std@1+2; do
    $PY -m training loco --cache "$CACHE" --arch linear --grid one --pooling "$pooling" \
        --name "whisper-${pooling/@/-L}+linear"
done
# heads on the best states, and the learned weighted sum of every state (SUPERB)
for pooling in mean_std@2 mean_std@1+2; do
    $PY -m training loco --cache "$CACHE" --arch mlp --grid one --pooling "$pooling" \
        --name "whisper-${pooling/@/-L}+mlp"
done
$PY -m training loco --cache "$CACHE" --arch wsum --grid one --pooling mean_std@0+1+2+3+4 \
    --name "whisper-wsum+mlp"
$PY -m training report
