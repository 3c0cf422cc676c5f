using System.Text.Json.Nodes;
using Hone.Inference;
using Hone.Model;
using Hone.Tensors;
using Hone.Tokenization;

namespace Hone.Evaluation;

/// <summary>Run-wide settings from the command line.</summary>
/// <param name="Limit">evaluate only the first N items of each task</param>
/// <param name="Seed">few-shot draws and sampling derive from it</param>
/// <param name="NumFewshot">overrides the tasks' num_fewshot (multiple-choice tasks only)</param>
/// <param name="AllowNetwork">let command checkers run with network access (otherwise they run in a network namespace or not at all)</param>
/// <param name="AllowUnsandboxedCommands">let command checkers run without the filesystem sandbox where none can be made here
/// (otherwise such a task is refused before anything is generated)</param>
/// <param name="Precision">how activations meet the weights: Exact (fp32 activations in every product) unless speed is
/// asked for; recorded in every result's protocol</param>
public sealed record EvalOptions(int? Limit = null, ulong Seed = 1234, int? NumFewshot = null, bool AllowNetwork = false,
    bool AllowUnsandboxedCommands = false, ComputePrecision Precision = ComputePrecision.Exact);

/// <summary>What a task runs against.</summary>
public sealed record EvalContext(LlamaModel Model, Tokenizer Tokenizer, EvalOptions Options, Action<int, int>? Progress = null,
    CancellationToken Cancel = default);

public sealed record MetricResult(string Name, double Value, double? StandardError, string StandardErrorMethod, bool HigherIsBetter);

/// <param name="Count">items evaluated (questions, prompts, problems, documents)</param>
/// <param name="Protocol">everything needed to reproduce the numbers: prompt format, few-shot, normalization, windowing, sampling
/// (settings only, so equal protocols mean comparable numbers)</param>
/// <param name="Details">what happened: counts (truncations, checker outcomes) and the first item worked through</param>
public sealed record TaskResult(string Task, string Kind, string Source, int Count, IReadOnlyList<MetricResult> Metrics, JsonObject Protocol,
    JsonObject Details, double ElapsedSeconds);

/// <summary>A parsed task, ready to run: its definition (the kind's option record, for inspection) and the runner.</summary>
public sealed record EvalTask(string Name, string Kind, string Source, object Definition, Func<EvalContext, TaskResult> Run);

/// <summary>Where a task definition came from: its name, its source (file path or "built-in"), and the folder its
/// relative data paths are resolved against.</summary>
public sealed record TaskOrigin(string Name, string Source, string BaseDirectory)
{
    public string Resolve(string relative) => Path.GetFullPath(relative, BaseDirectory);
}

/// <summary>
/// Reads a task definition object strictly: every key must be known to its kind (an unknown key is an error that
/// names it, so a typo never silently changes what is measured), and every value must have the right type.
/// </summary>
public sealed class TaskSpecReader
{
    readonly JsonObject _o;
    public string Where { get; }

    public TaskSpecReader(JsonObject o, string where) { _o = o; Where = where; }

    public void AllowOnly(IEnumerable<string> keys)
    {
        var known = keys.ToHashSet(StringComparer.Ordinal);
        foreach (var (key, _) in _o)
            if (!known.Contains(key))
                throw new FormatException($"{Where}: unknown key \"{key}\" (known here: {string.Join(", ", known.Order(StringComparer.Ordinal))})");
    }

    public bool Has(string key) => _o.ContainsKey(key) && _o[key] != null;

    public string? String(string key) => _o[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? s) => s,
        _ => throw Bad(key, "a string"),
    };

    public string RequiredString(string key) => String(key) ?? throw new FormatException($"{Where}: \"{key}\" is required");

    public int? Int(string key) => _o[key] switch
    {
        null => null,
        var n when Number(n) is double d && d == Math.Floor(d) && Math.Abs(d) <= int.MaxValue => (int)d,
        _ => throw Bad(key, "an integer"),
    };

    public double? Double(string key) => _o[key] switch
    {
        null => null,
        var n when Number(n) is double d => d,
        _ => throw Bad(key, "a number"),
    };

    /// <summary>A JSON number whether parsed from text or built in code (whose typed values do not convert).</summary>
    static double? Number(JsonNode? n) => n is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.Number
        ? double.Parse(v.ToJsonString(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture)
        : null;

    public bool? Bool(string key) => _o[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out bool b) => b,
        _ => throw Bad(key, "true or false"),
    };

    public string[]? Strings(string key) => _o[key] switch
    {
        null => null,
        JsonArray a => a.Select(n => n is JsonValue v && v.TryGetValue(out string? s) ? s : throw Bad(key, "an array of strings")).ToArray(),
        _ => throw Bad(key, "an array of strings"),
    };

    public int[]? Ints(string key) => _o[key] switch
    {
        null => null,
        JsonValue v when Number(v) is double one && one == Math.Floor(one) && Math.Abs(one) <= int.MaxValue => [(int)one],
        JsonArray a => a.Select(n => Number(n) is double d && d == Math.Floor(d) && Math.Abs(d) <= int.MaxValue ? (int)d : throw Bad(key, "an integer or an array of integers")).ToArray(),
        _ => throw Bad(key, "an integer or an array of integers"),
    };

    public JsonNode? Node(string key) => _o[key];

    public TaskSpecReader? Object(string key) => _o[key] switch
    {
        null => null,
        JsonObject o => new TaskSpecReader(o, $"{Where}: {key}"),
        _ => throw Bad(key, "an object"),
    };

    public Dictionary<string, string>? StringMap(string key) => _o[key] switch
    {
        null => null,
        JsonObject o => o.ToDictionary(p => p.Key, p => p.Value is JsonValue v && v.TryGetValue(out string? s) ? s : throw Bad(key, "an object of strings"), StringComparer.Ordinal),
        _ => throw Bad(key, "an object of strings"),
    };

    FormatException Bad(string key, string what) => new($"{Where}: \"{key}\" must be {what}");
}

/// <summary>Sampling settings in task files ("sampling": {temperature, top_k, top_p, min_p}); the seed comes from --seed.</summary>
public static class TaskSampling
{
    public static readonly string[] Keys = ["temperature", "top_k", "top_p", "min_p"];

    public static SamplerOptions Read(TaskSpecReader? s, SamplerOptions defaults)
    {
        if (s == null) return defaults;
        s.AllowOnly(Keys);
        var o = defaults with
        {
            Temperature = (float)(s.Double("temperature") ?? defaults.Temperature),
            TopK = s.Int("top_k") ?? defaults.TopK,
            TopP = (float)(s.Double("top_p") ?? defaults.TopP),
            MinP = (float)(s.Double("min_p") ?? defaults.MinP),
        };
        try { o.Validate(); }
        catch (ArgumentException e) { throw new FormatException($"{s.Where}: {e.Message}"); }
        return o;
    }

    public static JsonObject Describe(SamplerOptions o) => o.Temperature == 0
        ? new JsonObject { ["mode"] = "greedy (argmax)" }
        : new JsonObject
        {
            ["mode"] = "sampled", ["temperature"] = o.Temperature, ["top_k"] = o.TopK, ["top_p"] = o.TopP, ["min_p"] = o.MinP,
            ["order"] = "top-k, top-p, min-p, temperature (llama.cpp's chain); xoshiro256** seeded per item",
        };

    /// <summary>A per-item seed: splitmix64 over (seed, item, sample) so items are independent and reproducible.</summary>
    public static ulong ItemSeed(ulong seed, int item, int sample = 0) => Xoshiro256.SplitMix64(Xoshiro256.SplitMix64(seed + (ulong)item) + (ulong)sample);

    public const string SeedDescription = "per item: splitmix64(splitmix64(seed + item) + sample)";
}

/// <summary>
/// Task files and built-in names. A task file is a JSON object: {"version": 1, "kind": ..., "data": ..., ...} with the
/// keys of its kind (see each kind's Keys); relative paths are relative to the file. A built-in name maps to the same
/// kind of definition, built in code.
/// </summary>
public static class TaskLoader
{
    public const int FormatVersion = 1;

    static readonly string[] CommonKeys = ["version", "name", "kind", "data", "description"]; // description: free text for people

    /// <summary>The task kinds: their own keys and their parser.</summary>
    public static readonly IReadOnlyDictionary<string, (string[] Keys, Func<TaskSpecReader, TaskOrigin, EvalTask> Parse)> Kinds =
        new Dictionary<string, (string[], Func<TaskSpecReader, TaskOrigin, EvalTask>)>
        {
            ["perplexity"] = (PerplexityTask.Keys, PerplexityTask.Parse),
            ["multiple_choice"] = (MultipleChoiceTask.Keys, MultipleChoiceTask.Parse),
            ["generate"] = (GenerateTask.Keys, GenerateTask.Parse),
            ["sampled"] = (SampledTask.Keys, SampledTask.Parse),
            ["truth_ratio"] = (TruthRatioTask.Keys, TruthRatioTask.Parse),
        };

    /// <summary>A task file path, or a built-in name.</summary>
    public static EvalTask Load(string fileOrName)
    {
        if (File.Exists(fileOrName))
        {
            JsonNode? root;
            try { root = JsonNode.Parse(File.ReadAllText(fileOrName)); }
            catch (System.Text.Json.JsonException e) { throw new FormatException($"{fileOrName}: not valid JSON: {e.Message}"); }
            if (root is not JsonObject o) throw new FormatException($"{fileOrName}: a task file holds one JSON object");
            var full = Path.GetFullPath(fileOrName);
            var name = Path.GetFileNameWithoutExtension(full);
            return Parse(o, new TaskOrigin(name, full, Path.GetDirectoryName(full)!));
        }
        if (BuiltinTasks.TryResolve(fileOrName, out var spec, out var baseDir))
            return Parse(spec, new TaskOrigin(fileOrName, "built-in", baseDir));
        if (fileOrName.EndsWith(".json", StringComparison.OrdinalIgnoreCase) || fileOrName.Contains('/') || fileOrName.Contains('\\'))
            throw new FileNotFoundException($"{fileOrName}: task file not found", fileOrName);
        throw new ArgumentException($"unknown task \"{fileOrName}\": not a task file, nor a built-in name ({BuiltinTasks.Summary})");
    }

    public static EvalTask Parse(JsonObject spec, TaskOrigin origin)
    {
        var r = new TaskSpecReader(spec, origin.Source == "built-in" ? origin.Name : origin.Source);
        int version = r.Int("version") ?? throw new FormatException($"{r.Where}: \"version\" is required (this Hone reads version {FormatVersion})");
        if (version != FormatVersion) throw new FormatException($"{r.Where}: task format version {version} is not supported (this Hone reads version {FormatVersion})");
        string kind = r.RequiredString("kind");
        if (!Kinds.TryGetValue(kind, out var entry))
            throw new FormatException($"{r.Where}: unknown kind \"{kind}\" (known: {string.Join(", ", Kinds.Keys)})");
        r.AllowOnly(CommonKeys.Concat(entry.Keys));
        var named = origin with { Name = r.String("name") ?? origin.Name };
        return entry.Parse(r, named);
    }
}
