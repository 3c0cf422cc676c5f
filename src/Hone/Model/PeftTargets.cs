using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Hone.Formats;

namespace Hone.Model;

/// <summary>
/// Which modules an adapter_config.json targets, with PEFT's semantics: target_modules is a list of module names (a
/// module matches when its full name equals one or ends with "." + one), the string "all-linear" (every linear
/// projection of the layers, not the output head), or any other string, a regular expression the full module name
/// must match entirely. exclude_modules removes modules the same way; layers_to_transform (with layers_pattern) keeps
/// only the listed layer indices of a list's matches. Module names are the base model's ("model.layers.0.self_attn.q_proj",
/// "lm_head"). Absent or null, target_modules is PEFT's default for the architecture (q_proj and v_proj for llama,
/// mistral and qwen2).
/// </summary>
public sealed class PeftTargets
{
    const string AllLinearShorthand = "all-linear";
    static readonly TimeSpan RegexBudget = TimeSpan.FromSeconds(1);
    static readonly string[] LayerProjections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
    static readonly Dictionary<string, string[]> PeftDefaults = new()
    {
        ["llama"] = ["q_proj", "v_proj"], ["mistral"] = ["q_proj", "v_proj"], ["qwen2"] = ["q_proj", "v_proj"],
    };

    /// <summary>Module names or suffixes (a list), or null.</summary>
    public IReadOnlyList<string>? Names { get; private init; }
    /// <summary>A regular expression (or "all-linear") that the whole module name must match, or null.</summary>
    public string? Pattern { get; private init; }
    public IReadOnlyList<string>? ExcludeNames { get; private init; }
    public string? ExcludePattern { get; private init; }
    public IReadOnlyList<int>? Layers { get; private init; }
    public IReadOnlyList<string>? LayersPattern { get; private init; }
    /// <summary>Where the settings came from, for errors (the adapter_config.json path), or null.</summary>
    public string? File { get; private init; }
    /// <summary>The architecture whose PEFT default stands in for an unset target_modules, or null.</summary>
    public string? DefaultFor { get; private init; }

    Regex? _pattern, _exclude;

    public static PeftTargets Of(IEnumerable<string> names) => new() { Names = names.ToArray() };
    public static PeftTargets OfPattern(string pattern) => new() { Pattern = pattern };

    public bool IsAllLinear => Pattern != null && string.Equals(Pattern, AllLinearShorthand, StringComparison.OrdinalIgnoreCase);

    /// <summary>target_modules as adapter_config.json writes it (a list or a string; null when unset).</summary>
    public JsonNode? TargetModulesJson => Pattern != null ? JsonValue.Create(Pattern) : Names != null ? new JsonArray(Names.Select(n => (JsonNode)n).ToArray()) : null;

    public override string ToString()
    {
        string targets = Pattern != null ? $"target_modules \"{Pattern}\""
            : DefaultFor != null ? $"target_modules unset, PEFT's default for {DefaultFor}: [{string.Join(", ", Names!)}]"
            : Names != null ? $"target_modules [{string.Join(", ", Names)}]" : "target_modules unset";
        if (ExcludeNames != null) targets += $", exclude_modules [{string.Join(", ", ExcludeNames)}]";
        if (ExcludePattern != null) targets += $", exclude_modules \"{ExcludePattern}\"";
        if (Layers != null) targets += $", layers_to_transform [{string.Join(", ", Layers)}]";
        if (LayersPattern != null) targets += $", layers_pattern [{string.Join(", ", LayersPattern)}]";
        return targets;
    }

    /// <summary>The names an unset target_modules stands for on this architecture (PEFT's defaults).</summary>
    public PeftTargets ForArchitecture(string architecture)
    {
        if (Names != null || Pattern != null) return this;
        if (!PeftDefaults.TryGetValue(architecture, out var defaults))
            throw new ModelFormatException(File ?? "adapter_config.json", $"target_modules is not given and PEFT has no default for '{architecture}'", "target_modules");
        return new PeftTargets
        {
            Names = defaults, DefaultFor = architecture, ExcludeNames = ExcludeNames, ExcludePattern = ExcludePattern, Layers = Layers, LayersPattern = LayersPattern,
            File = File, _exclude = _exclude,
        };
    }

    /// <summary>Whether the module (a base-model module name, e.g. model.layers.0.self_attn.q_proj) is targeted.</summary>
    public bool Matches(string module)
    {
        if (Excluded(module)) return false;
        // PEFT's all-linear: every nn.Linear but the output head; in a mixture of experts that includes each expert's
        // projections and the router (block_sparse_moe.gate, mlp.gate).
        if (IsAllLinear) return module.StartsWith("model.layers.", StringComparison.Ordinal)
                                && (LayerProjections.Any(p => module.EndsWith("." + p, StringComparison.Ordinal)) || IsMixturePart(module));
        if (Pattern != null) return FullMatch(_pattern ??= Compile(Pattern, "target_modules"), module, "target_modules");
        if (Names == null) throw new InvalidOperationException("target_modules is unset: resolve it for the architecture first");
        if (Names.Contains(module)) return true;
        if (!Names.Any(n => module.EndsWith("." + n, StringComparison.Ordinal))) return false;
        if (Layers == null) return true;
        int? layer = LayerIndex(module);
        return layer is int l && Layers.Contains(l);
    }

    static readonly Regex MixturePart = new(@"\.(block_sparse_moe|mlp)\.(gate|experts\.\d+\.(w1|w2|w3|gate_proj|up_proj|down_proj)|shared_expert\.(gate_proj|up_proj|down_proj))\z",
        RegexOptions.CultureInvariant);

    static bool IsMixturePart(string module) => MixturePart.IsMatch(module);

    /// <summary>Targets that match exactly the given modules and no others: a regular expression over the module names
    /// with layer and expert indices generalized (every layer's and every expert's), for adapters on a mixture of
    /// experts, where PEFT's suffix names are ambiguous (gate_proj is a dense MLP's, every expert's and the shared
    /// expert's in Qwen-MoE).</summary>
    public static PeftTargets Exactly(IEnumerable<string> modules)
    {
        var shapes = modules.Select(m => Regex.Replace(Regex.Escape(m), @"(?<=\\.)\d+(?=\\.)", @"\d+")).Distinct().Order(StringComparer.Ordinal).ToList();
        return OfPattern(string.Join("|", shapes));
    }

    bool Excluded(string module)
    {
        if (ExcludePattern != null) return FullMatch(_exclude ??= Compile(ExcludePattern, "exclude_modules"), module, "exclude_modules");
        return ExcludeNames != null && (ExcludeNames.Contains(module) || ExcludeNames.Any(n => module.EndsWith("." + n, StringComparison.Ordinal)));
    }

    /// <summary>The layer index PEFT reads from a module name: the number after layers_pattern (any component when
    /// there is none), e.g. 3 in model.layers.3.self_attn.q_proj.</summary>
    int? LayerIndex(string module)
    {
        var parts = module.Split('.');
        for (int i = parts.Length - 2; i >= 2; i--)
            if (int.TryParse(parts[i], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int index)
                && (LayersPattern == null || LayersPattern.Count == 0 || LayersPattern.Contains(parts[i - 1])))
                return index;
        return null;
    }

    Regex Compile(string pattern, string field)
    {
        try { return new Regex(@"\A(?:" + pattern + @")\z", RegexOptions.CultureInvariant, RegexBudget); }
        catch (ArgumentException e) { throw new ModelFormatException(File ?? "adapter_config.json", $"not a valid regular expression: {e.Message}", field); }
    }

    bool FullMatch(Regex regex, string module, string field)
    {
        try { return regex.IsMatch(module); }
        catch (RegexMatchTimeoutException) { throw new ModelFormatException(File ?? "adapter_config.json", $"the regular expression takes more than {RegexBudget.TotalSeconds:F0} s on '{module}'", field); }
    }

    /// <summary>Read the targeting fields of an adapter_config.json; each type error names the file and the field.</summary>
    internal static PeftTargets Read(PeftConfigReader r)
    {
        bool targetIsList = r.Node("target_modules") is JsonArray, excludeIsList = r.Node("exclude_modules") is JsonArray;
        foreach (var field in new[] { "target_modules", "exclude_modules" })
            if (r.Node(field) is JsonObject || (r.Node(field) is JsonValue v && v.GetValueKind() != System.Text.Json.JsonValueKind.String))
                throw r.WrongType(field, "a list of module names, \"all-linear\" or a regular expression");
        var targets = new PeftTargets
        {
            File = r.Path,
            Names = targetIsList ? r.StringList("target_modules") : null,
            Pattern = targetIsList ? null : r.String("target_modules"),
            ExcludeNames = excludeIsList ? r.StringList("exclude_modules") : null,
            ExcludePattern = excludeIsList ? null : r.String("exclude_modules"),
            Layers = r.Node("layers_to_transform") is JsonArray ? r.IntList("layers_to_transform") : r.Int("layers_to_transform") is int one ? [one] : null,
            LayersPattern = r.Node("layers_pattern") is JsonArray ? r.StringList("layers_pattern") : r.String("layers_pattern") is string p ? [p] : null,
        };
        if (targets.Pattern != null && targets.Layers != null)
            throw new ModelFormatException(r.Path, "layers_to_transform cannot be used when target_modules is a regular expression (PEFT refuses it too)", "layers_to_transform");
        if (targets.Pattern != null && !targets.IsAllLinear) targets._pattern = targets.Compile(targets.Pattern, "target_modules");
        if (targets.ExcludePattern != null) targets._exclude = targets.Compile(targets.ExcludePattern, "exclude_modules");
        return targets;
    }
}
