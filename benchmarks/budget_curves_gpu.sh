#!/usr/bin/env bash
# The Dice-by-iteration sweep of docs/planning.md ("What a budget buys") on one CUDA machine: one
# budget_curves.py process per (dataset, plan), all at once, each to the iterations a 15-minute CPU
# budget buys that plan (N = 0.85 x 900 s x its quiet CPU it/s, docs/budget_speed_cpu.json).
# budget_curves.py --device cuda keeps the CPU's arithmetic (fp32, no TF32, the loader's CPU
# augmentation, eager): the GPU only makes the sweep fast. Then the planner's no-flag plan on the GPU.
#
#   bash benchmarks/budget_curves_gpu.sh OUT_DIR [SECONDS_PER_RUN]
set -u
out=${1:?usage: budget_curves_gpu.sh OUT_DIR [SECONDS]}
limit=${2:-330}
work=${CURVES_WORK:-/tmp/curves}
mkdir -p "$out" "$work"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
start=$(date +%s)

for ds in organs organs_mr_aniso; do
  python3 benchmarks/budget_curves.py --dataset "$ds" --prepare-only --workdir "$work/$ds" >"$out/prep_$ds.log" 2>&1 &
done
wait
echo "prepared in $(( $(date +%s) - start )) s"

# run DATASET PLAN@N5@N15: milestones every doubling from 100, plus the 5- and 15-minute points
run() {
  local ds=$1 spec=$2 plan n5 n15
  IFS=@ read -r plan n5 n15 <<<"$spec"
  local milestones="100 200 400 800 1600 3200 6400 $n5 $n15"
  timeout "$limit" python3 benchmarks/budget_curves.py --dataset "$ds" --plans "$plan@$n15" \
    --optimizers sgd:0.01:0.9 --decay-fraction 0 --milestones $milestones --device cuda --prepared \
    --threads 1 --num-workers 1 --workdir "$work/$ds" --out "$out/curves_${ds}_${plan}.json" \
    >"$out/curves_${ds}_${plan}.log" 2>&1 &
}
for spec in 0.025@2887@8660 0.05@1553@4659 0.1@727@2180 0.25@273@819 1@110@329; do run organs "$spec"; done
for spec in 0.025@3567@10702 0.05@1844@5531 0.1@1479@4437 1@678@2035; do run organs_mr_aniso "$spec"; done

# the planner on this machine, no flags, then with a 5-minute budget (its GPU calibration cached apart)
ds=$(ls "$work/organs/raw" | grep Dataset | head -1)
for flags in "" "--train-minutes 5"; do
  SEGFORGE_RAW="$work/organs/raw" SEGFORGE_PREPROCESSED="$work/gpuplan" SEGFORGE_CACHE="$work/cache" \
    python3 -m segforge.cli.plan_and_preprocess -d "$ds" --plan-only $flags >>"$out/gpu_plan.log" 2>&1
  python3 - "$work/gpuplan/$ds/plans.json" >>"$out/gpu_plan.log" 2>&1 <<'EOF'
import json, sys
plans = json.load(open(sys.argv[1]))
compute = plans.get("compute", {})
print(json.dumps({k: compute.get(k) for k in ("device", "memory_gb", "train_minutes", "overrides", "why")}, indent=1))
for name, c in plans["configurations"].items():
    print(name, c.get("patch_size"), c.get("batch_size"), c.get("network", {}).get("features_per_stage"))
EOF
done
wait
echo "sweep done in $(( $(date +%s) - start )) s"
