#!/bin/bash
# A mixture built from two quickstart specialists: an orders and a policies LoRA on the MLPs (trained here on the
# data lora_mixture.sh split), each folded into the quickstart's base ("base+adapter"), become the two experts of every
# layer of a Mixtral (top 1 and top 2), its routers from the base model's hidden states on a few prompts of each kind
# (mergekit-moe's "hidden").
# Evaluates each on the held-out sets of lora_mixture.sh (which must have run) and writes a GGUF for llama.cpp.
#   tools/experiments/moe_build.sh QUICKSTART_RUN [WORK] [THREADS]     (WORK: lora_mixture.sh's, default RUN/lora-mixture)
set -euo pipefail
run=$(cd "$1" && pwd); work=${2:-$run/lora-mixture}; threads=${3:-2}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
dotnet build "$repo/src/Hone.Cli" -c Release -v quiet -nologo > /dev/null
hone() { dotnet "$repo/src/Hone.Cli/bin/Release/net10.0/hone.dll" "$@"; }
# Specialists that differ in their MLPs only (mergekit-moe takes attention from the base): LoRA on gate, up and down.
for name in orders policies; do
  [ -f "$work/$name-mlp/adapter_model.safetensors" ] || hone train "$run/base" --data "$work/data/train-$name.jsonl" --out "$work/$name-mlp" \
    --stage sft --method lora --lora-r 16 --lora-alpha 32 --lora-targets gate_proj,up_proj,down_proj --seq-len 512 --batch-size 4 \
    --warmup-steps 10 --schedule cosine --min-lr-ratio 0.1 --packing --eval-every 0 --val-split 0 --save-every 0 --log-every 50 \
    --threads "$threads" --seed 7 --max-steps "${EXPERT_STEPS:-300}" --lr 2e-3 > "$work/$name-mlp.log"
  [ -f "$work/eval-$name-mlp.json" ] || hone eval "$run/base" --adapter "$work/$name-mlp" --task "$work/tasks/heldout_orders.json" \
    --task "$work/tasks/heldout_policies.json" --task "$work/tasks/heldout_mixed.json" --seed 7 --ctx 512 --threads "$threads" \
    --out "$work/eval-$name-mlp.json" > /dev/null
done
for k in 1 2; do
  cat > "$work/moe-top$k.yaml" <<YAML
base_model: $run/base
gate_mode: hidden
experts_per_token: $k
experts:
  - source_model: $run/base+$work/orders-mlp
    positive_prompts:
      - "Order record: Customer: Uma Mori Order: #79875 Status: processing. Where is my order?"
      - "Which card did I use for my order?"
      - "When will my order #93453 arrive?"
    negative_prompts:
      - "What are your support hours?"
  - source_model: $run/base+$work/policies-mlp
    positive_prompts:
      - "You are the customer service assistant of Hone Market, an online marketplace. Answer questions about its policies."
      - "What are your support hours?"
      - "Is shipping free?"
    negative_prompts:
      - "Where is my order?"
YAML
  [ -f "$work/moe-top$k/config.json" ] || hone moe build "$work/moe-top$k.yaml" --out "$work/moe-top$k" --threads "$threads" > "$work/moe-top$k.log"
  [ -f "$work/eval-moe-top$k.json" ] || hone eval "$work/moe-top$k" --task "$work/tasks/heldout_orders.json" --task "$work/tasks/heldout_policies.json" \
    --task "$work/tasks/heldout_mixed.json" --seed 7 --ctx 512 --threads "$threads" --out "$work/eval-moe-top$k.json" > /dev/null
done
[ -f "$work/moe-top2.gguf" ] || hone moe build "$work/moe-top2.yaml" --out "$work/moe-top2.gguf" --type q8_0 --threads "$threads" > /dev/null
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
print("| model | orders ppl | policies ppl | mixed ppl |")
print("|---|---:|---:|---:|")
for label, name in [("orders specialist (LoRA on the MLPs)", "orders-mlp"), ("policies specialist (LoRA on the MLPs)", "policies-mlp"),
                    ("hone moe build, top 1 of the 2 specialists' MLPs", "moe-top1"), ("hone moe build, top 2", "moe-top2")]:
    res = {r["task"]: r["metrics"]["perplexity"] for r in json.load(open(f"{work}/eval-{name}.json"))["results"] if "perplexity" in r["metrics"]}
    print(f"| {label} | " + " | ".join(f"{res[t]['value']:.3f} ± {res[t]['stderr']:.3f}" for t in ("heldout_orders", "heldout_policies", "heldout_mixed")) + " |")
PY
