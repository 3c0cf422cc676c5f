using System.Globalization;
using System.Reflection;
using System.Text;
using Hone.Formats;

namespace Hone.Training;

public enum TrainingStage { Cpt, Sft }

/// <summary>
/// Every option of a training run. A recipe file (flat YAML: `key: value`, lists as `[a, b]` or `- item` lines,
/// `#` comments) holds any of them under their snake_case names; unknown keys are rejected. Command-line flags
/// override the recipe.
/// </summary>
public sealed record TrainOptions
{
    public string Model { get; init; } = "";
    public string Data { get; init; } = "";
    public string? ValData { get; init; }
    /// <summary>sft: plain documents (as for cpt, every token a target) mixed into the training examples, to hold on to
    /// general ability while specializing (replay against forgetting); never part of validation.</summary>
    public string? ReplayData { get; init; }
    public string Out { get; init; } = "";
    public TrainingMethod Method { get; init; } = TrainingMethod.Lora;
    public TrainingStage Stage { get; init; } = TrainingStage.Sft;
    public double Epochs { get; init; } = 1;
    /// <summary>Optimizer steps; 0 = derived from epochs.</summary>
    public int MaxSteps { get; init; }
    public float Lr { get; init; } = 2e-4f;
    public int BatchSize { get; init; } = 4;
    public int GradAccum { get; init; } = 1;
    public int SeqLen { get; init; } = 256;
    public int LoraR { get; init; } = 8;
    public float LoraAlpha { get; init; } = 16;
    public float LoraDropout { get; init; }
    public IReadOnlyList<string> LoraTargets { get; init; } = ["all-linear"];
    public bool UseRslora { get; init; }
    /// <summary>The kind of adapter lora and qlora train (a registered kind: lora, dora, ...); null: lora (dora with method dora).</summary>
    public string? AdapterKind { get; init; }
    /// <summary>Storage of the frozen base for qlora: q8_0, q4_0 or q4_k.</summary>
    public string QloraType { get; init; } = "q4_0";
    public int FreezeTrainableLayers { get; init; } = 2;
    public IReadOnlyList<string> FreezeTrainableModules { get; init; } = [];
    public IReadOnlyList<string> FreezeExtraModules { get; init; } = [];
    public ulong Seed { get; init; } = 42;
    public int Threads { get; init; }
    public int SaveEvery { get; init; } = 100;
    public int KeepCheckpoints { get; init; } = 3;
    /// <summary>"auto" (latest checkpoint in Out, if any), a checkpoint directory, or null for a fresh run.</summary>
    public string? Resume { get; init; }
    public int EvalEvery { get; init; } = 50;
    /// <summary>Fraction of the data held out for validation when no ValData is given (0 = none).</summary>
    public double ValSplit { get; init; } = 0.05;
    /// <summary>Stop after this many validations without improvement (0 = never).</summary>
    public int EarlyStoppingPatience { get; init; }
    public int WarmupSteps { get; init; } = -1;
    public double WarmupRatio { get; init; } = 0.03;
    public LearningRateSchedule Schedule { get; init; } = LearningRateSchedule.Cosine;
    public float MinLrRatio { get; init; }
    public float WeightDecay { get; init; }
    public float MaxGradNorm { get; init; } = 1f;
    /// <summary>Pack examples into full windows (default: on for cpt, off for sft).</summary>
    public bool? Packing { get; init; }
    public bool TrainOnPrompt { get; init; }
    public bool SkipBadLines { get; init; }
    public bool CheckpointActivations { get; init; }
    public int LogEvery { get; init; } = 1;
    /// <summary>A Jinja chat template file to use instead of the model's.</summary>
    public string? Template { get; init; }

    public AdapterSettings AdapterSettings => new(LoraR, LoraAlpha, LoraDropout, LoraTargets, UseRslora, AdapterKind);
    public bool UsesAdapters => Setup.UsesAdapters;
    /// <summary>The setup these options train with (what trains, the adapter settings and kind, the freeze settings).</summary>
    public TrainingSetup Setup => new(Method, AdapterSettings, new FreezeSettings(FreezeTrainableLayers, FreezeTrainableModules, FreezeExtraModules),
        CheckpointActivations, Seed);

    public TrainOptions Validate()
    {
        void Require(bool ok, string message) { if (!ok) throw new ArgumentException(message); }
        Require(Model.Length > 0, "a model is required");
        Require(Data.Length > 0, "training data is required (--data)");
        Require(Out.Length > 0, "an output directory is required (--out)");
        Require(Epochs > 0 || MaxSteps > 0, "epochs or max_steps must be positive");
        Require(Lr > 0 && float.IsFinite(Lr), $"lr must be positive, got {Lr}");
        Require(BatchSize >= 1, $"batch_size must be at least 1, got {BatchSize}");
        Require(GradAccum >= 1, $"grad_accum must be at least 1, got {GradAccum}");
        Require(SeqLen >= 2, $"seq_len must be at least 2, got {SeqLen}");
        Require(LoraR >= 1, $"lora_r must be at least 1, got {LoraR}");
        Require(LoraDropout is >= 0 and < 1, $"lora_dropout must be in [0, 1), got {LoraDropout}");
        Require(ValSplit is >= 0 and < 1, $"val_split must be in [0, 1), got {ValSplit}");
        Require(SaveEvery >= 0 && KeepCheckpoints >= 1, "save_every must be ≥ 0 and keep_checkpoints ≥ 1");
        Require(QloraType is "q8_0" or "q4_0" or "q4_k", $"qlora_type must be q8_0, q4_0 or q4_k, got {QloraType}");
        _ = AdapterSettings.ResolvedTargets;
        Require(AdapterKind == null || UsesAdapters, $"adapter_kind {AdapterKind} needs method lora or qlora, not {Method.ToString().ToLowerInvariant()}");
        _ = Setup.AdapterKind; // an unknown kind, or one that contradicts the method, fails here
        return this;
    }

    // ---- recipe files ---------------------------------------------------------------------------

    static readonly Dictionary<string, PropertyInfo> Keys = typeof(TrainOptions).GetProperties()
        .Where(p => p.CanWrite).ToDictionary(p => SnakeCase(p.Name));

    public static IReadOnlyCollection<string> RecipeKeys => Keys.Keys;

    static string SnakeCase(string name)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < name.Length; i++)
        {
            if (char.IsUpper(name[i]) && i > 0) sb.Append('_');
            sb.Append(char.ToLowerInvariant(name[i]));
        }
        return sb.ToString();
    }

    /// <summary>Apply a recipe file on top of <paramref name="baseline"/>. Unknown keys, bad values and unsupported
    /// YAML are errors naming the file and line.</summary>
    public static TrainOptions FromRecipe(string path, TrainOptions baseline)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: recipe file not found", path);
        var values = FlatYaml.Parse(path);
        object boxed = baseline with { };
        foreach (var (key, (value, line)) in values)
        {
            if (!Keys.TryGetValue(key, out var prop))
                throw new ModelFormatException(path, $"line {line}: unknown key '{key}'; known keys: {string.Join(", ", Keys.Keys.Order())}");
            try { prop.SetValue(boxed, ConvertValue(value, prop.PropertyType)); }
            catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
            {
                throw new ModelFormatException(path, $"line {line}: {key}: {e.Message}");
            }
        }
        return (TrainOptions)boxed;
    }

    static object? ConvertValue(object value, Type type)
    {
        var underlying = Nullable.GetUnderlyingType(type);
        if (underlying != null) return value is string s && s is "null" or "~" ? null : ConvertValue(value, underlying);
        if (type == typeof(IReadOnlyList<string>))
            return value is List<string> list ? list : ((string)value).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        if (value is List<string>) throw new FormatException($"expected a single value, found a list");
        string text = (string)value;
        if (type == typeof(string)) return text;
        if (type == typeof(bool)) return text switch
        {
            "true" or "True" or "yes" => true,
            "false" or "False" or "no" => false,
            _ => throw new FormatException($"expected true or false, found '{text}'"),
        };
        if (type.IsEnum)
        {
            foreach (var n in Enum.GetNames(type))
                if (string.Equals(n, text.Replace("_", ""), StringComparison.OrdinalIgnoreCase)) return Enum.Parse(type, n);
            throw new FormatException($"expected one of {string.Join(", ", Enum.GetNames(type).Select(n => n.ToLowerInvariant()))}, found '{text}'");
        }
        return Convert.ChangeType(text, type, CultureInfo.InvariantCulture);
    }
}

/// <summary>The YAML subset recipes use: `key: scalar`, `key: [a, b]`, `key:` followed by `- item` lines, comments.
/// Anything else (nesting, anchors, multi-line strings) is an error naming the line.</summary>
public static class FlatYaml
{
    public static Dictionary<string, (object Value, int Line)> Parse(string path)
    {
        var result = new Dictionary<string, (object, int)>();
        var lines = File.ReadAllLines(path);
        string? listKey = null;
        int listLine = 0;
        List<string>? list = null;
        for (int i = 0; i < lines.Length; i++)
        {
            string raw = StripComment(lines[i]);
            if (raw.Trim().Length == 0) continue;
            int lineNumber = i + 1;
            string trimmed = raw.Trim();
            if (trimmed.StartsWith("- ") || trimmed == "-")
            {
                if (list == null) throw new ModelFormatException(path, $"line {lineNumber}: a list item outside a list");
                list.Add(Unquote(trimmed[1..].Trim()));
                continue;
            }
            if (list != null) { result[listKey!] = (list, listLine); list = null; listKey = null; }
            if (char.IsWhiteSpace(raw[0])) throw new ModelFormatException(path, $"line {lineNumber}: nested mappings are not supported in recipes");
            int colon = trimmed.IndexOf(':');
            if (colon <= 0) throw new ModelFormatException(path, $"line {lineNumber}: expected 'key: value'");
            string key = trimmed[..colon].Trim();
            string value = trimmed[(colon + 1)..].Trim();
            if (result.ContainsKey(key)) throw new ModelFormatException(path, $"line {lineNumber}: '{key}' is given twice");
            if (value.Length == 0) { listKey = key; listLine = lineNumber; list = new List<string>(); continue; }
            if (value.StartsWith('[') && value.EndsWith(']'))
                result[key] = (value[1..^1].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Unquote).ToList(), lineNumber);
            else if (value.StartsWith('{') || value.StartsWith('&') || value.StartsWith('*') || value.StartsWith('|') || value.StartsWith('>'))
                throw new ModelFormatException(path, $"line {lineNumber}: '{value[0]}' values are not supported in recipes");
            else result[key] = (Unquote(value), lineNumber);
        }
        if (list != null) result[listKey!] = (list, listLine);
        return result;
    }

    static string StripComment(string line)
    {
        bool single = false, dbl = false;
        for (int i = 0; i < line.Length; i++)
        {
            char c = line[i];
            if (c == '\'' && !dbl) single = !single;
            else if (c == '"' && !single) dbl = !dbl;
            else if (c == '#' && !single && !dbl && (i == 0 || char.IsWhiteSpace(line[i - 1]))) return line[..i];
        }
        return line;
    }

    static string Unquote(string s) =>
        s.Length >= 2 && ((s[0] == '"' && s[^1] == '"') || (s[0] == '\'' && s[^1] == '\'')) ? s[1..^1] : s;
}
