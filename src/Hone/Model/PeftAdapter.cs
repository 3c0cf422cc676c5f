using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Tensors;

namespace Hone.Model;

/// <summary>The adapter_config.json fields we read and write (PEFT's names, type LORA).</summary>
public sealed record PeftAdapterConfig(int Rank, float Alpha, float Dropout, IReadOnlyList<string> TargetModules, bool UseRsLora,
    bool UseDora, string? BaseModel);

/// <summary>
/// LoRA / DoRA adapters in PEFT's on-disk layout: adapter_config.json + adapter_model.safetensors with keys such as
/// base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight [r, in], ...lora_B.weight [out, r] and, for DoRA,
/// ...lora_magnitude_vector [out]. Reads adapters written by PEFT or other tools; refuses settings it would
/// otherwise silently ignore.
/// </summary>
public static unsafe class PeftAdapter
{
    const string Prefix = "base_model.model.";

    public static void Save(string directory, IEnumerable<LoraAdapter> adapters, PeftAdapterConfig config)
    {
        Directory.CreateDirectory(directory);
        var list = adapters.ToList();
        var writer = new SafetensorsWriter();
        writer.SetMetadata("format", "pt");
        foreach (var a in list.OrderBy(a => a.Target, StringComparer.Ordinal))
        {
            string module = Prefix + TensorNames.GgufToHuggingFace(a.Target)![..^".weight".Length];
            var adapter = a;
            writer.Add(new SafetensorsWriter.Tensor(module + ".lora_A.weight", TensorType.F32, [a.Rank, a.In],
                s => s.Write(new ReadOnlySpan<byte>(adapter.A, adapter.Rank * adapter.In * 4))));
            writer.Add(new SafetensorsWriter.Tensor(module + ".lora_B.weight", TensorType.F32, [a.Out, a.Rank],
                s => s.Write(new ReadOnlySpan<byte>(adapter.B, adapter.Out * adapter.Rank * 4))));
            if (a.Dora)
                writer.Add(new SafetensorsWriter.Tensor(module + ".lora_magnitude_vector", TensorType.F32, [a.Out],
                    s => s.Write(new ReadOnlySpan<byte>(adapter.Magnitude, adapter.Out * 4))));
        }
        writer.Write(Path.Combine(directory, "adapter_model.safetensors"));
        var json = new JsonObject
        {
            ["peft_type"] = "LORA",
            ["task_type"] = "CAUSAL_LM",
            ["r"] = config.Rank,
            ["lora_alpha"] = config.Alpha,
            ["lora_dropout"] = config.Dropout,
            ["target_modules"] = new JsonArray(config.TargetModules.Select(t => (JsonNode)t).ToArray()),
            ["use_rslora"] = config.UseRsLora,
            ["use_dora"] = config.UseDora,
            ["base_model_name_or_path"] = config.BaseModel,
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["inference_mode"] = true,
            ["init_lora_weights"] = true,
            ["modules_to_save"] = null,
            ["layers_to_transform"] = null,
            ["layers_pattern"] = null,
            ["rank_pattern"] = new JsonObject(),
            ["alpha_pattern"] = new JsonObject(),
            ["revision"] = null,
        };
        AtomicFile.WriteAllText(Path.Combine(directory, "adapter_config.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    public static PeftAdapterConfig ReadConfig(string directory)
    {
        var path = Path.Combine(directory, "adapter_config.json");
        if (!File.Exists(path)) throw new ModelFormatException(directory, "not an adapter directory: adapter_config.json is missing");
        JsonObject o;
        try { o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new ModelFormatException(path, "not a JSON object"); }
        catch (JsonException e) { throw new ModelFormatException(path, $"not valid JSON: {e.Message}"); }
        string type = o["peft_type"]?.GetValue<string>() ?? "LORA";
        if (type != "LORA") throw new ModelFormatException(path, $"peft_type '{type}' is not supported (only LORA, with use_dora for DoRA)", "peft_type");
        if (o["fan_in_fan_out"] is JsonValue f && f.GetValue<bool>()) throw new ModelFormatException(path, "fan_in_fan_out adapters are not supported (Llama uses nn.Linear)", "fan_in_fan_out");
        string bias = o["bias"]?.GetValue<string>() ?? "none";
        if (bias != "none") throw new ModelFormatException(path, $"bias '{bias}' is not supported (only none)", "bias");
        foreach (var key in new[] { "rank_pattern", "alpha_pattern" })
            if (o[key] is JsonObject pattern && pattern.Count > 0) throw new ModelFormatException(path, "per-module ranks/alphas are not supported", key);
        if (o["modules_to_save"] is JsonArray saved && saved.Count > 0)
            throw new ModelFormatException(path, $"modules_to_save ({string.Join(", ", saved)}) is not supported", "modules_to_save");
        int r = o["r"]?.GetValue<int>() ?? throw new ModelFormatException(path, "missing r", "r");
        float alpha = o["lora_alpha"] is JsonNode a ? (float)a.GetValue<double>() : r;
        if (!float.IsFinite(alpha))
            throw new ModelFormatException(path, $"{o["lora_alpha"]?.ToJsonString()} is not a finite 32-bit number (the scale alpha/r would be {alpha})", "lora_alpha");
        var targets = o["target_modules"] switch
        {
            JsonArray arr => arr.Select(t => t!.GetValue<string>()).ToList(),
            JsonValue v => [v.GetValue<string>()],
            _ => new List<string>(),
        };
        return new PeftAdapterConfig(r, alpha, o["lora_dropout"] is JsonNode d ? (float)d.GetValue<double>() : 0, targets,
            o["use_rslora"] is JsonValue rs && rs.GetValue<bool>(), o["use_dora"] is JsonValue dv && dv.GetValue<bool>(),
            o["base_model_name_or_path"]?.GetValue<string>());
    }

    /// <summary>Load an adapter for a model — a PEFT directory or a llama.cpp LoRA .gguf — with every tensor matched to a
    /// projection and shape-checked.</summary>
    public static Dictionary<string, LoraAdapter> Load(string directory, LlamaWeights weights)
    {
        if (File.Exists(directory)) return LoadGguf(directory, weights);
        var config = ReadConfig(directory);
        var file = Path.Combine(directory, "adapter_model.safetensors");
        if (!File.Exists(file)) throw new ModelFormatException(directory, "adapter_model.safetensors is missing (adapter_model.bin is not supported)");
        var matrices = weights.Matrices().ToDictionary(m => m.Name);
        var adapters = new Dictionary<string, LoraAdapter>();
        using var st = SafetensorsFile.Open(file);
        var parts = new Dictionary<string, Dictionary<string, SafetensorsTensorInfo>>();
        foreach (var t in st.Tensors)
        {
            string name = t.Name.StartsWith(Prefix, StringComparison.Ordinal) ? t.Name[Prefix.Length..] : t.Name;
            string? kind = null, module = null;
            foreach (var suffix in new[] { ".lora_A.weight", ".lora_B.weight", ".lora_magnitude_vector.weight", ".lora_magnitude_vector" })
                if (name.EndsWith(suffix, StringComparison.Ordinal)) { kind = suffix.Split('.')[1]; module = name[..^suffix.Length]; break; }
            string? target = module == null ? null : TensorNames.HuggingFaceToGguf(module + ".weight");
            if (kind == null || target == null || !matrices.ContainsKey(target))
                throw new ModelFormatException(file, "is not a LoRA tensor of a projection of this model", $"tensor '{t.Name}'");
            if (!parts.TryGetValue(target, out var p)) parts[target] = p = new();
            p[kind] = t;
        }
        try
        {
            foreach (var (target, p) in parts)
            {
                var w = matrices[target];
                if (!p.TryGetValue("lora_A", out var ta) || !p.TryGetValue("lora_B", out var tb))
                    throw new ModelFormatException(file, "needs both lora_A and lora_B", $"adapter of '{TensorNames.GgufToHuggingFace(target)}'");
                Expect(file, ta, [config.Rank, w.Cols]);
                Expect(file, tb, [w.Rows, config.Rank]);
                bool dora = p.TryGetValue("lora_magnitude_vector", out var tm);
                if (dora != config.UseDora)
                    throw new ModelFormatException(file, dora ? "has a DoRA magnitude but use_dora is false" : "use_dora is true but the magnitude is missing",
                        $"adapter of '{TensorNames.GgufToHuggingFace(target)}'");
                var adapter = new LoraAdapter(target, config.Rank, w.Cols, w.Rows, config.Alpha, config.UseRsLora, dora) { Source = file };
                adapters[target] = adapter;
                Copy(st, ta, adapter.A);
                Copy(st, tb, adapter.B);
                if (dora)
                {
                    Expect(file, tm!, [w.Rows]);
                    Copy(st, tm!, adapter.Magnitude);
                    adapter.RefreshRowNorm(w);
                }
            }
        }
        catch { foreach (var a in adapters.Values) a.Dispose(); throw; }
        if (adapters.Count == 0) throw new ModelFormatException(file, "holds no adapter tensors");
        return adapters;
    }

    /// <summary>A llama.cpp LoRA GGUF (general.type = adapter): scale alpha/r; q/k lora_b rows are in the adjacent-pair
    /// layout and are permuted back when the base weights use the Hugging Face layout.</summary>
    static Dictionary<string, LoraAdapter> LoadGguf(string path, LlamaWeights weights)
    {
        using var gguf = GgufFile.Open(path);
        if (gguf.GetString("general.type") != "adapter" || gguf.GetString("adapter.type") != "lora")
            throw new ModelFormatException(path, "not a llama.cpp LoRA adapter (general.type must be adapter and adapter.type lora)", "adapter.type");
        var config = weights.Config;
        string? arch = gguf.GetString("general.architecture");
        if (arch != config.GgufArchitecture)
            throw new ModelFormatException(path, $"adapter for architecture '{arch}', the model is '{config.GgufArchitecture}'", "general.architecture");
        float? alpha = gguf.Get("adapter.lora.alpha") is { } a ? (float)a.AsNumber(path, "adapter.lora.alpha") : null;
        if (alpha is float given && !float.IsFinite(given))
            throw new ModelFormatException(path, $"alpha {given} is not a finite number (the adapter's scale alpha/r would be too)", "adapter.lora.alpha");
        bool unpermute = config.GgufArchitecture == "llama" && config.RopeLayout == RopeLayout.Halves;
        var matrices = weights.Matrices().ToDictionary(m => m.Name);
        var adapters = new Dictionary<string, LoraAdapter>();
        try
        {
            foreach (var ta in gguf.Tensors.Where(t => t.Name.EndsWith(".lora_a", StringComparison.Ordinal)))
            {
                string target = ta.Name[..^".lora_a".Length];
                if (!matrices.TryGetValue(target, out var w)) throw new ModelFormatException(path, "is not a projection of this model", $"tensor '{ta.Name}'");
                if (!gguf.TryGetTensor(target + ".lora_b", out var tb)) throw new ModelFormatException(path, "has no matching lora_b", $"tensor '{ta.Name}'");
                int rank = (int)ta.Shape[0];
                if (!ta.Shape.SequenceEqual(new long[] { rank, w.Cols }) || !tb.Shape.SequenceEqual(new long[] { w.Rows, rank }))
                    throw new ModelFormatException(path, $"shapes {string.Join("x", ta.Shape)} / {string.Join("x", tb.Shape)} do not fit [{rank}, {w.Cols}] / [{w.Rows}, {rank}]", $"tensor '{ta.Name}'");
                var adapter = new LoraAdapter(target, rank, w.Cols, w.Rows, alpha ?? rank) { Source = path };
                adapters[target] = adapter;
                WeightRows.DequantizeSegment(ta.Type, gguf.TensorData(ta), 0, rank * w.Cols, adapter.A);
                RequireFinite(path, ta.Name, adapter.A, (long)rank * w.Cols);
                var b = new float[(long)w.Rows * rank];
                fixed (float* pb = b)
                {
                    WeightRows.DequantizeSegment(tb.Type, gguf.TensorData(tb), 0, rank * w.Rows, pb);
                    RequireFinite(path, tb.Name, pb, b.LongLength);
                }
                bool qk = target.Contains(".attn_q.") || target.Contains(".attn_k.");
                for (int row = 0; row < w.Rows; row++)
                {
                    int source = unpermute && qk ? RopePermutation.AdjacentRowForHalvesRow(row, config.HeadDim) : row;
                    b.AsSpan(source * rank, rank).CopyTo(new Span<float>(adapter.B + (long)row * rank, rank));
                }
            }
        }
        catch { foreach (var x in adapters.Values) x.Dispose(); throw; }
        if (adapters.Count == 0) throw new ModelFormatException(path, "holds no lora_a/lora_b tensors");
        return adapters;
    }

    static void Expect(string file, SafetensorsTensorInfo t, long[] shape)
    {
        if (!t.Shape.SequenceEqual(shape))
            throw new ModelFormatException(file, $"shape [{string.Join(", ", t.Shape)}], expected [{string.Join(", ", shape)}]", $"tensor '{t.Name}'");
        if (t.Type is not (TensorType.F32 or TensorType.F16 or TensorType.BF16))
            throw new ModelFormatException(file, $"dtype {t.DType} is not supported (F32, F16, BF16)", $"tensor '{t.Name}'");
    }

    static void Copy(SafetensorsFile st, SafetensorsTensorInfo t, float* destination)
    {
        int n = (int)t.ElementCount;
        WeightRows.DequantizeSegment(t.Type!.Value, st.TensorData(t), 0, n, destination);
        RequireFinite(st.Path, t.Name, destination, n);
    }

    static void RequireFinite(string file, string tensor, float* values, long count)
    {
        for (long i = 0; i < count; i++)
            if (!float.IsFinite(values[i]))
                throw new ModelFormatException(file, $"non-finite value at element {i}", $"tensor '{tensor}'");
    }
}
