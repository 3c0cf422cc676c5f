#!/usr/bin/env bash
# The `hone synth instruct` experiment (README, "Synthetic instruction data"; docs/performance.md).
# Teacher: the quickstart base with all weights fine-tuned (800 steps) on the quickstart's SFT data plus 1,200 reword
# lessons made from that data (tools/experiments/synth_reword_pairs.py), so that it can follow synth instruct's
# `reword` prompt. Seeds: 40 store-policy conversations from the same data (synth_seeds.py), each with its policy fact.
# The teacher rewords the seeds at T 0.7 and answers each new question 3 times; an example is kept when all 3 answers
# state its seed's fact (--verify facts --answer-samples 3), at most 3 per seed, not near a seed or a kept example and
# not overlapping the held-out policy questions. The base is then LoRA-tuned (the quickstart's SFT settings) on the
# seeds alone and on seeds + kept examples, at equal steps for each of STEPS, and both are evaluated on the held-out
# policy questions (4 samples at T 0.6, pass@1/pass@4).
# Usage: tools/experiments/synth_instruct.sh [QSRUN=/work/qsrun] [OUT=/tmp/synth-exp] [STEPS="120 240 480"] [COUNT=1600]
set -euo pipefail
QS=${1:-/work/qsrun}; OUT=${2:-/tmp/synth-exp}; STEPS=${3:-"120 240 480"}; COUNT=${4:-1600}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
HONE=${HONE:-$HERE/src/Hone.Cli/bin/Release/net10.0/hone}
THREADS=${THREADS:-2}
FAQ="$HERE/src/Hone.Workflows/Synthetic/PolicyFaq.cs"
mkdir -p "$OUT"
python3 "$HERE/tools/experiments/synth_seeds.py" "$QS/data/domain/train.filtered.jsonl" "$FAQ" 40 "$OUT/seeds.jsonl"
python3 "$HERE/tools/experiments/synth_reword_pairs.py" "$QS/data/domain/train.filtered.jsonl" "$FAQ" 100 "$OUT/reword.jsonl"
cat "$QS/data/domain/train.filtered.jsonl" "$OUT/reword.jsonl" | python3 -c "
import random, sys
lines = sys.stdin.readlines(); random.Random(3).shuffle(lines); sys.stdout.writelines(lines)" > "$OUT/teacher-data.jsonl"
[ -d "$OUT/teacher" ] || nice "$HONE" train "$QS/base" --data "$OUT/teacher-data.jsonl" --out "$OUT/teacher" --method full --stage sft --max-steps 800 \
  --batch-size 4 --seq-len 512 --lr 1e-3 --warmup-steps 20 --schedule cosine --min-lr-ratio 0.1 --packing --val-split 0 --eval-every 0 \
  --save-every 0 --seed 1 --threads "$THREADS" --log-every 100 > "$OUT/teacher.log" 2>&1
nice "$HONE" synth instruct --teacher "$OUT/teacher" --seeds "$OUT/seeds.jsonl" --out "$OUT/synthetic.jsonl" --count "$COUNT" \
  --kept-per-seed 3 --answer-samples 3 --mode evol --operations reword --temperature 0.7 --answer-tokens 48 --verify facts \
  --decontaminate "$QS/data/domain/task-policies.jsonl" --seed 1 --report "$OUT/synth-report.json" --threads "$THREADS"
cat "$OUT/seeds.jsonl" > "$OUT/arm-seeds.jsonl"
cat "$OUT/seeds.jsonl" "$OUT/synthetic.jsonl" > "$OUT/arm-seeds-synthetic.jsonl"
# The quickstart's task, pointed at this run's data.
sed "s#\"data\": \"[^\"]*\"#\"data\": \"$QS/data/domain/task-policies.jsonl\"#" "$QS/tasks/domain_task_policies.json" > "$OUT/task-policies.json"
for steps in $STEPS; do
  for arm in seeds seeds-synthetic; do
    nice "$HONE" train "$QS/base" --data "$OUT/arm-$arm.jsonl" --out "$OUT/lora-$arm-$steps" --method lora --stage sft --max-steps "$steps" \
      --batch-size 4 --seq-len 512 --lr 2e-3 --lora-r 16 --lora-alpha 32 --lora-target all-linear --warmup-steps 10 --schedule cosine \
      --min-lr-ratio 0.1 --packing --val-split 0 --eval-every 0 --save-every 0 --seed 1 --threads "$THREADS" --log-every 20 --json > "$OUT/train-$arm-$steps.json"
    nice "$HONE" eval "$QS/base" --adapter "$OUT/lora-$arm-$steps" --task "$OUT/task-policies.json" --ctx 512 --seed 1234 --threads "$THREADS" \
      --out "$OUT/eval-$arm-$steps.json" > /dev/null
  done
  "$HONE" eval compare "$OUT/eval-seeds-$steps.json" "$OUT/eval-seeds-synthetic-$steps.json"
done
