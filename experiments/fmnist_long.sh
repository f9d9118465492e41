#!/usr/bin/env bash
# Trains issue 22's long-schedule Fashion-MNIST models one after another
# (configs/fmnist_<name>.flags; 30 epochs of 2-10 min each on 2 CPU cores,
# depending on the load), then evaluates each under AutoAttack (standard, with
# Square) at eps 0.1 on all 10,000 test images (about 2 h per model).
# Resumable: run it again and every finished model and evaluation is
# skipped, a killed training continues from its last finished epoch
# (train.py's backup), a killed AutoAttack after its last finished stage
# (its resume_file).
#   bash experiments/fmnist_long.sh [name ...]     # default: all, in this order
# Logs: runs/fmnist_long/<name>.log. Needs: apt-get install -y dataset-fashion-mnist
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
NAMES=("$@")
if [ ${#NAMES[@]} -eq 0 ]; then
  NAMES=(pat_awp pat_long at_alp_awp mart_awp trades_awp)
fi
mkdir -p runs/fmnist_long
for name in "${NAMES[@]}"; do
  if [ -f "runs/fmnist_long/$name/metrics.json" ]; then
    echo "$name: finished, skipped"
    continue
  fi
  echo "$name: training ($(date -u +%H:%M) UTC), log runs/fmnist_long/$name.log"
  "$PYTHON" train.py --flagfile="configs/fmnist_$name.flags" >> "runs/fmnist_long/$name.log" 2>&1
done
for name in "${NAMES[@]}"; do
  out="runs/fmnist_long/$name/eval_autoattack_eps0.1"
  if [ -f "$out/results.json" ]; then
    echo "$name: AutoAttack evaluated, skipped"
    continue
  fi
  mkdir -p "$out"
  echo "$name: AutoAttack on all test images ($(date -u +%H:%M) UTC), log $out.log"
  "$PYTHON" evaluate.py --model="runs/fmnist_long/$name" --eps=0.1 --noaudit \
    --attacks="autoattack:resume_file=$out/autoattack.npz" --out_dir="$out" >> "$out.log" 2>&1
done
