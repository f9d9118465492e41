#!/usr/bin/env bash
# Trains issue 22's long-schedule Fashion-MNIST models one after another
# (configs/fmnist_<name>.flags; about 30 epochs x 1.5-2.5 min each on 2 CPU
# cores). Resumable: run it again and every finished model is skipped, a
# killed one continues from its last finished epoch (train.py's backup).
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
