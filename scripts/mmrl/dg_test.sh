#!/usr/bin/env bash
# usage: bash scripts/mmrl/dg_test.sh DATASET SEED [KEY VALUE ...]   (env: DATA, OUTPUT, SHOTS, CFG)
# Thin wrapper: the protocol logic lives once in disakit/runkit/protocol.py (via the scripts/protocol.py shim).
exec "$(dirname "$0")/../py" "$(dirname "$0")/../protocol.py" --trainer MMRL dg_test "$@"
