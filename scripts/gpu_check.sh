#!/usr/bin/env bash
# The GPU check: one script, a few minutes on one H100 (budget: 8 minutes).
#
#   here, with .venv and the data:   scripts/gpu_check.sh prepare
#       -> .gpu-check/ (the data files and MiniLM's tokenizer, about 12 MB; git-excluded)
#   on the GPU machine, repo root:   scripts/gpu_check.sh run OUTDIR
#       (with the project's device tool: command "scripts/gpu_check.sh run $OUT", carry [".gpu-check"])
#   a rehearsal on this CPU:         GPU_CHECK_CPU=1 PYTHON=.venv/bin/python scripts/gpu_check.sh run /tmp/gc
#
# It runs the tests marked `gpu`, the bf16 bert-base training-step benchmark against the card's
# measured bf16 matmul peak, every gradient strategy's step cost against the summed loss (bert-base's
# shape, 3 tasks x 16x128, fp32), and one multi-task PCGrad run with the `paper` profile's settings
# (cls pooling, sentences encoded apart, plain loss sum, batch 8, max length 512, bf16) on a slice:
# 4,000 training rows per task, 1,000 dev rows. The hub is out of reach there, so the run uses
# bert-base's shape with random weights (`random:base`): it checks the GPU path and measures its
# speed; its scores mean nothing. It writes OUTDIR/GPU_CHECK.md and OUTDIR/gpu_check.json; copy
# them to the repo root and commit them beside BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:?usage: scripts/gpu_check.sh prepare | run OUTDIR}

case $cmd in
prepare)
  data=${MINBERT_DATA:-data}
  [ -f "$data/ids-sst-train.csv" ] || { echo "no data in $data: set MINBERT_DATA" >&2; exit 2; }
  rm -rf .gpu-check && mkdir -p .gpu-check/data .gpu-check/minilm
  cp "$data"/*.csv .gpu-check/data/
  src=$(.venv/bin/python -c "from minbert_core.checkpoints import resolve_checkpoint as r; print(r('minilm-l6'))")
  for f in config.json vocab.txt tokenizer.json tokenizer_config.json special_tokens_map.json; do
    cp "$src/$f" .gpu-check/minilm/
  done
  grep -qx '/.gpu-check/' .git/info/exclude 2>/dev/null || echo '/.gpu-check/' >> .git/info/exclude
  du -sh .gpu-check
  ;;
run)
  out=$(mkdir -p "${2:?OUTDIR}" && cd "$2" && pwd)
  [ -d .gpu-check/data ] || { echo ".gpu-check/ is missing: run 'scripts/gpu_check.sh prepare' first (and carry it)" >&2; exit 2; }
  PY=${PYTHON:-python3}
  export PYTHONPATH=$PWD MINBERT_DATA=$PWD/.gpu-check/data MINBERT_MINILM_L6_DIR=$PWD/.gpu-check/minilm
  export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 MINBERT_PROGRESS_EVERY=15
  if [ -n "${GPU_CHECK_CPU:-}" ]; then device=cpu ckpt=random:tiny limit=64 maxlen=64 sbatch=4 slen=16
  else device=cuda ckpt=random:base limit=4000 maxlen=512 sbatch=16 slen=128; fi
  t0=$(date +%s)
  { nvidia-smi || true; $PY -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"; } > "$out/env.txt" 2>&1
  echo "1/4 tests marked gpu"
  set +e
  $PY -m pytest -q -p no:cacheprovider -o addopts="" -m gpu tests/test_gpu.py > "$out/pytest.txt" 2>&1
  echo "pytest exit $?" >> "$out/pytest.txt"
  echo "2/4 bf16 bert-base training step vs the bf16 matmul peak"
  $PY -c "import json; from minbert_core.bench import bench_gpu; print(json.dumps(bench_gpu(), default=str))" \
    > "$out/bench_gpu.json" 2> "$out/bench_gpu.err"
  echo "3/4 multi-task PCGrad run, paper settings, $ckpt on $device"
  $PY -m minbert_core.cli multitask --strategy pcgrad --checkpoint "$ckpt" --device "$device" --bf16 true \
    --pooling cls --pair-encoding bi --loss-weights "" --batch-size 8 --max-length "$maxlen" \
    --train-limit "$limit" --eval-limit 1000 --epochs 1 --telemetry-every 50 \
    --runs-dir "$out/runs" --run-id paper-slice > "$out/run.log" 2>&1
  echo "run exit $?" >> "$out/run.log"
  echo "4/4 every gradient strategy's step time and peak memory against the summed loss, $ckpt on $device"
  $PY -c "import json, sys; from minbert_core.bench import bench_strategies as b; \
print(json.dumps(b(checkpoint=sys.argv[1], B=int(sys.argv[2]), T=int(sys.argv[3]), steps=10, warmup=3, device=sys.argv[4])))" \
    "$ckpt" "$sbatch" "$slen" "$device" > "$out/bench_strategies.json" 2> "$out/bench_strategies.err"
  set -e
  GPU_CHECK_STRATEGY_MODEL="$ckpt, random weights" GPU_CHECK_SECONDS=$(( $(date +%s) - t0 )) \
    $PY scripts/gpu_check_report.py "$out"
  rm -rf "$out/runs/paper-slice/checkpoints"
  # the device tool returns at most 8 files: the run's records travel as one archive, the raw
  # outputs as another
  tar -czf "$out/paper-slice-records.tgz" -C "$out/runs" paper-slice && rm -rf "$out/runs"
  raw=(env.txt pytest.txt bench_gpu.json bench_gpu.err run.log bench_strategies.json bench_strategies.err)
  (cd "$out" && tar -czf raw.tgz "${raw[@]}" && rm -f "${raw[@]}")
  cat "$out/GPU_CHECK.md"
  ;;
*)
  echo "usage: scripts/gpu_check.sh prepare | run OUTDIR" >&2; exit 2
  ;;
esac
