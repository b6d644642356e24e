#!/usr/bin/env bash
# usage: bash scripts/disa/xd_train.sh SEED [KEY VALUE ...]   (env: DATA, OUTPUT, SHOTS, CFG)
# Generated wrapper: the protocol logic lives once in scripts/protocol.py.
exec "$(dirname "$0")/../py" "$(dirname "$0")/../protocol.py" --trainer DiSa xd_train "$@"
