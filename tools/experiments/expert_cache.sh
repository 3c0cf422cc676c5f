#!/bin/bash
# Expert caching under a memory budget (--expert-cache): experts stay in the memory-mapped file and a budget's worth
# stays resident. Two tables in Markdown:
#  1. hit rates on a trained mixture (lean_moe.sh's 8-expert upcycled quickstart model): perplexity of held-out domain
#     text (prefill, 512-token windows) and greedy decoding of 128 tokens after 8 held-out prompts (one process each,
#     so each starts cold), per budget and policy; perplexity must equal the fully resident model's;
#  2. speed and memory on random mixtral-small (hone bench, Q8_0 and F32 GGUF): pp128 and tg128 tokens/s and the
#     process's resident set after tg, per budget, rounds alternated (ranges over rounds).
#   tools/experiments/expert_cache.sh QUICKSTART_RUN LEAN_WORK [WORK] [THREADS] [ROUNDS]   (ROUNDS 0: hit rates only)
set -euo pipefail
run=$(cd "$1" && pwd); lean=$(cd "$2" && pwd); work=${3:-$lean/expert-cache}; threads=${4:-2}; rounds=${5:-3}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
dotnet build "$repo/src/Hone.Cli" -c Release -v quiet -nologo > /dev/null
mkdir -p "$work"
[ -f "$lean/moe/config.json" ] || { echo "no trained mixture at $lean/moe: run tools/experiments/lean_moe.sh first" >&2; exit 1; }
if [ ! -f "$work/q8_0.gguf" ]; then
  python3 "$repo/tools/llamacpp/make_random_model.py" "$work/hf" --shape mixtral-small > /dev/null
  dotnet "$repo/src/Hone.Cli/bin/Release/net10.0/hone.dll" convert "$work/hf" --out "$work/f32.gguf" > /dev/null
  dotnet "$repo/src/Hone.Cli/bin/Release/net10.0/hone.dll" convert "$work/hf" --out "$work/q8_0.gguf" --type q8_0 > /dev/null
  rm -rf "$work/hf"
fi
python3 - "$repo" "$run" "$lean/moe" "$work" "$threads" "$rounds" <<'PY'
import json, subprocess, sys
repo, run, moe, work, threads, rounds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
hone = ["dotnet", f"{repo}/src/Hone.Cli/bin/Release/net10.0/hone.dll"]
def call(*args):
    r = subprocess.run(hone + list(args), capture_output=True, text=True)
    if r.returncode != 0: sys.exit(f"hone {' '.join(args)} failed:\n{r.stderr}")
    return json.loads(r.stdout)
heldout = open(f"{run}/data/domain/heldout.txt", encoding="utf-8").read()
text = f"{work}/heldout.txt"
open(text, "w", encoding="utf-8").write(heldout[:60000])
prompts = [p.strip()[:160] for p in heldout.split("\n") if len(p.strip()) > 80][:8]
budgets = [None, "75%", "50%", "25%"]
print("| budget | policy | resident experts | domain ppl | prefill hit rate | decode hit rate |")
print("|---|---|---:|---:|---:|---:|")
base = None
for budget in budgets:
    for policy in (["frequency", "recency"] if budget else [None]):
        extra = ["--expert-cache", budget, "--expert-cache-policy", policy] if budget else []
        p = call("perplexity", moe, "-f", text, "--ctx", "512", "--threads", threads, "--json", *extra)
        if base is None: base = p["ppl"]
        assert p["ppl"] == base, f"perplexity changed with the cache: {p['ppl']} vs {base}"
        hits = misses = 0
        for prompt in prompts:
            g = call("generate", moe, "-p", prompt, "-n", "128", "--temperature", "0", "--threads", threads, "--json", *extra)
            if budget: hits += g["expert_cache"]["hits"]; misses += g["expert_cache"]["misses"]
        c = p["expert_cache"]
        print(f"| {budget or 'all resident'} | {policy or '–'} | {c['resident_experts'] if c else 32} of 32 | {p['ppl']:.4f} | "
              f"{c['hit_rate']:.1%} | {hits / (hits + misses):.1%} |" if budget else
              f"| all resident | – | 32 of 32 | {p['ppl']:.4f} | – | – |")
if rounds == 0: sys.exit(0)  # hit rates only
print()
print("| weights | budget | resident experts | pp128 tokens/s | tg128 tokens/s | tg hit rate | resident set after tg |")
print("|---|---|---:|---:|---:|---:|---:|")
results = {}
for r in range(rounds):
    for model in ("q8_0", "f32"):
        for budget in budgets:
            extra = ["--expert-cache", budget] if budget else []
            b = call("bench", "-m", f"{work}/{model}.gguf", "-p", "128", "-n", "128", "-r", "3", "--threads", threads, "--json", *extra)
            results.setdefault((model, budget), []).append(b)
def span(xs, fmt): return fmt.format(min(xs)) if len(xs) == 1 else fmt.format(min(xs)) + "–" + fmt.format(max(xs))
for model in ("q8_0", "f32"):
    for budget in budgets:
        bs = results[(model, budget)]
        c = bs[0]["expert_cache"]
        print(f"| {model.upper()} | {budget or 'all resident'} | {c['resident_experts'] if c else 64} of 64 | "
              f"{span([b['prompt_tokens_per_s'] for b in bs], '{:.0f}')} | {span([b['gen_tokens_per_s'] for b in bs], '{:.0f}')} | "
              f"{span([b['expert_cache']['tg_hit_rate'] for b in bs], '{:.0%}') if c else '–'} | "
              f"{span([b['resident_bytes_after_tg'] / 2**20 for b in bs], '{:.0f}')} MiB |")
PY
