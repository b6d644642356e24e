#!/usr/bin/env bash
# Static checks: ruff (lint rules in ruff.toml) on the whole checkout, mypy (mypy.ini) on the
# library package `disakit`. Installs the checkers into .venv once (requirements-dev.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
VENV=${VENV:-.venv}
stamp="$VENV/.dev-installed-$(sha1sum requirements-dev.txt | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "[lint] installing the checkers (requirements-dev.txt)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
  rm -f "$VENV"/.dev-installed-*
  touch "$stamp"
fi
status=0
echo "[lint] ruff check ."
"$VENV/bin/ruff" check . || status=1
echo "[lint] mypy (files and options in mypy.ini)"
"$VENV/bin/mypy" || status=1
exit $status
