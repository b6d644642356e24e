#!/usr/bin/env bash
# usage: bash scripts/zsclip/zeroshot.sh DATASET [all|base|new] [KEY VALUE ...]
# Zero-shot CLIP with the dataset's hand-crafted template (TRAINER=ZeroshotCLIP2 for the ensemble).
exec "$(dirname "$0")/../py" "$(dirname "$0")/../protocol.py" --trainer "${TRAINER:-ZeroshotCLIP}" zeroshot "$@"
