using Hone.Formats;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Transforms;

/// <summary>
/// Writes a PEFT LoRA adapter as a llama.cpp LoRA GGUF (general.type = adapter, adapter.type = lora,
/// adapter.lora.alpha as f32; tensors blk.N.attn_q.weight.lora_a [r, in] and .lora_b [out, r]). For llama models the
/// rows of q/k lora_b are permuted exactly like the base q/k weights, so llama.cpp's rope sees the same layout.
/// DoRA has no llama.cpp equivalent and is refused (merge it into the model instead).
/// </summary>
public static unsafe class AdapterGguf
{
    public static void Write(string adapterDirectory, string baseModel, string output, List<string> notes)
    {
        using var checkpoint = Checkpoint.Open(baseModel);
        using var weights = LlamaWeights.Load(checkpoint);
        var config = PeftAdapter.ReadConfig(adapterDirectory);
        if (config.UseDora)
            throw new ArgumentException("llama.cpp has no DoRA adapters: merge the adapter into the model (hone merge-adapter) and convert that");
        var adapters = PeftAdapter.Load(adapterDirectory, weights);
        try
        {
            var c = weights.Config;
            // The layout of our in-memory q/k rows follows the base file; GGUF llama wants adjacent pairs.
            bool permute = c.GgufArchitecture == "llama" && c.RopeLayout == RopeLayout.Halves;
            var w = new GgufWriter();
            w.Set("general.architecture", GgufValue.Of(c.GgufArchitecture));
            w.Set("general.type", GgufValue.Of("adapter"));
            w.Set("general.name", GgufValue.Of(Path.GetFileName(Path.GetFullPath(adapterDirectory).TrimEnd('/'))));
            w.Set("adapter.type", GgufValue.Of("lora"));
            w.Set("adapter.lora.alpha", GgufValue.Of(config.UseRsLora ? config.Alpha * MathF.Sqrt(config.Rank) : config.Alpha));
            if (config.UseRsLora)
                notes.Add("rsLoRA scale alpha/√r written as an equivalent alpha' = alpha·√r (llama.cpp applies alpha'/r)");
            foreach (var (target, a) in adapters.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                var adapter = a;
                bool isQueryOrKey = target.Contains(".attn_q.") || target.Contains(".attn_k.");
                w.Add(new GgufWriter.Tensor(target + ".lora_a", TensorType.F32, [adapter.Rank, adapter.In],
                    s => s.Write(new ReadOnlySpan<byte>(adapter.A, adapter.Rank * adapter.In * 4))));
                w.Add(new GgufWriter.Tensor(target + ".lora_b", TensorType.F32, [adapter.Out, adapter.Rank], s =>
                {
                    for (int row = 0; row < adapter.Out; row++)
                    {
                        int source = permute && isQueryOrKey ? RopePermutation.HalvesRowForAdjacentRow(row, c.HeadDim) : row;
                        s.Write(new ReadOnlySpan<byte>(adapter.B + (long)source * adapter.Rank, adapter.Rank * 4));
                    }
                }));
            }
            w.Write(output);
            notes.Add($"wrote a llama.cpp LoRA adapter: {adapters.Count} projections, rank {config.Rank}, alpha {config.Alpha}");
        }
        finally { foreach (var a in adapters.Values) a.Dispose(); }
    }
}
