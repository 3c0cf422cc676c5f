#!/usr/bin/env bash
# The distillation experiment (README, "Distillation: a small model taught by a larger one"; docs/performance.md):
# a finished quickstart run's base is fully fine-tuned on the quickstart's SFT data into a teacher (800 steps), the base
# with 2 of its 4 layers removed is the student, and the student is trained at equal steps on hard labels (`sft`) and
# with the teacher's distributions (`distill`, α 0.5, T 2, forward KL), for each training seed. Every model is
# evaluated at the context it was trained at (512) on domain perplexity, the held-out policy questions and general
# perplexity, as the quickstart evaluates.
# Usage: tools/experiments/distill_student.sh [QSRUN=/work/qsrun] [OUT=/tmp/distill-student] [STEPS=600] [SEEDS="42 43 44"]
set -euo pipefail
QS=${1:-/work/qsrun}; OUT=${2:-/tmp/distill-student}; STEPS=${3:-600}; SEEDS=${4:-"42 43 44"}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
HONE=${HONE:-$HERE/src/Hone.Cli/bin/Release/net10.0/hone}
THREADS=${THREADS:-2}
mkdir -p "$OUT/tasks"
for t in domain_perplexity domain_task_policies general_perplexity; do
  sed -e "s#/tmp/qsfull/run2#$QS#g" "$QS/tasks/$t.json" > "$OUT/tasks/$t.json"
done
tasks=(--task "$OUT/tasks/domain_perplexity.json" --task "$OUT/tasks/domain_task_policies.json" --task "$OUT/tasks/general_perplexity.json")
data=(--data "$QS/data/domain/train.filtered.jsonl" --replay-data "$QS/data/general/replay.jsonl")
common=(--batch-size 4 --seq-len 512 --packing --lr 1e-3 --schedule cosine --min-lr-ratio 0.1 --val-split 0 --eval-every 0 --save-every 0
  --threads "$THREADS" --log-every 50)
evaluate() { nice "$HONE" eval "$@" "${tasks[@]}" --ctx 512 --seed 1234 --threads "$THREADS" > /dev/null; }

# The student: the base without 2 of its 4 layers, chosen by their effect on general text.
python3 - "$QS/data/general/train.jsonl" "$OUT/general.txt" <<'PY'
import json, sys
with open(sys.argv[2], "w") as f:
    for i, line in enumerate(open(sys.argv[1])):
        if i == 2000: break
        f.write(json.loads(line)["text"] + "\n\n")
PY
[ -d "$OUT/student-init" ] || nice "$HONE" prune layers "$QS/base" --data "$OUT/general.txt" --remove 2 --out "$OUT/student-init"
# The teacher: the base, all weights, on the same data.
[ -d "$OUT/teacher" ] || nice "$HONE" train "$QS/base" "${data[@]}" --stage sft --method full --max-steps 800 --warmup-steps 20 --seed 42 \
  "${common[@]}" --out "$OUT/teacher" > "$OUT/teacher.log" 2>&1
[ -f "$OUT/lora-teacher.eval.json" ] || evaluate "$QS/base" --adapter "$QS/sft" --out "$OUT/lora-teacher.eval.json"
[ -f "$OUT/teacher.eval.json" ] || evaluate "$OUT/teacher" --out "$OUT/teacher.eval.json"
[ -f "$OUT/student-init.eval.json" ] || evaluate "$OUT/student-init" --out "$OUT/student-init.eval.json"
for seed in $SEEDS; do
  for arm in sft distill; do
    run="$OUT/$arm-$STEPS-s$seed"
    [ -f "$run/eval.json" ] && continue
    extra=()
    [ "$arm" = distill ] && extra=(--teacher "$OUT/teacher" --kd-ratio 0.5 --kd-temperature 2 --kd-loss forward)
    nice "$HONE" train "$OUT/student-init" "${data[@]}" --stage "$arm" "${extra[@]}" --method full --max-steps "$STEPS" --warmup-steps 10 \
      --seed "$seed" "${common[@]}" --out "$run" > "$run.log" 2>&1
    evaluate "$run" --out "$run/eval.json"
  done
  "$HONE" eval compare "$OUT/sft-$STEPS-s$seed/eval.json" "$OUT/distill-$STEPS-s$seed/eval.json"
done
