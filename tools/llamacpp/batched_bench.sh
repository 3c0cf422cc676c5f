#!/bin/bash
# llama.cpp's batched decoding on this machine: llama-batched-bench on the random SmolLM2-135M-shaped model that
# `hone bench` and check.sh --bench use, written as GGUF by `hone convert`, for the serving table in the README.
# It reports, per number of parallel sequences (npl), prompt processing (all npl prompts of npp tokens in one batch),
# generation (npl sequences each generating ntg tokens, one batched step per token) and both together, in tokens/s.
#
# llama.cpp comes from Debian sid's packages (llama.cpp-tools-extra holds llama-batched-bench), installed into a
# debootstrap chroot as check.sh does. Needs root and network to deb.debian.org the first time; no shared data.
#   tools/llamacpp/batched_bench.sh [--types f32,q8_0] [--npl 1,4,16,64] [--npp 128] [--ntg 128] [--threads 2] [--nice N] [--out DIR]
# --nice -20 runs llama-batched-bench at that priority. ggml's threads spin at every barrier, so on a machine shared
# with busy neighbours a descheduled thread stalls the others, and a high priority does not save 2 threads on 2 busy
# cores: at load 10-13, llama-bench Q8_0 tg32 gave 1.3 tokens/s with -t 2 and 49 with -t 1 (both at nice -20), against
# 112 (tg128, -t 2) on a quiet machine. Numbers at 2 threads need a quiet machine; check the load printed with them.
# Prints the raw tables (with the llama.cpp version and the load); with --out, also keeps them there, one .md per type.
# Environment: HONE_LLAMACPP_ROOT (chroot, default /tmp/hone-llamacpp).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
root=${HONE_LLAMACPP_ROOT:-/tmp/hone-llamacpp}
types=f32,q8_0 npl=1,4,16,64 npp=128 ntg=128 threads=2 out= niceness=0
while [ $# -gt 0 ]; do
  case "$1" in
    --types) types=$2; shift 2 ;;
    --npl) npl=$2; shift 2 ;;
    --npp) npp=$2; shift 2 ;;
    --ntg) ntg=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --nice) niceness=$2; shift 2 ;;
    *) echo "error: unknown argument '$1' (see the comment at the top of $0)"; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "error: needs root (debootstrap and chroot)"; exit 2; }

if [ ! -x "$root/usr/bin/llama-batched-bench" ]; then
  command -v debootstrap > /dev/null || apt-get install -y debootstrap
  echo "installing Debian sid's llama.cpp into $root (a few minutes)..."
  debootstrap --variant=minbase --include=llama.cpp-tools,llama.cpp-tools-extra sid "$root" http://deb.debian.org/debian > "$root.log" 2>&1 \
    || { echo "error: debootstrap failed, see $root.log"; exit 2; }
fi
[ -x "$root/usr/bin/llama-batched-bench" ] || { echo "error: $root has no llama-batched-bench (package llama.cpp-tools-extra)"; exit 2; }
mkdir -p "$root/work"
mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
mountpoint -q "$root/sys" || mount --rbind /sys "$root/sys"
mountpoint -q "$root/dev" || mount --rbind /dev "$root/dev"
work=$(mktemp -d /tmp/hone-llamacpp-batched.XXXXXX)
mountpoint -q "$root/work" && umount "$root/work"
mount --bind "$work" "$root/work"
trap 'umount "$root/work" 2> /dev/null || true; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# Every sequence holds npp + ntg tokens of its own (the prompt is not shared), so the context must hold npl of them.
max_npl=$(tr ',' '\n' <<< "$npl" | sort -n | tail -1)
max_npp=$(tr ',' '\n' <<< "$npp" | sort -n | tail -1)
max_ntg=$(tr ',' '\n' <<< "$ntg" | sort -n | tail -1)
ctx=$((max_npl * (max_npp + max_ntg)))

dotnet build "$repo/src/Hone.Cli" -c Release -v quiet -nologo > /dev/null
hone="$repo/src/Hone.Cli/bin/Release/net10.0/hone.dll"
python3 "$here/make_random_model.py" "$work/smollm2" --shape smollm2-135m > /dev/null
version=$(chroot "$root" llama-batched-bench --version 2>&1 | grep -m1 version || true)
if [ -n "$out" ]; then mkdir -p "$out"; fi
for t in ${types//,/ }; do
  dotnet "$hone" convert "$work/smollm2" --out "$work/smollm2-$t.gguf" --type "$t" > /dev/null
  echo "== $t: nice -n $niceness llama-batched-bench -c $ctx -b 2048 -ub 512 -npp $npp -ntg $ntg -npl $npl -t $threads ($version; $(uptime | sed 's/.*load/load/'))"
  nice -n "$niceness" chroot "$root" llama-batched-bench -m "/work/smollm2-$t.gguf" -c "$ctx" -b 2048 -ub 512 -npp "$npp" -ntg "$ntg" -npl "$npl" \
    -t "$threads" -tb "$threads" > "$work/$t.md" 2> "$work/$t.log" \
    || { echo "error: llama-batched-bench failed on $t:"; tail -20 "$work/$t.log"; exit 1; }
  grep '^|' "$work/$t.md"
  if [ -n "$out" ]; then cp "$work/$t.md" "$out/batched-$t.md"; fi
done
