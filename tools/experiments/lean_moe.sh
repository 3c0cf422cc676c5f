#!/bin/bash
# Lean mixtures of experts on the quickstart's shape: the quickstart's base model upcycled into 8 experts (noise keeps
# them apart), trained on the domain's order records and general text, then pruned by routing frequency (hone moe prune)
# and run with dynamic expert skipping (--moe-skip-threshold). Prints perplexity on held-out domain and general text,
# parameters, the share of expert evaluations skipped and decode speed, as a Markdown table.
#   tools/experiments/lean_moe.sh QUICKSTART_RUN [WORK] [THREADS]
set -euo pipefail
run=$(cd "$1" && pwd); work=${2:-$run/lean-moe}; threads=${3:-2}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
dotnet build "$repo/src/Hone.Cli" -c Release -v quiet -nologo > /dev/null
hone() { dotnet "$repo/src/Hone.Cli/bin/Release/net10.0/hone.dll" "$@"; }
mkdir -p "$work"
base=$run/base
if [ ! -f "$work/upcycled/config.json" ]; then
  { echo "base_model: $base"; echo "gate_mode: random"; echo "experts_per_token: 2"; echo "experts:"
    for e in 0 1 2 3 4 5 6 7; do echo "  - source_model: $base"; echo "    noise_scale: 0.01"; done; } > "$work/upcycle.yaml"
  hone moe build "$work/upcycle.yaml" --out "$work/upcycled" --allow-identical-experts --seed 7 > /dev/null
fi
python3 - "$run" "$work/train.jsonl" <<'PY'
import json, random, sys
run, out = sys.argv[1], sys.argv[2]
docs = [json.loads(l)["text"] for l in open(f"{run}/data/domain/records.jsonl", encoding="utf-8")][:3000]
docs += [json.loads(l)["text"] for l in open(f"{run}/data/general/train.jsonl", encoding="utf-8")][:3000]
random.Random(7).shuffle(docs)
with open(out, "w", encoding="utf-8") as f:
    for d in docs: f.write(json.dumps({"text": d}) + "\n")
PY
[ -f "$work/moe/config.json" ] || hone train "$work/upcycled" --stage cpt --method full --data "$work/train.jsonl" --out "$work/moe" \
  --max-steps "${STEPS:-400}" --batch-size 4 --seq-len 512 --lr 1e-3 --warmup-steps 20 --router-aux-loss-coef 0.01 \
  --eval-every 0 --val-split 0 --save-every 0 --log-every 50 --threads "$threads" --seed 7 > "$work/train.log"
head -c 200000 "$run/data/domain/heldout.txt" > "$work/calibration.txt"
for keep in 6 4; do
  [ -f "$work/pruned-$keep/config.json" ] || hone moe prune "$work/moe" --data "$work/calibration.txt" --keep "$keep" --out "$work/pruned-$keep" --threads "$threads" > "$work/prune-$keep.log"
done
ppl() { hone perplexity "$1" -f "$2" --ctx 512 --threads "$threads" --json "${@:3}"; }
tg() { hone bench --model "$1" -p 64 -n 128 -r 3 --threads "$threads" --json "${@:2}" 2> /dev/null; }
echo "| model | parameters | domain ppl | general ppl | expert runs skipped | tg128 tokens/s |"
echo "|---|---:|---:|---:|---:|---:|"
row() { # label model [skip]
  local extra=(); [ -n "${3:-}" ] && extra=(--moe-skip-threshold "$3")
  local d g b
  d=$(ppl "$2" "$run/data/domain/heldout.txt" "${extra[@]}"); g=$(ppl "$2" "$run/data/general/heldout.txt" "${extra[@]}"); b=$(tg "$2" "${extra[@]}")
  python3 - "$1" "$2" "$d" "$g" "$b" <<'PY'
import json, sys
label, model, d, g, b = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]), json.loads(sys.argv[5])
params = b["parameters"]
skip = d.get("skipped_expert_share")
print(f"| {label} | {params:,} | {d['ppl']:.3f} | {g['ppl']:.3f} | {'–' if skip is None else f'{skip:.1%}'} | {b['gen_tokens_per_s']:.0f} |")
PY
}
row "dense base (before upcycling)" "$base"
row "upcycled, trained: 8 experts, top 2" "$work/moe"
row "pruned to 6 experts" "$work/pruned-6"
row "pruned to 4 experts" "$work/pruned-4"
for t in 0.1 0.2 0.3 0.4; do row "8 experts, skip under $t" "$work/moe" "$t"; done
