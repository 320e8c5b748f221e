#!/usr/bin/env bash
# The checks a GPU run of hax makes, in one call, with every log under one folder: the CUDA test
# suite, compute-sanitizer on chosen tags, the training-step and plan benchmarks of a baseline
# build and of this one (one after the other, so their times compare), and an Nsight Compute
# timeline of a few joint-recall training steps (docs/perf_training_step.md reads it).
#
#   bench/gpu_checks.sh OUT_DIR
#
# Environment:
#   HAX_GPU_BIN   folder with hax_tests_cuda, joint_recall, hax_bench_train_step and
#                 hax_bench_attention_plans built with the `cuda` preset (default build/cuda)
#   HAX_GPU_BASE  folder with a baseline build's hax_bench_train_step and hax_bench_attention_plans
#                 (optional: without it only this build is benchmarked)
#   HAX_SAN_TAGS  Catch2 tags for memcheck, racecheck and initcheck (default: none, no sanitizer)
#   HAX_SAN_LIMIT seconds each sanitizer may run before it is stopped (default 150; racecheck
#                 runs finite-difference checks very slowly)
#   HAX_BENCH     hax_bench_train_step filter (default: the mamba2 and mamba HAX and key-selection
#                 cells and mamba2 + sign_bin_lsh)
#   HAX_NCU_STEPS training steps in the ncu timeline (default 4; 0 skips it)
# Binaries that are gzipped (NAME.gz, as carried to a GPU host) are unpacked first.
set -uo pipefail
out=${1:?usage: bench/gpu_checks.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
bin=$(cd "${HAX_GPU_BIN:-build/cuda}" && pwd)
base=${HAX_GPU_BASE:+$(cd "$HAX_GPU_BASE" && pwd)}
export PATH=/usr/local/cuda/bin:$PATH
for gz in "$bin"/*.gz ${base:+"$base"/*.gz}; do
  [ -f "$gz" ] || continue
  gunzip -kf "$gz" && chmod +x "${gz%.gz}"
done
t0=$SECONDS
stamp() { echo "== $1 ($((SECONDS - t0)) s)"; }

nvidia-smi > "$out/nvidia-smi.txt" 2>&1
stamp "test suite"
(time "$bin/hax_tests_cuda") > "$out/suite.log" 2>&1
echo "rc=$?" >> "$out/suite.log"
tail -3 "$out/suite.log"

if [ -n "${HAX_SAN_TAGS:-}" ]; then
  for tool in memcheck racecheck initcheck; do
    stamp "compute-sanitizer $tool $HAX_SAN_TAGS"
    (time timeout "${HAX_SAN_LIMIT:-150}" compute-sanitizer --tool "$tool" "$bin/hax_tests_cuda" \
        "$HAX_SAN_TAGS") > "$out/$tool.log" 2>&1
    echo "rc=$?" >> "$out/$tool.log"
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test cases" "$out/$tool.log" | tail -2
  done
fi

filter=${HAX_BENCH:-'^(mamba2|mamba)_step/(sign_bin_lsh_key_selection|key_selection)/|^mamba2_step/sign_bin_lsh/'}
for who in ${base:+base} new; do
  dir=$bin
  [ "$who" = base ] && dir=$base
  stamp "benchmarks ($who)"
  "$dir/hax_bench_train_step" --benchmark_filter="$filter" --benchmark_repetitions=3 \
      --benchmark_report_aggregates_only=true --benchmark_out="$out/train_step_$who.json" \
      --benchmark_out_format=json > "$out/train_step_$who.txt" 2>&1
  "$dir/hax_bench_attention_plans" --benchmark_filter='(score_mlp_forward|ranking_step).*/1057/' \
      --benchmark_repetitions=3 --benchmark_report_aggregates_only=true > "$out/plans_$who.txt" 2>&1
  grep median "$out/train_step_$who.txt" "$out/plans_$who.txt" | cut -c1-140
done

steps=${HAX_NCU_STEPS:-4}
if [ "$steps" -gt 0 ]; then
  stamp "ncu timeline of $steps training steps"
  run_dir=$(mktemp -d)
  (cd "$run_dir" && timeout 300 ncu --clock-control none --kernel-name-base demangled \
      --metrics gpu__time_duration.sum --csv \
      "$bin/joint_recall" train --base mamba2 --sparse sign_bin_lsh+key_selection --size base \
      --protocol reference --steps "$steps" --eval-every 100000 --eval-items 64 --test-items 64 \
      --out run > "$out/ncu.csv" 2> "$out/ncu.err")
  echo "rc=$?" >> "$out/ncu.err"
  rm -rf "$run_dir"
  gzip -f "$out/ncu.csv"
fi
stamp "done"
