#!/usr/bin/env bash
# Copy a study's finished run records (no checkpoints, TensorBoard files or executed notebooks) into a folder to commit,
# e.g. scripts/sync_results.sh runs/study-cpu results/study-cpu. `minbert report DEST` rebuilds the
# tables from them, and `minbert study --out DEST` continues the study, skipping the runs copied here.
set -euo pipefail
src=${1:?study folder}; dest=${2:?destination}
mkdir -p "$dest"
cp "$src/study.json" "$dest/"
for run in "$src"/*/; do
  name=$(basename "$run")
  [ -f "$run/.complete" ] || continue  # only finished runs; unfinished ones rerun from scratch elsewhere
  [ "$name" = report ] && continue
  tar -C "$src" -cf - --exclude=checkpoints --exclude=tensorboard --exclude=notebook.ipynb --exclude=.lock --exclude='*.pdf' "$name" \
    | tar -C "$dest" -xf -
done
du -sh "$dest"
