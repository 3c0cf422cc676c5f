#!/usr/bin/env bash
# The `hone synth trajectories` experiment (README, "Verified agent trajectories"; docs/performance.md): a finished
# quickstart run's fine-tuned agent (agent-sft) is the teacher on the training tasks of its benchmark (the first TASKS,
# or all), 2 trials each, with the quickstart's agent settings (greedy, tools not in the prompt, 12 steps, 192 tokens a
# message); the grader keeps the passing conversations. Then agent-sft is fine-tuned further for STEPS steps on the
# kept conversations and, in the other arm, on the oracle's conversations of the same tasks and trials, and the three
# models are run on the held-out tasks (the first EVAL_TASKS, or all; EVAL_TRIALS trials, seed 7).
# Usage: tools/experiments/synth_trajectories.sh [QSRUN=/work/qsrun] [OUT=/tmp/traj] [TASKS=all] [STEPS=60] [EVAL_TASKS=all] [EVAL_TRIALS=2]
set -euo pipefail
QS=${1:-/work/qsrun}; OUT=${2:-/tmp/traj}; TASKS=${3:-all}; STEPS=${4:-60}; EVAL_TASKS=${5:-all}; EVAL_TRIALS=${6:-2}
LIMIT=(); [ "$TASKS" = all ] || LIMIT=(--limit "$TASKS")
EVAL_LIMIT=(); [ "$EVAL_TASKS" = all ] || EVAL_LIMIT=(--limit "$EVAL_TASKS")
HERE=$(cd "$(dirname "$0")/../.." && pwd)
HONE=${HONE:-$HERE/src/Hone.Cli/bin/Release/net10.0/hone}
THREADS=${THREADS:-2}
AGENT=(--max-steps 12 --max-tokens 192 --no-tools-in-prompt --parallel 8 --threads "$THREADS")
mkdir -p "$OUT"
# The benchmark folder is copied: the run opens its store, and the quickstart's folder stays as it was.
[ -d "$OUT/bench" ] || cp -r "$QS/data/agent/bench" "$OUT/bench"
nice "$HONE" synth trajectories "$OUT/bench" --teacher "$QS/agent-sft" "${AGENT[@]}" --no-tools "${LIMIT[@]}" --trials 2 \
  --out "$OUT/teacher.jsonl" --report "$OUT/teacher.report.json"
nice "$HONE" agent trajectories "$OUT/bench" "${LIMIT[@]}" --trials 2 --no-tools --out "$OUT/oracle.jsonl" --report "$OUT/oracle.report.json"
for arm in teacher oracle; do
  data="$OUT/teacher.jsonl"; [ $arm = oracle ] && data="$OUT/oracle.jsonl"
  nice "$HONE" train "$QS/agent-sft" --data "$data" --out "$OUT/ft-$arm" --method full --stage sft --train-on-prompt --packing \
    --max-steps "$STEPS" --batch-size 2 --seq-len 1024 --lr 5e-4 --warmup-steps 5 --schedule constant --weight-decay 0.01 \
    --val-split 0 --eval-every 0 --save-every 0 --threads "$THREADS" --seed 7 --log-every 20 > "$OUT/ft-$arm.log"
done
for m in "$QS/agent-sft" "$OUT/ft-teacher" "$OUT/ft-oracle"; do
  nice "$HONE" agent run "$OUT/bench" --agent "$m" --split test "${EVAL_LIMIT[@]}" --trials "$EVAL_TRIALS" --seed 7 "${AGENT[@]}" --out "$OUT/eval-$(basename "$m").json"
done
