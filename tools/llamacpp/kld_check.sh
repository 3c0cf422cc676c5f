#!/bin/bash
# Checks `hone perplexity --kl-divergence` against `llama-perplexity --kl-divergence` on the same GGUF files, text and
# context: stories260K (real weights) as the base and `hone convert` quantizations of it. Both directions of the base
# file: one written by hone and one by llama.cpp, each compared by both tools (mean KLD, same top p and the PPL ratio
# within 5% relative), and the two base files' headers, tokens and stored log-probabilities compared directly.
#
# Uses the Debian llama.cpp chroot that check.sh installs (run check.sh once first). Needs root and ../shared/data.
#   tools/llamacpp/kld_check.sh [--ctx N] [--bytes N] [--types q8_0,q4_0,q4_k,q6_k] [--llama-types Q4_0,Q4_K_M]
#                               [--model MODEL --text FILE]   (another base model and text; default stories260K)
# Environment: HONE_LLAMACPP_ROOT (chroot, default /tmp/hone-llamacpp), HONE_SHARED_DATA (default ../shared/data).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
root=${HONE_LLAMACPP_ROOT:-/tmp/hone-llamacpp}
shared=${HONE_SHARED_DATA:-$repo/../shared/data}
[ -d "$shared/models/stories260K" ] || { echo "error: shared data not found at $shared (set HONE_SHARED_DATA)"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "error: needs root (chroot)"; exit 2; }
[ -x "$root/usr/bin/llama-perplexity" ] || { echo "error: no llama.cpp chroot at $root: run tools/llamacpp/check.sh once to install it"; exit 2; }
mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
mountpoint -q "$root/sys" || mount --rbind /sys "$root/sys"
mountpoint -q "$root/dev" || mount --rbind /dev "$root/dev"
# A mount point of its own (not check.sh's /work), so that both can run at once.
work=$(mktemp -d /tmp/hone-kld-work.XXXXXX)
inside=/kld.$$
mkdir -p "$root$inside"
mount --bind "$work" "$root$inside"
trap 'umount "$root$inside" 2> /dev/null || true; rmdir "$root$inside" 2> /dev/null || true; rm -rf "$work"' EXIT

dotnet build "$repo/src/Hone.Cli" -c Release -v quiet -nologo > /dev/null
python3 "$here/kld_check.py" --root "$root" --work "$work" --inside "$inside" --shared "$shared" \
  --hone "$repo/src/Hone.Cli/bin/Release/net10.0/hone.dll" "$@"
