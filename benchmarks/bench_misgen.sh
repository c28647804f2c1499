#!/usr/bin/env bash
# Goal misgeneralization on glasszero/CornerGoal-v0: ez (learned objective, and the same networks
# under a swapped objective) against PPO, trained on split="train", measured on split="test".
#
#   STEPS=8000,ppo=30000 ALGOS=ez,ppo SEEDS=0,1,2 EPISODES=100 OUT=results/misgen \
#     [RESULT=benchmarks/results/misgen_cornergoal.json] benchmarks/bench_misgen.sh
#
# STEPS: one budget, or a default plus per-algo budgets (PPO needs more samples to solve the train
# split; the question here is what each learned, not how fast). RESUME=1 reuses finished runs.
#
# Figures only; nothing is asserted. Prints misgen.md; the last line is JSON (per algo: test success,
# proxy pursuit, return and train-split success, each [mean, std] over seeds); RESULT also writes it,
# with the command, to that file.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-8000,ppo=30000}"
OUT="${OUT:-results/misgen}"
mkdir -p "$OUT"
echo "machine: $(nproc) CPU cores, $(python3 -c 'import torch; print("CUDA " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'), $(uname -sm)"
COMMAND="python train.py misgen --env glasszero/CornerGoal-v0 --algos ${ALGOS:-ez,ppo} --seeds ${SEEDS:-0,1,2} --steps $STEPS --episodes ${EPISODES:-100} --out $OUT${RESUME:+ --resume}"
echo "command: $COMMAND"
python3 train.py misgen --env glasszero/CornerGoal-v0 --algos "${ALGOS:-ez,ppo}" --seeds "${SEEDS:-0,1,2}" \
  --steps "$STEPS" --episodes "${EPISODES:-100}" --out "$OUT" ${RESUME:+--resume} --no-progress > "$OUT/misgen.log" 2>&1 \
  || { tail -20 "$OUT/misgen.log"; exit 1; }
cat "$OUT/misgen.md"
tail -1 "$OUT/misgen.log"
if [ -n "${RESULT:-}" ]; then
  python3 -c 'import json, sys; print(json.dumps({"benchmark": "misgen", "env": "glasszero/CornerGoal-v0", "results": json.loads(sys.argv[1]), "command": sys.argv[2]}))' \
    "$(tail -1 "$OUT/misgen.log")" "$COMMAND" > "$RESULT"
fi
