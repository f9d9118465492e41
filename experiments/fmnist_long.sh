#!/usr/bin/env bash
# Trains issue 22's long-schedule Fashion-MNIST models one after another
# (configs/fmnist_<name>.flags; 30 epochs, 3-27 min each on 2 CPU cores so
# far, depending on the load) and evaluates each, once trained, under
# AutoAttack (standard, with Square) on all 10,000 test images at the eps it
# was trained at (0.1; a name ending in _eps<r> at r; 4.4 h for pat_awp on the
# shared machine; the report gives the times measured so far), rechecks the
# images Square broke with stronger gradient attacks (experiments/
# square_recheck.py), then rewrites the report docs/results_fmnist_long.md
# from what the runs wrote.
# Resumable: run it again and every finished model and evaluation is
# skipped, a killed training continues from its last finished epoch
# (train.py's backup), a killed AutoAttack at its last saved piece of 1,000
# points (its resume_file).
#   bash experiments/fmnist_long.sh [name ...]     # default: all, in this order
# bash reads a script as it runs it, so editing this file under a running
# queue breaks that queue; started this way, it runs from a copy in memory:
#   nohup nice -n 5 bash -c "$(cat experiments/fmnist_long.sh)" \
#     experiments/fmnist_long.sh >> runs/fmnist_long/driver.log 2>&1 &
# Logs: runs/fmnist_long/<name>.log. Needs: apt-get install -y dataset-fashion-mnist
# The test of this pipeline (tests/reproduction/test_fmnist_long_pipeline.py)
# runs it small through these variables; the real runs leave them unset:
#   FMNIST_LONG_ROOT (runs/fmnist_long), FMNIST_LONG_REPORT
#   (docs/results_fmnist_long.md), FMNIST_LONG_TRAIN_ARGS,
#   FMNIST_LONG_EVAL_ARGS and FMNIST_LONG_RECHECK_ARGS (flags appended to
#   train.py's, evaluate.py's and experiments/square_recheck.py's).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
ROOT="${FMNIST_LONG_ROOT:-runs/fmnist_long}"
REPORT="${FMNIST_LONG_REPORT:-docs/results_fmnist_long.md}"
read -r -a TRAIN_ARGS <<< "${FMNIST_LONG_TRAIN_ARGS:-}"
read -r -a EVAL_ARGS <<< "${FMNIST_LONG_EVAL_ARGS:-}"
read -r -a RECHECK_ARGS <<< "${FMNIST_LONG_RECHECK_ARGS:-}"
NAMES=("$@")
if [ ${#NAMES[@]} -eq 0 ]; then
  NAMES=(pat_awp pat_awp_wide trades_awp mart_awp at_alp_awp pat_long pat_awp_eps0.3
    at_alp_awp_eps0.3)
fi
mkdir -p "$ROOT"
for name in "${NAMES[@]}"; do
  if [ -f "$ROOT/$name/metrics.json" ]; then
    echo "$name: finished, skipped"
  else
    echo "$name: training ($(date -u +%H:%M) UTC), log $ROOT/$name.log"
    # The config names runs/fmnist_long/<name> as its folder; the same value
    # here unless FMNIST_LONG_ROOT moves it.
    "$PYTHON" train.py --flagfile="configs/fmnist_$name.flags" --model_dir="$ROOT/$name" \
      ${TRAIN_ARGS[@]+"${TRAIN_ARGS[@]}"} >> "$ROOT/$name.log" 2>&1
  fi
  # The eps of the name, by the rule of atalp_keras/reproduction/long_runs.py
  # (run_eps), and its folder named as Python's {eps:g} names it (0.30 -> 0.3).
  eps=0.1
  if [[ "$name" =~ _eps([0-9]*\.?[0-9]+)$ ]]; then eps="${BASH_REMATCH[1]}"; fi
  out="$ROOT/$name/eval_autoattack_eps$(LC_ALL=C printf '%g' "$eps")"
  if [ -f "$out/results.json" ]; then
    echo "$name: AutoAttack evaluated, skipped"
  else
    mkdir -p "$out"
    echo "$name: AutoAttack at eps $eps on all test images ($(date -u +%H:%M) UTC), log $out.log"
    "$PYTHON" evaluate.py --model="$ROOT/$name" --eps="$eps" --noaudit \
      --attacks="autoattack:resume_file=$out/autoattack.npz" --out_dir="$out" \
      ${EVAL_ARGS[@]+"${EVAL_ARGS[@]}"} >> "$out.log" 2>&1
  fi
  # The images Square broke, attacked again by far stronger gradient attacks
  # (experiments/square_recheck.py; about 10-20 min): budget or masking?
  # --keep_current keeps a square_recheck.json made from this evaluation's
  # Square images and redoes one made from other images (a recheck run while
  # Square was still going, or before a re-evaluation). A side analysis: its
  # failure is reported and the queue goes on.
  echo "$name: rechecking Square's images unless done ($(date -u +%H:%M) UTC), log $out.log"
  if ! "$PYTHON" experiments/square_recheck.py --model="$ROOT/$name" --eps="$eps" \
      --state="$out/autoattack.npz" --out="$out/square_recheck.json" --keep_current \
      ${RECHECK_ARGS[@]+"${RECHECK_ARGS[@]}"} >> "$out.log" 2>&1; then
    echo "$name: the recheck failed (see $out.log); going on"
  fi
done
"$PYTHON" experiments/fmnist_long_report.py --runs="$ROOT" --out="$REPORT"
