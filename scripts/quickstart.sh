#!/usr/bin/env bash
# Quick start: set up, then run base-to-novel train + test + summary for DiSa, CoOp and KgCoOp
# on an embedded default — a generated EuroSAT-layout dataset and a generated random "tiny"
# CLIP — in a few minutes on a laptop CPU. Random weights make the accuracies meaningless: this shows the pipeline works.
# Real runs: put the CLIP weights in ~/.cache/clip and the data under $DATA (see DATASETS.md),
# then e.g. `bash scripts/coop/base2new_train.sh imagenet 1`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh || { echo "quickstart: step 'set up the environment' failed (see above)" >&2; exit 1; }
PY="$(cd "${VENV:-.venv}/bin" && pwd)/python"
export PYTHON="$PY"  # the interpreter scripts/py and the protocol driver use
DEMO=${DEMO_DIR:-output/quickstart}
SEEDS=${SEEDS:-"1 2"}
mkdir -p "$DEMO/logs"

# step NAME FILTER COMMAND...: run COMMAND with its whole output in $DEMO/logs/<NAME>.log and show
# the lines matching the regex FILTER ("" shows all). If it fails, say which step, show the
# command and the last lines of its output (the error), and stop with a non-zero status.
step() {
  local name=$1 filter=$2
  shift 2
  local log="$DEMO/logs/$(printf '%s' "$name" | tr -c 'A-Za-z0-9_.-' '_').log"
  if ! "$@" >"$log" 2>&1; then
    {
      echo "quickstart: step '$name' failed. Command:"
      echo "  $*"
      echo "Last lines of its output (all of it: $log):"
      tail -n 25 "$log" | sed 's/^/  | /'
    } >&2
    exit 1
  fi
  if [ -z "$filter" ]; then cat "$log"; else grep -E "$filter" "$log" || true; fi
}

[ -f "$DEMO/tiny-clip.pt" ] || step "make the tiny CLIP" "" \
  "$PY" scripts/make_random_clip.py --arch tiny --out "$DEMO/tiny-clip.pt"
[ -d "$DEMO/data/eurosat" ] || step "make the demo dataset" "" \
  "$PY" scripts/make_synthetic_dataset.py --dataset eurosat --root "$DEMO/data" --classes 10 \
  --per-class 16 4 10
export DATA="$DEMO/data" OUTPUT="$DEMO/output"
OPTS=(MODEL.BACKBONE.NAME "$DEMO/tiny-clip.pt" OPTIM.MAX_EPOCH 3 DATALOADER.NUM_WORKERS 0
      DATALOADER.TRAIN_X.BATCH_SIZE 8 TRAIN.PRINT_FREQ 20)
# DiSa on the 2-layer tiny CLIP: prompts in both of its layers, GPA centred on the last epochs.
DISA_OPTS=(TRAINER.DISA.PROMPT_DEPTH_TEXT 2 TRAINER.DISA.PROMPT_DEPTH_VISION 2
           TRAINER.DISA.GPA_MEAN 2.5 TRAINER.DISA.GPA_STD 1.0)
for trainer in disa coop kgcoop; do
  extra=()
  [ "$trainer" = disa ] && extra=("${DISA_OPTS[@]}")
  for seed in $SEEDS; do
    echo "== $trainer, seed $seed: train on base classes, then evaluate on new classes"
    step "$trainer seed $seed base2new_train" "^epoch .*batch \[([0-9]+)/\1\]|^\* accuracy|^Oops" \
      env SHOTS=8 bash scripts/$trainer/base2new_train.sh eurosat "$seed" "${OPTS[@]}" "${extra[@]}"
    step "$trainer seed $seed base2new_test" "^\* accuracy|^Oops" \
      env SHOTS=8 bash scripts/$trainer/base2new_test.sh eurosat "$seed" "${OPTS[@]}" "${extra[@]}"
  done
done
step "summary (parse_test_res.py)" "" "$PY" parse_test_res.py "$OUTPUT/base2new" --base2new --shots 8
echo
echo "These numbers come from RANDOM CLIP weights on SYNTHETIC images: they only show that"
echo "training, checkpointing, base-to-novel evaluation and parsing work end to end."
echo "Full logs and checkpoints: $OUTPUT/base2new"
