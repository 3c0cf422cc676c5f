#!/bin/bash
# A mixture of two LoRA experts on the quickstart's data: an orders expert and a policies expert trained apart on the
# quickstart's base model (300 steps each), then a top-2 router per layer trained on both kinds of conversation over
# the frozen experts (600 steps), and the same mixture trained jointly (600 steps, routers and experts).
# Each single adapter, the mixture, and the quickstart's own adapter (one LoRA on all the data) are evaluated on held-out
# orders conversations, held-out policy questions and both mixed (assistant-token perplexity), and on the quickstart's
# two answer tasks (pass@1). Prints a Markdown table.
#   tools/experiments/lora_mixture.sh QUICKSTART_RUN [WORK] [THREADS]
# QUICKSTART_RUN is a finished `hone quickstart --out DIR` run (its base/, sft/, data/domain/ and tasks/).
set -euo pipefail
run=$(cd "$1" && pwd); work=${2:-$run/lora-mixture}; threads=${3:-2}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
dotnet build "$repo/src/Hone.Cli" -c Release -v quiet -nologo > /dev/null
hone() { dotnet "$repo/src/Hone.Cli/bin/Release/net10.0/hone.dll" "$@"; }
mkdir -p "$work/data" "$work/tasks"
domain=$run/data/domain
# Orders conversations carry an order record in their system prompt; policy questions do not.
python3 - "$domain" "$work/data" <<'PY'
import json, sys
src, out = sys.argv[1], sys.argv[2]
for split in ("train", "heldout"):
    rows = [l for l in open(f"{src}/{split}.jsonl", encoding="utf-8") if l.strip()]
    orders = [l for l in rows if "Order record:" in json.loads(l)["messages"][0]["content"]]
    policies = [l for l in rows if "Order record:" not in json.loads(l)["messages"][0]["content"]]
    for name, part in (("orders", orders), ("policies", policies), ("mixed", rows)):
        open(f"{out}/{split}-{name}.jsonl", "w", encoding="utf-8").writelines(part)
    print(f"{split}: {len(orders)} orders, {len(policies)} policies", file=sys.stderr)
PY
for name in orders policies mixed; do
  printf '{"name": "heldout_%s", "kind": "perplexity", "data": "%s", "messages_field": "messages", "version": 1}\n' \
    "$name" "$work/data/heldout-$name.jsonl" > "$work/tasks/heldout_$name.json"
done
common=(--stage sft --method lora --lora-r 16 --lora-alpha 32 --lora-targets all-linear --seq-len 512 --batch-size 4
        --warmup-steps 10 --schedule cosine --min-lr-ratio 0.1 --packing --eval-every 0 --val-split 0 --save-every 0
        --log-every 25 --threads "$threads" --seed 7)
for name in orders policies; do
  [ -f "$work/$name/adapter_model.safetensors" ] || hone train "$run/base" --data "$work/data/train-$name.jsonl" --out "$work/$name" \
    "${common[@]}" --max-steps "${EXPERT_STEPS:-300}" --lr 2e-3
done
[ -f "$work/mixture/lora_mixture.json" ] || hone train "$run/base" --data "$work/data/train-mixed.jsonl" --out "$work/mixture" \
  "${common[@]}" --max-steps "${ROUTER_STEPS:-600}" --lr "${ROUTER_LR:-1e-1}" --lora-experts "$work/orders,$work/policies" --lora-experts-top-k 2
# The same mixture trained jointly (MixLoRA: routers and experts), and one LoRA on all the data for as many steps in all
# (300 + 300 + 600), the fair baseline for it.
[ -f "$work/mixture-joint/lora_mixture.json" ] || hone train "$run/base" --data "$work/data/train-mixed.jsonl" --out "$work/mixture-joint" \
  "${common[@]}" --max-steps 600 --lr 1e-2 --lora-experts "$work/orders,$work/policies" --lora-experts-top-k 2 --lora-experts-train
[ -f "$work/single-1200/adapter_model.safetensors" ] || hone train "$run/base" --data "$work/data/train-mixed.jsonl" --out "$work/single-1200" \
  "${common[@]}" --max-steps 1200 --lr 2e-3
tasks=(--task "$work/tasks/heldout_orders.json" --task "$work/tasks/heldout_policies.json" --task "$work/tasks/heldout_mixed.json"
       --task "$run/tasks/domain_task_orders.json" --task "$run/tasks/domain_task_policies.json")
for adapter in orders policies mixture mixture-joint single-1200; do
  [ -f "$work/eval-$adapter.json" ] || hone eval "$run/base" --adapter "$work/$adapter" "${tasks[@]}" --seed 7 --ctx 512 --threads "$threads" --out "$work/eval-$adapter.json" > /dev/null
done
[ -f "$work/eval-quickstart.json" ] || hone eval "$run/base" --adapter "$run/sft" "${tasks[@]}" --seed 7 --ctx 512 --threads "$threads" --out "$work/eval-quickstart.json" > /dev/null
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
rows = [("orders expert", "orders"), ("policies expert", "policies"), ("mixture (top-2 routers, experts frozen)", "mixture"),
        ("mixture trained jointly (routers and experts)", "mixture-joint"), ("one LoRA on all the data, 1,200 steps", "single-1200"),
        ("quickstart adapter (one LoRA on all the data)", "quickstart")]
cols = [("heldout_orders", "perplexity"), ("heldout_policies", "perplexity"), ("heldout_mixed", "perplexity"),
        ("domain_task_orders", "pass@1"), ("domain_task_policies", "pass@1")]
print("| adapter | orders ppl | policies ppl | mixed ppl | orders pass@1 | policies pass@1 |")
print("|---|---:|---:|---:|---:|---:|")
for label, name in rows:
    res = {r["task"]: r["metrics"] for r in json.load(open(f"{work}/eval-{name}.json"))["results"]}
    cells = []
    for task, metric in cols:
        m = res[task][metric]
        cells.append(f"{m['value']:.3f} ± {m['stderr']:.3f}" if m.get("stderr") is not None else f"{m['value']:.3f}")
    print(f"| {label} | " + " | ".join(cells) + " |")
PY
