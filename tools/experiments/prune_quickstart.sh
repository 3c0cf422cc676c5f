#!/bin/bash
# Depth and width pruning of the quickstart's base model: 25% of the layers removed (hone prune layers, block
# influence) and 25% of the residual stream's dimensions sliced (hone prune width, one rotation and per-layer rotations
# with residual shortcuts), calibrated on the general training text. Prints a Markdown table: layers, width, parameters, perplexity of held-out general and domain text (protocol full,
# exact), and decode speed (hone bench tg128, rounds interleaved; ranges over rounds).
#   tools/experiments/prune_quickstart.sh QUICKSTART_RUN [WORK] [THREADS] [ROUNDS]
set -euo pipefail
run=$(cd "$1" && pwd); work=${2:-$run/prune}; threads=${3:-2}; rounds=${4:-3}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
dotnet build "$repo/src/Hone.Cli" -c Release -v quiet -nologo > /dev/null
mkdir -p "$work"
python3 - "$repo" "$run" "$work" "$threads" "$rounds" <<'PY'
import json, subprocess, sys
repo, run, work, threads, rounds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
hone = ["dotnet", f"{repo}/src/Hone.Cli/bin/Release/net10.0/hone.dll"]
def call(*args):
    r = subprocess.run(hone + list(args), capture_output=True, text=True)
    if r.returncode != 0: sys.exit(f"hone {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout
texts = [json.loads(l)["text"] for l in open(f"{run}/data/general/train.jsonl", encoding="utf-8")][:400]
open(f"{work}/calibration.txt", "w", encoding="utf-8").write("\n\n".join(texts))
open(f"{work}/general.txt", "w", encoding="utf-8").write(open(f"{run}/data/general/heldout.txt", encoding="utf-8").read()[:60000])
open(f"{work}/domain.txt", "w", encoding="utf-8").write(open(f"{run}/data/domain/heldout.txt", encoding="utf-8").read()[:60000])
base = f"{run}/base"
layers = json.loads(call("prune", "layers", base, "--data", f"{work}/calibration.txt", "--remove", str(max(1, round(json.load(open(f"{base}/config.json"))["num_hidden_layers"] / 4))),
                         "--out", f"{work}/depth", "--threads", threads, "--json"))
width = json.loads(call("prune", "width", base, "--data", f"{work}/calibration.txt", "--fraction", "0.25", "--out", f"{work}/width", "--threads", threads, "--json"))
perlayer = json.loads(call("prune", "width", base, "--data", f"{work}/calibration.txt", "--fraction", "0.25", "--rotation", "per-layer",
                           "--out", f"{work}/width-per-layer", "--threads", threads, "--json"))
models = [("base", base), (f"{layers['layers_after']} of {layers['layers_before']} layers (removed {layers['removed']})", f"{work}/depth"),
          (f"width {width['width_after']} of {width['width_before']}, one rotation", f"{work}/width"),
          (f"width {perlayer['width_after']} of {perlayer['width_before']}, per-layer rotations + shortcuts", f"{work}/width-per-layer")]
ppl = {}
for label, path in models:
    for text in ("general", "domain"):
        ppl[(label, text)] = json.loads(call("perplexity", path, "-f", f"{work}/{text}.txt", "--threads", threads, "--json"))["ppl"]
tg = {label: [] for label, _ in models}
for _ in range(rounds):
    for label, path in models:
        tg[label].append(json.loads(call("bench", "-m", path, "-p", "64", "-n", "128", "-r", "3", "--threads", threads, "--json"))["gen_tokens_per_s"])
def params(path):
    cfg = json.load(open(f"{path}/config.json"))
    return cfg
print("| model | parameters | general ppl | domain ppl | tg128 tokens/s |")
print("|---|---:|---:|---:|---:|")
counts = {"base": layers["parameters_before"], models[1][0]: layers["parameters_after"], models[2][0]: width["parameters_after"], models[3][0]: perlayer["parameters_after"]}
for label, _ in models:
    print(f"| {label} | {counts[label]:,} | {ppl[(label, 'general')]:.2f} | {ppl[(label, 'domain')]:.1f} | {min(tg[label]):.0f}–{max(tg[label]):.0f} |")
print()
print(f"block influence per layer: {', '.join(f'{x:.3f}' for x in layers['block_influence'])}; width: {width['energy_kept']:.1%} of the residual energy kept "
      f"(one rotation), {perlayer['energy_kept']:.1%} on average over the boundaries (per-layer)")
PY
