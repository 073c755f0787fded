#!/usr/bin/env bash
# The GPU check: one script, about 5-6 minutes on one H100/H200 (hard limit GPU_CHECK_HARD_S, default 540 s).
#
#   here, with the data and MiniLM:  PYTHON=.venv/bin/python scripts/gpu_check.sh prepare
#       -> .gpu-check/bundle.tar.xz: the slice's 6 data files and the test files the gpu tests read, MiniLM's
#          tokenizer, and its weights rounded to fp16 with only the word rows its data uses
#          (minbert_core/bench/carry.py): ~35 MiB, git-ignored;
#          prepare prints what the device tool would send in all (limit 64 MiB)
#   on the GPU machine, repo root:   scripts/gpu_check.sh run OUTDIR
#       (with the project's device tool: command "scripts/gpu_check.sh run $OUT", carry [".gpu-check"],
#        timeout_s 600)
#   a rehearsal on this CPU:         GPU_CHECK_CPU=1 PYTHON=.venv/bin/python scripts/gpu_check.sh run /tmp/gc
#
# Parts, in this order, each under a timeout that keeps the whole inside the hard limit:
#   1. the tests marked `gpu`;
#   2. the real-data slice, fp32: the cpu profile's Table 4 summed-loss runs (3 seeds, packaged MiniLM) again
#      on the GPU, from their committed config.json, scored against the committed CPU runs
#      (minbert_core/bench/gpu_slice.py);
#   3. the bf16 training step (bert-base's shape, random weights, 8x128 and 32x128): minBERT eager, under
#      torch.compile (default mode) and under torch.compile(mode="reduce-overhead") (CUDA graphs), and
#      transformers eager, alternating in one process (minbert_core/bench/compiled.py);
#   4. the real-data slice at bf16, each seed only while the budget GPU_CHECK_BUDGET_S (default 330 s) allows;
#   5. one multi-task PCGrad run with the `paper` profile's settings (cls pooling, sentences encoded apart, plain
#      loss sum, batch 8, max length 512, bf16) on 1,000 training rows per task, random:base (a check of the
#      path and its speed, as in the earlier checks; its scores mean nothing);
#   6. with GPU_CHECK_STRATEGIES=1 only (it adds ~2 minutes; measured in the check of 2026-11-27): every
#      gradient strategy's step time and peak memory against the summed loss.
# It writes OUTDIR/GPU_CHECK.md and OUTDIR/gpu_check.json (copy them to the repo root and commit them beside
# BENCHMARKS.md), and the raw outputs as three archives (the device tool returns at most 8 files).
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:?usage: scripts/gpu_check.sh prepare | run OUTDIR}
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi

tree_mib() {  # what the device tool sends: tracked and untracked-not-ignored files, plus .gpu-check
  { git ls-files -z; git ls-files -z -o --exclude-standard; find .gpu-check -type f -print0; } |
    xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {printf "%.1f", s / 1048576}'
}

case $cmd in
prepare)
  data=${MINBERT_DATA:-data}
  [ -f "$data/ids-sst-train.csv" ] || { echo "no data in $data: set MINBERT_DATA" >&2; exit 2; }
  rm -rf .gpu-check && mkdir -p .gpu-check
  MINBERT_DATA=$data $PY -m minbert_core.bench.gpu_slice bundle .gpu-check/bundle.tar.xz
  du -sh .gpu-check
  total=$(tree_mib)
  echo "the device tool would send ${total} MiB (limit 64 MiB)"
  awk -v t="$total" 'BEGIN {exit !(t > 62)}' && { echo "over 62 MiB: too close to the limit" >&2; exit 3; }
  true
  ;;
run)
  out=$(mkdir -p "${2:?OUTDIR}" && cd "$2" && pwd)
  [ -f .gpu-check/bundle.tar.xz ] || { echo ".gpu-check/ is missing: run 'scripts/gpu_check.sh prepare' first (and carry it)" >&2; exit 2; }
  # the CPU rehearsal (a busy 2-core machine, inductor's C++ compiles) gets twice each time limit
  tscale=$([ -n "${GPU_CHECK_CPU:-}" ] && echo 2 || echo 1)
  t0=$(date +%s) hard=${GPU_CHECK_HARD_S:-$(( 540 * tscale ))} budget=${GPU_CHECK_BUDGET_S:-$(( 330 * tscale ))}
  work=$(mktemp -d)  # the unpacked bundle (91 MB of fp32 weights) stays out of .gpu-check, which travels
  trap 'rm -rf "$work"' EXIT
  $PY -m minbert_core.bench.gpu_slice unbundle .gpu-check/bundle.tar.xz "$work" > /dev/null
  export PYTHONPATH=$PWD MINBERT_DATA=$work/data MINBERT_MINILM_L6_DIR=$work/minilm
  export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 MINBERT_PROGRESS_EVERY=15
  if [ -n "${GPU_CHECK_CPU:-}" ]; then
    device=cpu ckpt=random:tiny limit=64 dev=64 maxlen=64 sbatch=4 slen=16 shapes=4x16 enc=tiny steps=3 warm=1 short=--short
  else
    device=cuda ckpt=random:base limit=1000 dev=1000 maxlen=512 sbatch=16 slen=128 shapes=8x128,32x128 enc=base steps=10 warm=3 short=
  fi
  : > "$out/parts.txt"
  part() {  # part NAME MAX_S CMD...: CMD under a timeout that leaves 30 s of the hard limit for the report
    local name=$1 max=$(( $2 * tscale )) left s rc
    shift 2
    left=$(( hard - ($(date +%s) - t0) - 30 ))
    (( left < max )) && max=$left
    if (( max < 20 )); then echo "$name skipped 0 0" >> "$out/parts.txt"; return 0; fi
    s=$(date +%s)
    timeout -k 10 "$max" "$@" && rc=0 || rc=$?
    echo "$name $rc $(( $(date +%s) - s )) $max" >> "$out/parts.txt"
  }
  { nvidia-smi || true; $PY -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"; } > "$out/env.txt" 2>&1
  echo "1/5 tests marked gpu"
  part tests 150 $PY -m pytest -q -p no:cacheprovider -o addopts="" -m gpu tests/test_gpu.py > "$out/pytest.txt" 2>&1
  echo "2/5 real-data slice, fp32, on $device"
  part slice-fp32 200 $PY -m minbert_core.bench.gpu_slice run "$out/slice" --precision fp32 --device "$device" $short \
    > "$out/slice-fp32.log" 2>&1
  echo "3/5 bf16 training step: eager, torch.compile, CUDA graphs, transformers ($shapes, random:$enc on $device)"
  part compiled 270 $PY -m minbert_core.bench.compiled "$out/compiled_step.json" --shapes "$shapes" --encoder "$enc" \
    --steps "$steps" --warmup "$warm" --device "$device" > "$out/compiled_step.log" 2>&1
  echo "4/5 real-data slice, bf16, while the budget of ${budget} s allows"
  part slice-bf16 200 $PY -m minbert_core.bench.gpu_slice run "$out/slice" --precision bf16 --device "$device" $short \
    --until $(( t0 + budget )) > "$out/slice-bf16.log" 2>&1
  echo "5/5 multi-task PCGrad run, paper settings, $ckpt on $device"
  part paper-slice 150 $PY -m minbert_core.cli multitask --strategy pcgrad --checkpoint "$ckpt" --device "$device" \
    --precision bf16 --pooling cls --pair-encoding bi --loss-weights "" --batch-size 8 --max-length "$maxlen" \
    --train-limit "$limit" --eval-limit "$dev" --epochs 1 --telemetry-every 50 --predict-test false \
    --runs-dir "$out/runs" --run-id paper-slice > "$out/run.log" 2>&1
  if [ -n "${GPU_CHECK_STRATEGIES:-}" ]; then
    echo "+ every gradient strategy against the summed loss, $ckpt on $device"
    part strategies 150 $PY -c "import json, sys; from minbert_core.bench import bench_strategies as b; \
print(json.dumps(b(checkpoint=sys.argv[1], B=int(sys.argv[2]), T=int(sys.argv[3]), steps=10, warmup=3, device=sys.argv[4])))" \
      "$ckpt" "$sbatch" "$slen" "$device" > "$out/bench_strategies.json" 2> "$out/bench_strategies.err"
  fi
  GPU_CHECK_STRATEGY_MODEL="$ckpt, random weights" GPU_CHECK_SECONDS=$(( $(date +%s) - t0 )) \
    $PY scripts/gpu_check_report.py "$out"
  # the device tool returns at most 8 files: run records and raw outputs travel as archives
  find "$out/runs" "$out/slice" -type d -name checkpoints -prune -exec rm -rf {} + 2>/dev/null || true
  [ -d "$out/runs" ] && tar -czf "$out/paper-slice-records.tgz" -C "$out/runs" . && rm -rf "$out/runs"
  [ -d "$out/slice" ] && tar -czf "$out/slice-records.tgz" -C "$out/slice" . && rm -rf "$out/slice"
  raw=(env.txt parts.txt pytest.txt slice-fp32.log slice-bf16.log compiled_step.json compiled_step.log run.log
       bench_strategies.json bench_strategies.err)
  (cd "$out" && present=() && for f in "${raw[@]}"; do [ -f "$f" ] && present+=("$f"); done
   tar -czf raw.tgz "${present[@]}" && rm -f "${present[@]}")
  cat "$out/GPU_CHECK.md"
  ;;
*)
  echo "usage: scripts/gpu_check.sh prepare | run OUTDIR" >&2; exit 2
  ;;
esac
