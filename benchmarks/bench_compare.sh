#!/usr/bin/env bash
# Sample efficiency of ez against the Stable-Baselines3 baselines on CartPole-v1: 3 seeds each, same
# step budget, evaluation protocol and seeds, through `train.py compare`. Prints summary.md.
#
#   STEPS=20000 ALGOS=ez,ppo,dqn SEEDS=0,1,2 WORKERS=1 OUT=results/bench_compare benchmarks/bench_compare.sh
#
# RESUME=1 skips runs that already finished in OUT (e.g. the baselines first, ez later). The last
# line is JSON: per algo final return mean/std over seeds, AUC, wall-clock and search amplification.
#
# Figures only; nothing is asserted. Wall-clock columns depend on the machine: name it when quoting them.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-20000}"
OUT="${OUT:-results/bench_compare}"
mkdir -p "$OUT"
echo "machine: $(nproc) CPU cores, $(python3 -c 'import torch; print("CUDA " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'), $(uname -sm)"
python3 train.py compare --env CartPole-v1 --algos "${ALGOS:-ez,ppo,dqn}" --seeds "${SEEDS:-0,1,2}" \
  --steps "$STEPS" --eval-interval "${EVAL_INTERVAL:-$((STEPS / 10))}" --eval-episodes 20 \
  --workers "${WORKERS:-1}" --out "$OUT" ${RESUME:+--resume} > "$OUT/compare.log" 2>&1 \
  || { tail -20 "$OUT/compare.log"; exit 1; }
echo "log: $OUT/compare.log  curves: $OUT/curves.png  runs: $OUT/runs/"
cat "$OUT/summary.md"
python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
from agent import compare
out = Path(sys.argv[1])
rows = compare.read_results(out / "results.csv")
extras = {}
for run in (out / "runs").glob("*/result.json"):
    r = json.loads(run.read_text())
    audit = run.parent / "audit.json"
    amp = json.loads(audit.read_text()).get("search_amplification") if audit.exists() else None
    extras[(r["algo"], r["seed"])] = {"parameters": r["parameters"], "search_amplification": amp}
s = compare.summarize(rows, 475.0, extras)
nan = lambda x: None if x != x else x  # noqa: E731  (JSON has no NaN)
print(json.dumps({a: {"final_mean": nan(v.final_mean), "final_std": nan(v.final_std), "auc_mean": nan(v.auc_mean),
                      "wall_clock_s": nan(v.wall_clock_s), "seeds": v.seeds, "status": v.status,
                      "search_amplification": v.search_amplification} for a, v in s.items()}))
PY
