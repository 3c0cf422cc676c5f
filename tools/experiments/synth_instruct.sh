#!/usr/bin/env bash
# The `hone synth instruct` experiment (README, "Synthetic instruction data"; docs/performance.md): a finished quickstart
# run's specialist (base + LoRA) as the teacher rewords 40 store-policy seed questions (evol, reword, 4 samples each at
# T 0.7) and answers them; the facts checker keeps the answers that state the seed's policy fact. The base model is
# then LoRA-tuned (the quickstart's SFT settings, STEPS steps in both arms) on the seeds alone and on seeds + kept
# examples, and both are evaluated on the held-out policy questions (4 samples at T 0.6, pass@1/pass@4).
# Usage: tools/experiments/synth_instruct.sh [QSRUN=/work/qsrun] [OUT=/tmp/synth-exp] [STEPS=120] [COUNT=160]
set -euo pipefail
QS=${1:-/work/qsrun}; OUT=${2:-/tmp/synth-exp}; STEPS=${3:-120}; COUNT=${4:-160}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
HONE=${HONE:-$HERE/src/Hone.Cli/bin/Release/net10.0/hone}
THREADS=${THREADS:-2}
mkdir -p "$OUT"
python3 "$HERE/tools/experiments/synth_seeds.py" "$QS/data/domain/train.filtered.jsonl" "$HERE/src/Hone.Workflows/Synthetic/PolicyFaq.cs" 40 "$OUT/seeds.jsonl"
nice "$HONE" synth instruct --teacher "$QS/base" --teacher-adapter "$QS/sft" --seeds "$OUT/seeds.jsonl" --out "$OUT/synthetic.jsonl" \
  --count "$COUNT" --mode evol --operations reword --temperature 0.7 --answer-tokens 48 --verify facts \
  --decontaminate "$QS/data/domain/task-policies.jsonl" --seed 1 --report "$OUT/synth-report.json" --threads "$THREADS"
cat "$OUT/seeds.jsonl" > "$OUT/arm-seeds.jsonl"
cat "$OUT/seeds.jsonl" "$OUT/synthetic.jsonl" > "$OUT/arm-seeds-synthetic.jsonl"
# The quickstart's task, pointed at this run's data.
sed "s#\"data\": \"[^\"]*\"#\"data\": \"$QS/data/domain/task-policies.jsonl\"#" "$QS/tasks/domain_task_policies.json" > "$OUT/task-policies.json"
for arm in seeds seeds-synthetic; do
  nice "$HONE" train "$QS/base" --data "$OUT/arm-$arm.jsonl" --out "$OUT/lora-$arm" --method lora --stage sft --max-steps "$STEPS" \
    --batch-size 4 --seq-len 512 --lr 2e-3 --lora-r 16 --lora-alpha 32 --lora-target all-linear --warmup-steps 10 --schedule cosine \
    --min-lr-ratio 0.1 --packing --val-split 0 --eval-every 0 --save-every 0 --seed 1 --threads "$THREADS" --log-every 20 --json > "$OUT/train-$arm.json"
  nice "$HONE" eval "$QS/base" --adapter "$OUT/lora-$arm" --task "$OUT/task-policies.json" --ctx 512 --threads "$THREADS" --out "$OUT/eval-$arm.json" > /dev/null
done
"$HONE" eval compare "$OUT/eval-seeds.json" "$OUT/eval-seeds-synthetic.json"
