#!/bin/bash
# hone bench --train and the PyTorch peer (pytorch_train.py) interleaved on the same machine, same shape and batch:
#   tools/peers/train_side_by_side.sh [ROUNDS] [METHODS]     e.g. tools/peers/train_side_by_side.sh 3 "lora full"
# Prints each run and, per method, the median tokens/s and peak RSS of each side and their ratio.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
rounds=${1:-3}; methods=${2:-"lora full"}
/usr/bin/python3 -c "import torch" 2> /dev/null || { echo "error: needs Debian's PyTorch: apt-get install python3-torch libopenblas0-pthread"; exit 2; }
dotnet build "$repo/src/Hone.Cli" -c Release -v quiet -nologo > /dev/null
hone="$repo/src/Hone.Cli/bin/Release/net10.0/hone.dll"
log=$(mktemp)
for r in $(seq "$rounds"); do
  for m in $methods; do
    h=$(dotnet "$hone" bench --train "$m" --threads 2 -r 3 --json 2> /dev/null)
    p=$(/usr/bin/python3 "$here/pytorch_train.py" --method "$m" --threads 2 --steps 3 --json)
    echo "hone $m $(echo "$h" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["tokens_per_s"], d["peak_rss_bytes"])')" | tee -a "$log"
    echo "pytorch $m $(echo "$p" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["tokens_per_s"], d["peak_rss_bytes"])')" | tee -a "$log"
  done
done
python3 - "$log" <<'PY'
import sys, statistics, collections
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    who, m, t, rss = line.split(); d[(who, m)].append((float(t), int(rss)))
for m in dict.fromkeys(k[1] for k in d):
    h = statistics.median(t for t, _ in d[("hone", m)]); p = statistics.median(t for t, _ in d[("pytorch", m)])
    hr = max(r for _, r in d[("hone", m)]) / 2**30; pr = max(r for _, r in d[("pytorch", m)]) / 2**30
    print(f"{m}: hone {h:.0f} tokens/s ({hr:.2f} GiB)  pytorch {p:.0f} tokens/s ({pr:.2f} GiB)  ratio {h / p:.2f}  "
          f"(all hone {[round(t) for t, _ in d[('hone', m)]]}, pytorch {[round(t) for t, _ in d[('pytorch', m)]]})")
PY
