#!/bin/bash
# Unlearning on the quickstart, the protocol of README's "Unlearning" table: a quarter of the store policies
# (support_hours, warranty, invoice: every fourth) is the forget set. Models: the specialist (base + the quickstart's SFT
# adapter, merged), a model that never saw the forget policies (the quickstart's LoRA SFT recipe on the training data
# without them), and the specialist unlearned with grad-ascent, grad-diff and NPO β 0.1 (LoRA r16 cosine at lr 2e-4, and
# NPO once more at lr 1e-3; batch 4 × 128, at most 150 steps, stopping once the forget set's NLL passes the never-saw
# model's; retain: the first 400 retained policy conversations). Each is evaluated on forget answer perplexity (first 400
# forget conversations), retain answer perplexity (the last 400 retained policy conversations, which unlearning does not
# train on), the policy questions' pass rate (pass@1 of 4 samples at T 0.6), general perplexity (first 400 held-out
# documents, 512-token context), TOFU's truth ratio on the forget questions and forget quality against the never-saw model.
# It all runs in the library (Hone.Workflows.PolicyUnlearningExperiment) as `hone quickstart --unlearn` on the finished
# run, in RUN/extended/unlearn (stages that finished are skipped when run again); this prints its table as Markdown.
#   tools/experiments/unlearn_policies.sh QUICKSTART_RUN [THREADS]
set -euo pipefail
run=$(cd "$1" && pwd); threads=${2:-2}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
dotnet build "$repo/src/Hone.Cli" -c Release -v quiet -nologo > /dev/null
[ -f "$run/quickstart.json" ] || { echo "$run: not a finished quickstart (no quickstart.json)" >&2; exit 1; }
dotnet "$repo/src/Hone.Cli/bin/Release/net10.0/hone.dll" quickstart --out "$run" --unlearn --threads "$threads" \
  --unlearn-arms grad-ascent:2e-4,grad-diff:2e-4,npo:2e-4,npo:1e-3 > /dev/null
python3 - "$run/quickstart.json" <<'PY'
import json, sys
u = json.load(open(sys.argv[1]))["unlearning"]
def f(m, digits=3):
    v, se = m.get("value"), m.get("stderr")
    return "-" if v is None else f"{v:.{digits}f}" + (f" ± {se:.{digits}f}" if se else "")
print("| model | steps | forget pass@1 | retain pass@1 | forget ppl | retain ppl | general ppl | truth ratio (forget) | forget quality (KS p) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for row in u["models"]:
    m = row["metrics"]; q = m["truth_ratio_forget forget_quality"]
    print(f"| {row['model']} | {row['steps'] if row['steps'] is not None else '-'} | {f(m['policies_forget pass@1'])} | {f(m['policies_retain pass@1'])} | "
          f"{f(m['forget_perplexity perplexity'], 2)} | {f(m['retain_heldout_perplexity perplexity'])} | {f(m['general_perplexity_documents perplexity'])} | "
          f"{f(m['truth_ratio_forget truth_ratio'])} | {q['value']:.2g} (D {q['ks_statistic']:.2f}) |")
PY
