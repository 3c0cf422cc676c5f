#!/bin/bash
# Peak resident memory of `hone merge` on two random models of SmolLM2-135M's shape (hidden 576, intermediate 1536,
# 30 layers, 9 heads, 3 kv heads, vocab 49152, tied embeddings; f32), against one model's: a hone process's own
# footprint (`hone inspect`'s peak) plus the model's bytes. Peaks are GNU time's "Maximum resident set size".
#   tools/experiments/merge_memory.sh [WORK] [METHOD]      (METHOD: slerp (default), linear, ties, dare_ties, model_stock)
set -euo pipefail
work=${1:-$(mktemp -d)}; method=${2:-slerp}
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
dotnet build "$repo/src/Hone.Cli" -c Release -v quiet -nologo > /dev/null
hone=("dotnet" "$repo/src/Hone.Cli/bin/Release/net10.0/hone.dll")
mkdir -p "$work"
# Three random checkpoints of the shape (LlamaWeights.CreateRandom), written by a small program against the library.
gen="$work/gen"
if [ ! -f "$work/m1/model.safetensors" ]; then
  mkdir -p "$gen"
  cat > "$gen/gen.csproj" <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup><OutputType>Exe</OutputType><TargetFramework>net10.0</TargetFramework><AllowUnsafeBlocks>true</AllowUnsafeBlocks><Nullable>enable</Nullable><ImplicitUsings>enable</ImplicitUsings></PropertyGroup>
  <ItemGroup><ProjectReference Include="$repo/src/Hone/Hone.csproj" /></ItemGroup>
</Project>
XML
  cat > "$gen/Program.cs" <<'CS'
using Hone.Model; using Hone.Tensors; using Hone.Transforms;
var config = new ModelConfig { Architecture = "llama", VocabSize = 49152, HiddenSize = 576, IntermediateSize = 1536, Layers = 30, Heads = 9,
    KvHeads = 3, HeadDim = 64, RotaryDims = 64, TiedEmbeddings = true, RopeTheta = 100000, RmsNormEps = 1e-5f, MaxPositions = 8192 };
for (int i = 0; i < 3; i++)
{
    using var w = LlamaWeights.CreateRandom(config, TensorType.F32, i + 1);
    ModelConverter.Write(w, null, Path.Combine(args[0], $"m{i}"), TensorType.F32, []);
}
CS
  dotnet run -c Release --project "$gen" -- "$work" > /dev/null
fi
case $method in
  slerp) yaml="merge_method: slerp
base_model: m0
models:
  - model: m1
parameters:
  t: [0, 0.5, 1]" ;;
  linear) yaml="merge_method: linear
models:
  - model: m0
    parameters: {weight: 0.5}
  - model: m1
    parameters: {weight: 0.5}" ;;
  model_stock) yaml="merge_method: model_stock
base_model: m0
models:
  - model: m1
  - model: m2" ;;
  *) yaml="merge_method: $method
base_model: m0
models:
  - model: m1
    parameters: {weight: 0.5, density: 0.5}
  - model: m2
    parameters: {weight: 0.5, density: 0.5}" ;;
esac
printf '%s\n' "$yaml" > "$work/$method.yaml"
peak() { /usr/bin/time -v "$@" 2> "$work/time.txt" > /dev/null; grep "Maximum resident" "$work/time.txt" | awk '{print $NF}'; }
model_kb=$(( $(stat -c %s "$work/m0/model.safetensors") / 1024 ))
runtime_kb=$(peak "${hone[@]}" inspect "$work/m0")
start=$(date +%s.%N)
merge_kb=$(peak "${hone[@]}" merge "$work/$method.yaml" --out "$work/merged-$method")
seconds=$(echo "$(date +%s.%N) - $start" | bc)
ratio=$(echo "scale=3; $merge_kb / ($runtime_kb + $model_kb)" | bc)
echo "method $method: model $((model_kb / 1024)) MiB, hone inspect peak $((runtime_kb / 1024)) MiB, merge peak $((merge_kb / 1024)) MiB in ${seconds%.*} s: $ratio x one model's resident memory"
