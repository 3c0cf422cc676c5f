#!/bin/bash
# hone imatrix and hone convert --imatrix against llama.cpp (Debian's llama.cpp-tools in the chroot check.sh installs):
#  1. interchange: llama-quantize --imatrix loads hone's imatrix; hone convert --imatrix loads llama-imatrix's;
#  2. agreement: hone's per-column mean squares against llama-imatrix's on the same model, text and chunking
#     (llama-imatrix with -ctk f32 -ctv f32 -fa off so its attention is fp32 like hone's; and with its defaults);
#  3. effect: perplexity (hone perplexity, llama.cpp protocol, held-out text) of q8_0/q4_0 on stories260K (on stories
#     it samples itself: in-distribution text) and of
#     q4_k/q6_k on a random 256-wide llama with outlier channels (make_random_model.py --shape kquant), quantized with
#     and without an importance matrix, by hone and by llama-quantize; and hone's importance-weighted rounding error.
# Needs root and an installed chroot (run check.sh once). Uses its own mount point in the chroot (/imx).
#   tools/llamacpp/imatrix_check.sh [WORKDIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
root=${HONE_LLAMACPP_ROOT:-/tmp/hone-llamacpp}
shared=${HONE_SHARED_DATA:-$repo/../shared/data}
work=${1:-$(mktemp -d /tmp/hone-imatrix.XXXXXX)}
[ -x "$root/usr/bin/llama-imatrix" ] || { echo "error: no llama.cpp chroot at $root (run tools/llamacpp/check.sh once)"; exit 2; }
mkdir -p "$work" "$root/imx"
mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
mountpoint -q "$root/imx" && umount "$root/imx"
mount --bind "$work" "$root/imx"
trap 'umount "$root/imx" 2> /dev/null || true' EXIT
dotnet build "$repo/src/Hone.Cli" -c Release -v quiet -nologo > /dev/null
hone() { dotnet "$repo/src/Hone.Cli/bin/Release/net10.0/hone.dll" "$@"; }
llama() { chroot "$root" "$@"; }
cd "$work"

text=$shared/datasets/tinyshakespeare/input.txt
cp "$shared/models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf" s260.gguf
# TinyStories-like text: stories260K's own samples (temperature 1, no truncation), 160 stories from fixed seeds; the
# first 100 calibrate, the last 60 are held out. The random k-quant model reads Shakespeare (first 300 kB / last 100 kB).
if [ ! -s stories-eval.txt ]; then
  for s in $(seq 1 160); do
    hone generate s260.gguf --prompt "" -n 512 --temperature 1 --top-k 0 --top-p 1 --min-p 0 --seed $s --json 2> /dev/null \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["text"].strip()); print()'
  done > stories.txt
  python3 - <<'PY'
parts = [p for p in open("stories.txt", encoding="utf-8").read().split("\n\n") if p.strip()]
open("stories-calib.txt", "w", encoding="utf-8").write("\n\n".join(parts[:100]) + "\n")
open("stories-eval.txt", "w", encoding="utf-8").write("\n\n".join(parts[100:]) + "\n")
PY
fi
head -c 300000 "$text" > kq-calib.txt
tail -c 100000 "$text" > kq-eval.txt
python3 "$here/make_random_model.py" kq-hf --shape kquant --tokenizer "$shared/tokenizers/llama2-hf" --outlier-channels 8 > /dev/null
hone convert kq-hf -o kq.gguf > /dev/null 2>&1
ppl() { hone perplexity "$1" -f $2-eval.txt --ctx 256 --protocol llama.cpp --json 2> /dev/null | python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])'; }
werr() { grep -o 'Σ imp·(w−q)² / Σ imp·w²: [^ ]* (unweighted quantization of the same rows: [^,]*' "$1" | sed 's/.*: \([^ ]*\) (unweighted.*rows: \(.*\)/\1 vs \2 unweighted/' || echo "-"; }

for m in s260 kq; do
  calib=$([ $m = s260 ] && echo stories || echo kq)-calib.txt
  echo "== $m: imatrix, 40 chunks of 256 tokens of $calib"
  hone imatrix $m.gguf --data $calib --out $m-hone.imatrix.gguf --ctx 256 --chunks 40 2>&1 | tail -1
  llama llama-imatrix -m /imx/$m.gguf -f /imx/$calib -o /imx/$m-llama.imatrix.gguf -c 256 --chunks 40 -t "$(nproc)" --no-ppl -ctk f32 -ctv f32 -fa off > $m-llama-imatrix.log 2>&1
  llama llama-imatrix -m /imx/$m.gguf -f /imx/$calib -o /imx/$m-llama-default.imatrix.gguf -c 256 --chunks 40 -t "$(nproc)" --no-ppl > $m-llama-imatrix-default.log 2>&1
  echo "-- agreement with llama-imatrix (fp32 KV cache, no flash attention):"
  python3 "$here/imatrix_compare.py" $m-hone.imatrix.gguf $m-llama.imatrix.gguf --tolerance 1e-3 | tail -3 || true
  echo "-- agreement with llama-imatrix (its defaults: f16 KV cache, flash attention auto):"
  python3 "$here/imatrix_compare.py" $m-hone.imatrix.gguf $m-llama-default.imatrix.gguf --tolerance 1e-3 | tail -2 || true
done

echo "== interchange"
llama llama-quantize --imatrix /imx/s260-hone.imatrix.gguf /imx/s260.gguf /imx/s260-q4_0-lq-honeimx.gguf Q4_0 > lq-hone.log 2>&1 \
  && grep -E "loaded [0-9]+ importance matrix entries" lq-hone.log | sed 's/^/llama-quantize: /'
hone convert s260.gguf -o s260-q4_0-hone-llamaimx.gguf --type q4_0 --type-for '^output\.weight$=q8_0' --imatrix s260-llama.imatrix.gguf --no-verify > hc-llama.log 2>&1 \
  && grep -E "tensors quantized with importance" hc-llama.log | sed 's/^ */hone convert: /'

echo "-- the same importance matrix gives the same bytes (hone convert vs llama-quantize, llama-imatrix's file):"
llama llama-quantize --imatrix /imx/s260-llama.imatrix.gguf /imx/s260.gguf /imx/s260-q4_0-lq-llamaimx.gguf Q4_0 > /dev/null 2>&1
echo "q4_0: $(python3 "$here/gguf_tensors_compare.py" s260-q4_0-hone-llamaimx.gguf s260-q4_0-lq-llamaimx.gguf | tail -1)"
for t in q4_k q6_k; do
  hone convert kq.gguf -o kq-$t-hone-llamaimx.gguf --type $t --type-for '^output\.weight$=q8_0' --imatrix kq-llama.imatrix.gguf --no-verify > /dev/null 2>&1
  llama llama-quantize --pure --output-tensor-type q8_0 --imatrix /imx/kq-llama.imatrix.gguf /imx/kq.gguf /imx/kq-$t-lq-llamaimx.gguf $(echo $t | tr a-z A-Z) > /dev/null 2>&1
  echo "$t: $(python3 "$here/gguf_tensors_compare.py" kq-$t-hone-llamaimx.gguf kq-$t-lq-llamaimx.gguf | tail -1)"
done

echo "== stories260K (width 64: q8_0 and q4_0; llama-quantize's Q4_0 keeps output.weight at q8_0, and so does --type-for here)"
printf "%-40s %10s  %s\n" model perplexity "importance-weighted error (hone)"
printf "%-40s %10s\n" f32 "$(ppl s260.gguf stories)"
for t in q8_0 q4_0; do
  hone convert s260.gguf -o s260-$t-hone.gguf --type $t --type-for '^output\.weight$=q8_0' --no-verify > /dev/null 2>&1
  hone convert s260.gguf -o s260-$t-hone-imx.gguf --type $t --type-for '^output\.weight$=q8_0' --imatrix s260-hone.imatrix.gguf --no-verify > s260-$t-imx.log 2>&1
  T=$(echo $t | tr a-z A-Z)
  llama llama-quantize /imx/s260.gguf /imx/s260-$t-lq.gguf $T > /dev/null 2>&1
  llama llama-quantize --imatrix /imx/s260-llama.imatrix.gguf /imx/s260.gguf /imx/s260-$t-lq-imx.gguf $T > /dev/null 2>&1
  printf "%-40s %10s\n" "$t hone" "$(ppl s260-$t-hone.gguf stories)"
  printf "%-40s %10s  %s\n" "$t hone --imatrix (hone's)" "$(ppl s260-$t-hone-imx.gguf stories)" "$(werr s260-$t-imx.log)"
  printf "%-40s %10s\n" "$t llama-quantize" "$(ppl s260-$t-lq.gguf stories)"
  printf "%-40s %10s\n" "$t llama-quantize --imatrix (llama's)" "$(ppl s260-$t-lq-imx.gguf stories)"
done

echo "== random 256-wide llama with 8 outlier channels (k-quants; output.weight at q8_0 on both sides, llama-quantize --pure)"
printf "%-40s %10s  %s\n" model perplexity "importance-weighted error (hone)"
printf "%-40s %10s\n" f32 "$(ppl kq.gguf kq)"
for t in q4_k q6_k; do
  hone convert kq.gguf -o kq-$t-hone.gguf --type $t --type-for '^output\.weight$=q8_0' --no-verify > /dev/null 2>&1
  hone convert kq.gguf -o kq-$t-hone-imx.gguf --type $t --type-for '^output\.weight$=q8_0' --imatrix kq-hone.imatrix.gguf --no-verify > kq-$t-imx.log 2>&1
  T=$(echo $t | tr a-z A-Z)
  llama llama-quantize --pure --output-tensor-type q8_0 /imx/kq.gguf /imx/kq-$t-lq.gguf $T > /dev/null 2>&1
  llama llama-quantize --pure --output-tensor-type q8_0 --imatrix /imx/kq-llama.imatrix.gguf /imx/kq.gguf /imx/kq-$t-lq-imx.gguf $T > /dev/null 2>&1
  printf "%-40s %10s\n" "$t hone" "$(ppl kq-$t-hone.gguf kq)"
  printf "%-40s %10s  %s\n" "$t hone --imatrix (hone's)" "$(ppl kq-$t-hone-imx.gguf kq)" "$(werr kq-$t-imx.log)"
  printf "%-40s %10s\n" "$t llama-quantize" "$(ppl kq-$t-lq.gguf kq)"
  printf "%-40s %10s\n" "$t llama-quantize --imatrix (llama's)" "$(ppl kq-$t-lq-imx.gguf kq)"
done
hone convert kq.gguf -o kq-q4_k_m-hone-imx.gguf --type q4_k_m --imatrix kq-hone.imatrix.gguf --no-verify > kq-q4_k_m.log 2>&1
llama llama-quantize --imatrix /imx/kq-llama.imatrix.gguf /imx/kq.gguf /imx/kq-q4_k_m-lq-imx.gguf Q4_K_M > /dev/null 2>&1
printf "%-40s %10s  %s\n" "q4_k_m hone --imatrix" "$(ppl kq-q4_k_m-hone-imx.gguf kq)" "$(werr kq-q4_k_m.log)"
printf "%-40s %10s\n" "q4_k_m llama-quantize --imatrix" "$(ppl kq-q4_k_m-lq-imx.gguf kq)"
echo "work directory: $work"
