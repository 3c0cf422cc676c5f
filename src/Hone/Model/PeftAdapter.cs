using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Tensors;

namespace Hone.Model;

/// <summary>The adapter_config.json settings Hone reads and writes (PEFT's LoraConfig names); the kind is the one whose
/// flag the file sets (use_dora for DoRA), plain LoRA when none is set.</summary>
public sealed record PeftAdapterConfig(int Rank, float Alpha, float Dropout, PeftTargets Targets, bool UseRsLora, AdapterKind Kind, string? BaseModel);

/// <summary>
/// Adapters in PEFT's on-disk layout: adapter_config.json + adapter_model.safetensors with keys such as
/// base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight [r, in], ...lora_B.weight [out, r] and whatever else
/// the kind declares (DoRA's ...lora_magnitude_vector [out]). Reads adapters written by PEFT or other tools: the
/// tensors must be exactly those of the declared kind on exactly the projections target_modules names; settings it
/// would otherwise silently ignore are refused. llama.cpp LoRA GGUF adapters load here too.
/// </summary>
public static unsafe class PeftAdapter
{
    const string Prefix = "base_model.model.";

    /// <summary>PEFT settings that make a LoRA variant Hone does not implement (when set and no registered kind claims them).</summary>
    static readonly string[] UnsupportedVariants =
        ["use_qalora", "lora_bias", "layer_replication", "trainable_token_indices", "alora_invocation_tokens", "arrow_config", "target_parameters"];

    /// <summary>The projections an adapter may sit on (every matrix the forward pass applies through Linear: the layers'
    /// projections and an untied output head; in a mixture of experts also each expert's, the shared expert's and the
    /// router — not the shared expert's one-row gate, a vector here), by canonical name.</summary>
    public static IEnumerable<WeightMatrix> Adaptable(LlamaWeights weights) =>
        weights.Matrices().Where(m => m.Name != weights.TokenEmbedding.Name);

    /// <summary>"blk.0.attn_q.weight" → "model.layers.0.self_attn.q_proj", the module name PEFT matches and saves under
    /// (experts and routers as the architecture names them: block_sparse_moe.experts.3.w1 in Mixtral, mlp.experts.3.gate_proj
    /// in Qwen-MoE).</summary>
    public static string ModuleName(string target, string? architecture = null) => TensorNames.GgufToHuggingFace(target, architecture)![..^".weight".Length];

    /// <param name="architecture">the base model's (config.json model_type): how expert and router modules are named</param>
    public static void Save(string directory, IEnumerable<LoraAdapter> adapters, PeftAdapterConfig config, string? architecture = null)
    {
        var list = adapters.OrderBy(a => a.Target, StringComparer.Ordinal).ToList();
        foreach (var a in list)
        {
            if (a.Kind != config.Kind || a.Rank != config.Rank || a.Alpha != config.Alpha || a.RsLora != config.UseRsLora)
                throw new ArgumentException($"adapter of {a.Target} ({a.Kind}, r {a.Rank}, alpha {a.Alpha}, rslora {a.RsLora}) does not fit the config " +
                                            $"({config.Kind}, r {config.Rank}, alpha {config.Alpha}, rslora {config.UseRsLora})");
            if (!config.Targets.Matches(ModuleName(a.Target, architecture)))
                throw new ArgumentException($"adapter of {ModuleName(a.Target, architecture)} is not targeted by {config.Targets}; the saved adapter would not load");
        }
        Directory.CreateDirectory(directory);
        var writer = new SafetensorsWriter();
        writer.SetMetadata("format", "pt");
        foreach (var a in list)
        {
            string module = Prefix + ModuleName(a.Target, architecture);
            foreach (var t in a.Tensors)
            {
                var tensor = t;
                writer.Add(new SafetensorsWriter.Tensor(module + "." + t.PeftName, TensorType.F32, t.PeftShape,
                    s => s.Write(new ReadOnlySpan<byte>(tensor.Values, checked((int)(tensor.Count * 4))))));
            }
        }
        writer.Write(Path.Combine(directory, "adapter_model.safetensors"));
        var json = new JsonObject
        {
            ["peft_type"] = "LORA",
            ["task_type"] = "CAUSAL_LM",
            ["r"] = config.Rank,
            ["lora_alpha"] = config.Alpha,
            ["lora_dropout"] = config.Dropout,
            ["target_modules"] = config.Targets.TargetModulesJson,
            ["use_rslora"] = config.UseRsLora,
            ["base_model_name_or_path"] = config.BaseModel,
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["inference_mode"] = true,
            ["init_lora_weights"] = true,
            ["modules_to_save"] = null,
            ["layers_to_transform"] = config.Targets.Layers is { } layers ? new JsonArray(layers.Select(l => (JsonNode)l).ToArray()) : null,
            ["layers_pattern"] = config.Targets.LayersPattern is { } patterns ? new JsonArray(patterns.Select(p => (JsonNode)p).ToArray()) : null,
            ["rank_pattern"] = new JsonObject(),
            ["alpha_pattern"] = new JsonObject(),
            ["revision"] = null,
        };
        if (config.Targets.ExcludeNames is { } excluded) json["exclude_modules"] = new JsonArray(excluded.Select(e => (JsonNode)e).ToArray());
        else if (config.Targets.ExcludePattern is string exclude) json["exclude_modules"] = exclude;
        // Every registered kind's flag, true for this adapter's kind only (PEFT writes use_dora: false for plain LoRA).
        foreach (var kind in AdapterKinds.All)
            if (kind.ConfigFlag is string flag) json[flag] = kind == config.Kind;
        AtomicFile.WriteAllText(Path.Combine(directory, "adapter_config.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    public static PeftAdapterConfig ReadConfig(string directory)
    {
        var path = Path.Combine(directory, "adapter_config.json");
        if (!File.Exists(path)) throw new ModelFormatException(directory, "not an adapter directory: adapter_config.json is missing");
        var r = PeftConfigReader.Open(path);
        string type = r.String("peft_type") ?? "LORA";
        if (type != "LORA") throw new ModelFormatException(path, $"'{type}' is not supported (only LORA, with its registered variants: {string.Join(", ", AdapterKinds.Names)})", "peft_type");
        if (r.Bool("fan_in_fan_out") == true) throw new ModelFormatException(path, "fan_in_fan_out adapters are not supported (Llama uses nn.Linear)", "fan_in_fan_out");
        string bias = r.String("bias") ?? "none";
        if (bias != "none") throw new ModelFormatException(path, $"'{bias}' is not supported (only none)", "bias");
        foreach (var key in new[] { "rank_pattern", "alpha_pattern" })
            if (r.ObjectCount(key) > 0) throw new ModelFormatException(path, "per-module ranks/alphas are not supported", key);
        if (r.ListCount("modules_to_save") > 0)
            throw new ModelFormatException(path, $"{r.Node("modules_to_save")!.ToJsonString()} is not supported (fully trained extra modules)", "modules_to_save");
        var kind = AdapterKinds.FromFlags(r.Bool, path);
        foreach (var field in UnsupportedVariants)
        {
            if (AdapterKinds.All.Any(k => k.ConfigFlag == field)) continue;
            bool set = r.Node(field) switch
            {
                null => false,
                JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => v.GetValue<bool>(),
                JsonArray a => a.Count > 0,
                JsonObject o => o.Count > 0,
                _ => true,
            };
            if (set) throw new ModelFormatException(path, $"this LoRA variant is not supported (adapter kinds: {string.Join(", ", AdapterKinds.Names)})", field);
        }
        int rank = r.Int("r") ?? throw new ModelFormatException(path, "required field is missing", "r");
        if (rank < 1) throw new ModelFormatException(path, $"expected a positive integer, found {rank}", "r");
        float alpha = (float)(r.Number("lora_alpha") ?? 8);                 // PEFT's default
        if (!float.IsFinite(alpha))
            throw new ModelFormatException(path, $"{r.Node("lora_alpha")?.ToJsonString()} is not a finite 32-bit number (the scale alpha/r would be {alpha})", "lora_alpha");
        float dropout = (float)(r.Number("lora_dropout") ?? 0);
        if (dropout is < 0 or >= 1) throw new ModelFormatException(path, $"expected a number in [0, 1), found {dropout}", "lora_dropout");
        return new PeftAdapterConfig(rank, alpha, dropout, PeftTargets.Read(r), r.Bool("use_rslora") ?? false, kind, r.String("base_model_name_or_path"));
    }

    /// <summary>Load an adapter for a model — a PEFT directory or a llama.cpp LoRA .gguf — with every tensor matched to a
    /// targeted projection and shape-checked, and every targeted projection given its tensors.</summary>
    public static Dictionary<string, LoraAdapter> Load(string directory, LlamaWeights weights)
    {
        if (LoraMixture.IsMixture(directory))
            return LoraMixture.Load(directory, weights).Adapters.ToDictionary(p => p.Key, p => (LoraAdapter)p.Value);
        if (File.Exists(directory)) return LoadGguf(directory, weights);
        var config = ReadConfig(directory);
        var configPath = Path.Combine(directory, "adapter_config.json");
        var file = Path.Combine(directory, "adapter_model.safetensors");
        if (!File.Exists(file)) throw new ModelFormatException(directory, "adapter_model.safetensors is missing (adapter_model.bin is not supported)");
        var targets = config.Targets.ForArchitecture(weights.Config.Architecture);
        var projections = Adaptable(weights).ToDictionary(m => ModuleName(m.Name, weights.Config.Architecture));
        var targeted = projections.Where(p => targets.Matches(p.Key)).ToDictionary(p => p.Key, p => p.Value);
        if (targeted.Count == 0)
            throw new ModelFormatException(configPath, $"{targets} matches no projection of this model (its modules are named like " +
                                                       $"{string.Join(", ", projections.Keys.Where(k => k.StartsWith("model.layers.0.", StringComparison.Ordinal)).DefaultIfEmpty(projections.Keys.FirstOrDefault() ?? ""))})", "target_modules");

        using var st = SafetensorsFile.Open(file);
        var byModule = new Dictionary<string, Dictionary<string, SafetensorsTensorInfo>>();
        foreach (var t in st.Tensors)
        {
            string name = t.Name.StartsWith(Prefix, StringComparison.Ordinal) ? t.Name[Prefix.Length..] : t.Name;
            string? module = ModuleOf(name, projections);
            if (module == null) throw new ModelFormatException(file, "is not a tensor of an adapter on a projection of this model", $"tensor '{t.Name}'");
            if (!targeted.ContainsKey(module))
                throw new ModelFormatException(file, $"{module} is not targeted by {configPath} ({targets})", $"tensor '{t.Name}'");
            if (!byModule.TryGetValue(module, out var parts)) byModule[module] = parts = new(StringComparer.Ordinal);
            if (!parts.TryAdd(name[(module.Length + 1)..], t))
                throw new ModelFormatException(file, $"is given twice (with and without the {Prefix} prefix)", $"tensor '{t.Name}'");
        }
        foreach (var module in targeted.Keys)
            if (!byModule.ContainsKey(module))
                throw new ModelFormatException(file, $"holds no tensors for {module}, which {configPath} targets ({targets})");

        var adapters = new Dictionary<string, LoraAdapter>();
        try
        {
            foreach (var (module, parts) in byModule)
            {
                var w = targeted[module];
                // A and B first, so a damaged rank fails before anything is allocated for it.
                if (!parts.TryGetValue("lora_A.weight", out var ta) || !parts.TryGetValue("lora_B.weight", out var tb))
                    throw new ModelFormatException(file, "needs both lora_A and lora_B", $"adapter of '{module}'");
                Expect(file, ta, [config.Rank, w.Cols]);
                Expect(file, tb, [w.Rows, config.Rank]);
                var adapter = config.Kind.Create(new AdapterShape(w.Name, config.Rank, w.Cols, w.Rows, config.Alpha, config.UseRsLora));
                adapter.Source = file;
                adapters[w.Name] = adapter;
                var used = new HashSet<string>(StringComparer.Ordinal);
                foreach (var tensor in adapter.Tensors)
                {
                    string? found = new[] { tensor.PeftName }.Concat(tensor.PeftAliases ?? []).FirstOrDefault(parts.ContainsKey);
                    if (found == null)
                        throw new ModelFormatException(file, $"is missing: a {config.Kind} adapter ({config.Kind.Declaration} in {configPath}) needs it",
                            $"tensor '{Prefix}{module}.{tensor.PeftName}'");
                    var info = parts[found];
                    Expect(file, info, tensor.PeftShape);
                    Copy(st, info, tensor.Values);
                    used.Add(found);
                }
                foreach (var (suffix, info) in parts)
                    if (!used.Contains(suffix))
                        throw new ModelFormatException(file, $"is not part of a {config.Kind} adapter, which {configPath} declares ({config.Kind.Declaration})", $"tensor '{info.Name}'");
                adapter.Refresh(w);
            }
        }
        catch { foreach (var a in adapters.Values) a.Dispose(); throw; }
        return adapters;
    }

    /// <summary>The projection module a tensor name ("model.layers.0.self_attn.q_proj.lora_A.weight") belongs to: its
    /// longest dotted prefix that names one.</summary>
    static string? ModuleOf(string name, Dictionary<string, WeightMatrix> projections)
    {
        for (int dot = name.LastIndexOf('.'); dot > 0; dot = name.LastIndexOf('.', dot - 1))
            if (projections.ContainsKey(name[..dot])) return name[..dot];
        return null;
    }

    /// <summary>A llama.cpp adapter GGUF (general.type = adapter): its adapter.type names the kind.</summary>
    static Dictionary<string, LoraAdapter> LoadGguf(string path, LlamaWeights weights)
    {
        using var gguf = GgufFile.Open(path);
        if (gguf.GetString("general.type") != "adapter")
            throw new ModelFormatException(path, "not a llama.cpp adapter (general.type must be adapter)", "general.type");
        string type = gguf.GetString("adapter.type") ?? throw new ModelFormatException(path, "required metadata key is missing", "adapter.type");
        var kind = AdapterKinds.ForLlamaCpp(type)
                   ?? throw new ModelFormatException(path, $"'{type}' adapters are not supported (llama.cpp forms: {string.Join(", ", AdapterKinds.All.Where(k => k.LlamaCppType != null).Select(k => k.LlamaCppType))})", "adapter.type");
        var config = weights.Config;
        string? arch = gguf.GetString("general.architecture");
        if (arch != config.GgufArchitecture)
            throw new ModelFormatException(path, $"adapter for architecture '{arch}', the model is '{config.GgufArchitecture}'", "general.architecture");
        return kind.ReadLlamaCpp!(gguf, weights);
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
        if (t.ElementCount > Array.MaxLength)
            throw new ModelFormatException(st.Path, $"{t.ElementCount} elements are more than an adapter tensor may hold ({Array.MaxLength})", $"tensor '{t.Name}'");
        int n = (int)t.ElementCount;
        WeightRows.DequantizeSegment(t.Type!.Value, st.TensorData(t), 0, n, destination);
        RequireFinite(st.Path, t.Name, destination, n);
    }

    internal static void RequireFinite(string file, string tensor, float* values, long count)
    {
        for (long i = 0; i < count; i++)
            if (!float.IsFinite(values[i]))
                throw new ModelFormatException(file, $"non-finite value at element {i}", $"tensor '{tensor}'");
    }
}
