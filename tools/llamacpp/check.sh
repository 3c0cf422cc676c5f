#!/bin/bash
# Checks that llama.cpp loads the GGUF files `hone convert` writes and computes what hone computes:
# tokens, greedy text and perplexity, on real weights (stories260K) and random Hugging Face models (llama with the
# Llama-2 and GPT-2 tokenizers, qwen2 with biases and a tied head, the mixtures of experts mixtral and qwen2_moe, and a
# Mixtral that `hone moe build` makes out of two llama models; --only moe runs just the mixtures). With --bench it also runs llama-bench and
# `hone bench` side by side, interleaved, on a random SmolLM2-135M-shaped model written by `hone convert`.
#
# llama.cpp comes from Debian's own package (llama.cpp-tools in sid), installed into a debootstrap chroot, because
# the machine's Debian release has none. Needs root, network to deb.debian.org, and ../shared/data.
#   tools/llamacpp/check.sh [--bench [ROUNDS]]
# Environment: HONE_LLAMACPP_ROOT (chroot, default /tmp/hone-llamacpp), HONE_SHARED_DATA (default ../shared/data).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
root=${HONE_LLAMACPP_ROOT:-/tmp/hone-llamacpp}
shared=${HONE_SHARED_DATA:-$repo/../shared/data}
[ -d "$shared/models/stories260K" ] || { echo "error: shared data not found at $shared (set HONE_SHARED_DATA)"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "error: needs root (debootstrap and chroot)"; exit 2; }

if [ ! -x "$root/usr/bin/llama-perplexity" ]; then
  command -v debootstrap > /dev/null || apt-get install -y debootstrap
  echo "installing Debian sid's llama.cpp into $root (a few minutes)..."
  debootstrap --variant=minbase --include=llama.cpp-tools,llama.cpp-tools-extra sid "$root" http://deb.debian.org/debian > "$root.log" 2>&1 \
    || { echo "error: debootstrap failed, see $root.log"; exit 2; }
fi
mkdir -p "$root/work"
mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
mountpoint -q "$root/sys" || mount --rbind /sys "$root/sys"
mountpoint -q "$root/dev" || mount --rbind /dev "$root/dev"
work=$(mktemp -d /tmp/hone-llamacpp-work.XXXXXX)
mountpoint -q "$root/work" && umount "$root/work"
mount --bind "$work" "$root/work"
trap 'umount "$root/work" 2> /dev/null || true' EXIT

dotnet build "$repo/src/Hone.Cli" -c Release -v quiet -nologo > /dev/null
python3 "$here/check.py" --root "$root" --work "$work" --shared "$shared" \
  --hone "$repo/src/Hone.Cli/bin/Release/net10.0/hone.dll" --tools "$here" "$@"
