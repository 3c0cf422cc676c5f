#!/bin/bash
# Unlearning on the quickstart: a quarter of the store policies (support_hours, warranty, invoice: every fourth) is the
# forget set. Models: the specialist (base + the quickstart's SFT adapter, merged), a model that never saw the forget
# policies (the quickstart's LoRA SFT recipe on the training data without them), and the specialist unlearned with
# grad-ascent, grad-diff and NPO (LoRA r16, lr 2e-4 cosine, and NPO once more at lr 1e-3; batch 4 × 128, at most 150 steps, stopping once the forget
# set's NLL passes 8.46 per token, the never-saw model's on the same conversations; retain: the first 400 retained
# policy conversations). Each is evaluated on: forget answer perplexity (first 400 forget conversations), retain answer
# perplexity (the last 400 retained policy conversations, which unlearning does not train on), the policy
# questions' pass rate (pass@1 of 4 samples at T 0.6), general perplexity (first 400 held-out documents, 512-token
# context), TOFU's truth ratio on the forget questions and forget quality against the never-saw model.
# Prints a Markdown table.
#   tools/experiments/unlearn_policies.sh QUICKSTART_RUN [WORK] [THREADS]
set -euo pipefail
run=$(cd "$1" && pwd); work=${2:-$run/unlearn}; threads=${3:-2}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
dotnet build "$repo/src/Hone.Cli" -c Release -v quiet -nologo > /dev/null
hone() { dotnet "$repo/src/Hone.Cli/bin/Release/net10.0/hone.dll" "$@"; }
mkdir -p "$work" && cd "$work"
hone synth policy-unlearning --out bench --data "$run/data/domain/train.filtered.jsonl" --task-items "$run/data/domain/task-policies.jsonl"
head -400 bench/retain.jsonl > bench/retain-400.jsonl   # what grad-diff and NPO train their retain term on
tail -400 bench/retain.jsonl > bench/retain-tail400.jsonl # what retain perplexity is measured on (not trained on by unlearning)
python3 - "$run" <<'PY'
import json, sys
text = open(f"{sys.argv[1]}/data/general/heldout.txt", encoding="utf-8").read()
with open("bench/general-heldout.jsonl", "w", encoding="utf-8") as f:
    for d in (d.strip() for d in text.split("\n\n")):
        if d: f.write(json.dumps({"text": d}) + "\n")
json.dump({"version": 1, "kind": "perplexity", "data": "retain-tail400.jsonl", "messages_field": "messages",
           "description": "answer perplexity of the last 400 retained policy training conversations"}, open("bench/retain_perplexity_tail.json", "w"), indent=1)
json.dump({"version": 1, "kind": "perplexity", "data": "general-heldout.jsonl",
           "description": "held-out documents of the quickstart's general corpus, one per blank-line separated document"},
          open("bench/general_perplexity_docs.json", "w"), indent=1)
PY
[ -d specialist ] || hone merge-adapter "$run/base" --adapter "$run/sft" --out specialist --threads "$threads"
[ -f neversaw/adapter_model.safetensors ] || hone train "$run/base" --data bench/train-without-forget.jsonl --val-data "$run/data/domain/heldout.jsonl" \
  --replay-data "$run/data/general/replay.jsonl" --out neversaw --method lora --stage sft --max-steps 500 --batch-size 4 --seq-len 512 --lr 2e-3 \
  --lora-r 16 --lora-alpha 32 --lora-targets all-linear --warmup-steps 10 --schedule cosine --min-lr-ratio 0.1 --eval-every 125 --save-every 0 \
  --log-every 50 --packing --threads "$threads"
for run_name in grad-ascent grad-diff npo npo-lr1e-3; do
  m=${run_name%-lr1e-3}; lr=2e-4; [ "$run_name" = npo-lr1e-3 ] && lr=1e-3
  [ -f un-$run_name/adapter_model.safetensors ] || hone train specialist --stage unlearn --unlearn-method $m --forget bench/forget.jsonl --retain bench/retain-400.jsonl \
    --out un-$run_name --method lora --lora-r 16 --lora-alpha 32 --lora-targets all-linear --seq-len 128 --batch-size 4 --max-steps 150 --lr $lr \
    --warmup-steps 0 --schedule cosine --min-lr-ratio 0.1 --eval-every 10 --save-every 0 --log-every 10 --forget-target-loss 8.46 --threads "$threads"
done
tasks=(--task bench/forget_perplexity.json --task bench/retain_perplexity_tail.json --task bench/policies_forget.json --task bench/policies_retain.json
       --task bench/general_perplexity_docs.json --ctx 512 --limit 400 --threads "$threads")
hone eval "$run/base" --adapter neversaw --task bench/truth_ratio_forget.json "${tasks[@]}" --out eval-neversaw.json
hone synth policy-unlearning --out bench-ref --data "$run/data/domain/train.filtered.jsonl" --task-items "$run/data/domain/task-policies.jsonl" --reference eval-neversaw.json > /dev/null
hone eval "$run/base" --adapter neversaw --task bench-ref/truth_ratio_forget.json --ctx 512 --threads "$threads" --out tr-neversaw.json
hone eval specialist "${tasks[@]}" --out eval-specialist.json
hone eval specialist --task bench-ref/truth_ratio_forget.json --ctx 512 --threads "$threads" --out tr-specialist.json
for m in grad-ascent grad-diff npo npo-lr1e-3; do
  hone eval specialist --adapter un-$m "${tasks[@]}" --out eval-$m.json
  hone eval specialist --adapter un-$m --task bench-ref/truth_ratio_forget.json --ctx 512 --threads "$threads" --out tr-$m.json
done
python3 - <<'PY'
import json
def metrics(path):
    out = {}
    for r in json.load(open(path))["results"]:
        for k, v in r["metrics"].items(): out[(r["task"], k)] = (v["value"], v["stderr"])
    return out
def f(x, digits=3):
    v, se = x
    return f"{v:.{digits}f}" + (f" ± {se:.{digits}f}" if se else "")
print("| model | steps | forget pass@1 | retain pass@1 | forget ppl | retain ppl | general ppl | truth ratio (forget) | forget quality (KS p) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for name, label in [("specialist", "specialist (base + SFT adapter)"), ("neversaw", "never saw the forget policies"),
                    ("grad-ascent", "unlearned: grad-ascent"), ("grad-diff", "unlearned: grad-diff"), ("npo", "unlearned: NPO β 0.1"), ("npo-lr1e-3", "unlearned: NPO β 0.1, lr 1e-3")]:
    m = metrics(f"eval-{name}.json"); t = metrics(f"tr-{name}.json")
    steps = json.load(open(f"un-{name}/train_summary.json"))["steps"] if name.startswith(("grad", "npo")) else "-"
    print(f"| {label} | {steps} | {f(m[('policies_forget','pass@1')])} | {f(m[('policies_retain','pass@1')])} | {f(m[('forget_perplexity','perplexity')], 2)} | "
          f"{f(m[('retain_perplexity_tail','perplexity')])} | {f(m[('general_perplexity_docs','perplexity')])} | {f(t[('truth_ratio_forget','truth_ratio')])} | "
          f"{t[('truth_ratio_forget','forget_quality')][0]:.2g} |")
PY
