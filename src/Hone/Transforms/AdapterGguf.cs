using Hone.Formats;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Transforms;

/// <summary>
/// Writes a PEFT adapter as a llama.cpp adapter GGUF (general.type = adapter, adapter.type from the kind — lora —,
/// adapter.lora.alpha as f32; the tensors are the kind's: blk.N.attn_q.weight.lora_a [r, in] and .lora_b [out, r]).
/// A kind llama.cpp has no form of (DoRA) is refused with the kind's reason, before anything is loaded.
/// </summary>
public static unsafe class AdapterGguf
{
    /// <param name="cancel">stops the export between tensors; the output is written through a temporary, so nothing is
    /// left behind (exit through <see cref="OperationCanceledException"/>)</param>
    public static void Write(string adapterDirectory, string baseModel, string output, List<string> notes, CancellationToken cancel = default)
    {
        var config = PeftAdapter.ReadConfig(adapterDirectory);
        if (config.Kind.LlamaCppType is not string adapterType)
            throw new ArgumentException($"{Path.Combine(adapterDirectory, "adapter_config.json")}: {config.Kind.Declaration}: {config.Kind.WhyNoLlamaCpp}");
        using var checkpoint = Checkpoint.Open(baseModel);
        using var weights = LlamaWeights.Load(checkpoint);
        var adapters = PeftAdapter.Load(adapterDirectory, weights);
        try
        {
            if (adapters.Keys.FirstOrDefault(IsMixturePart) is string part)
                throw new ArgumentException($"{adapterDirectory}: the adapter sits on {part}, part of a mixture of experts' sparse layer, which Hone does not " +
                                            "export to llama.cpp's adapter form (stacked per-expert tensors); fold it into the model with hone merge-adapter and convert that instead");
            var c = weights.Config;
            // The layout of our in-memory q/k rows follows the base file; GGUF llama wants adjacent pairs.
            bool permute = c.GgufArchitecture == "llama" && c.RopeLayout == RopeLayout.Halves;
            var w = new GgufWriter();
            w.Set("general.architecture", GgufValue.Of(c.GgufArchitecture));
            w.Set("general.type", GgufValue.Of("adapter"));
            w.Set("general.name", GgufValue.Of(Path.GetFileName(Path.GetFullPath(adapterDirectory).TrimEnd('/'))));
            w.Set("adapter.type", GgufValue.Of(adapterType));
            w.Set("adapter.lora.alpha", GgufValue.Of(config.UseRsLora ? config.Alpha * MathF.Sqrt(config.Rank) : config.Alpha));
            if (config.UseRsLora)
                notes.Add("rsLoRA scale alpha/√r written as an equivalent alpha' = alpha·√r (llama.cpp applies alpha'/r)");
            foreach (var (_, adapter) in adapters.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                foreach (var tensor in adapter.LlamaCppTensors(permute, c.HeadDim))
                    w.Add(tensor with { WriteData = s => { cancel.ThrowIfCancellationRequested(); tensor.WriteData(s); } });
            cancel.ThrowIfCancellationRequested();
            w.Write(output);
            notes.Add($"wrote a llama.cpp LoRA adapter ({adapterType}): {adapters.Count} projections, rank {config.Rank}, alpha {config.Alpha}");
        }
        finally { foreach (var a in adapters.Values) a.Dispose(); }
    }

    static bool IsMixturePart(string target) =>
        TensorNames.TryParseGguf(target, out var p) && p.Role is TensorRole.ExpertRouter or TensorRole.ExpertGate or TensorRole.ExpertUp or TensorRole.ExpertDown
            or TensorRole.SharedExpertGate or TensorRole.SharedExpertUp or TensorRole.SharedExpertDown;
}
