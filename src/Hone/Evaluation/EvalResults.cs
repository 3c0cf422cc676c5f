using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Tensors;

namespace Hone.Evaluation;

/// <summary>What every result record repeats, so a record read on its own says what produced it.</summary>
public sealed record EvalRunInfo(string Model, string? Adapter, EvalOptions Options, int Context, DateTime StartedUtc);

/// <summary>
/// The results file: {"format": "hone-eval-results", "format_version": 1, "results": [record, ...]} with one
/// self-contained record per task (task, kind, n, metrics with standard errors and how they were computed,
/// protocol, model, adapter, seed, elapsed time, Hone version). Written atomically.
/// </summary>
public static class EvalResults
{
    public const string Format = "hone-eval-results";
    public const int FormatVersion = 1;

    public static string HoneVersion { get; } =
        typeof(EvalResults).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    // Prompts are full of quotes and non-ASCII text: keep them readable in the file.
    public static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>JSON has no NaN or infinity: such a value is written as null.</summary>
    static JsonNode? Number(double? x) => x is double d && double.IsFinite(d) ? d : null;

    public static JsonObject Record(TaskResult r, EvalRunInfo run) => new()
    {
        ["task"] = r.Task,
        ["kind"] = r.Kind,
        ["source"] = r.Source,
        ["n"] = r.Count,
        ["metrics"] = new JsonObject(r.Metrics.Select(m => KeyValuePair.Create(m.Name, (JsonNode?)new JsonObject
        {
            ["value"] = Number(m.Value),
            ["stderr"] = Number(m.StandardError),
            ["stderr_method"] = m.StandardErrorMethod,
            ["higher_is_better"] = m.HigherIsBetter,
        }))),
        ["protocol"] = WithPrecision(r.Protocol, run.Options.Precision),
        ["details"] = r.Details,
        ["model"] = run.Model,
        ["adapter"] = run.Adapter,
        ["seed"] = run.Options.Seed,
        ["limit"] = run.Options.Limit,
        ["context"] = run.Context,
        ["elapsed_seconds"] = Math.Round(r.ElapsedSeconds, 3),
        ["hone_version"] = HoneVersion,
        ["started_utc"] = run.StartedUtc.ToString("yyyy-MM-ddTHH:mm:ssZ"),
    };

    /// <summary>The task's protocol plus how activations met the weights ("exact" or "fast"): the same task run at
    /// another precision gives other numbers, so `eval compare` flags the difference.</summary>
    static JsonObject WithPrecision(JsonObject protocol, ComputePrecision precision)
    {
        var o = (JsonObject)protocol.DeepClone();
        o["precision"] = precision.Name();
        return o;
    }

    public static JsonObject Document(IEnumerable<JsonObject> records) => new()
    {
        ["format"] = Format,
        ["format_version"] = FormatVersion,
        ["results"] = new JsonArray(records.Select(r => (JsonNode)r).ToArray()),
    };

    public static void Write(string path, JsonObject document) => AtomicFile.WriteAllText(path, document.ToJsonString(Indented) + "\n");

    public static List<JsonObject> Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: results file not found", path);
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new FormatException($"{path}: not valid JSON: {e.Message}"); }
        if (root is JsonObject lm && lm["format"] == null && lm["results"] is JsonObject && lm["configs"] is JsonObject)
            throw new FormatException($"{path}: an lm-evaluation-harness results file; this reads Hone's own results (hone eval --format hone, the default)");
        if (root is not JsonObject o || (string?)o["format"] != Format)
            throw new FormatException($"{path}: not a hone eval results file (expected \"format\": \"{Format}\")");
        if ((int?)o["format_version"] is not FormatVersion) throw new FormatException($"{path}: results format version {o["format_version"]} is not supported");
        if (o["results"] is not JsonArray results) throw new FormatException($"{path}: \"results\" must be an array");
        return results.Select((r, i) => r as JsonObject ?? throw new FormatException($"{path}: results[{i}] is not an object")).ToList();
    }
}

/// <summary>One row of a comparison: a task's metric across results files.</summary>
/// <param name="Values">per file: (value, standard error), or null when the file lacks the metric</param>
/// <param name="Deltas">per file after the first: its value minus the first's, the standard error of that difference
/// (√(se₁² + se²), treating the runs as independent) and whether |Δ| exceeds two of them</param>
public sealed record ComparisonRow(string Task, string Metric, bool HigherIsBetter, IReadOnlyList<(double Value, double? StandardError)?> Values,
    IReadOnlyList<(double Delta, double? StandardError, bool Significant)?> Deltas, bool ProtocolDiffers);

/// <summary>Before/after tables over results files: rows are (task, metric) in first-seen order.</summary>
public static class ResultsComparison
{
    public static List<ComparisonRow> Compare(IReadOnlyList<IReadOnlyList<JsonObject>> files)
    {
        if (files.Count < 2) throw new ArgumentException("compare needs at least two results files");
        var keys = new List<(string Task, string Metric)>();
        var lookups = files.Select(records =>
        {
            var map = new Dictionary<(string, string), (double? Value, double? Se, bool Higher, JsonNode? Protocol)>();
            foreach (var r in records)
            {
                string task = (string?)r["task"] ?? throw new FormatException("a result record has no \"task\"");
                if (r["metrics"] is not JsonObject metrics) continue;
                foreach (var (metric, m) in metrics)
                {
                    var key = (task, metric);
                    if (!keys.Contains(key)) keys.Add(key);
                    map[key] = ((double?)m?["value"], (double?)m?["stderr"], (bool?)m?["higher_is_better"] ?? true, r["protocol"]);
                }
            }
            return map;
        }).ToList();
        var rows = new List<ComparisonRow>();
        foreach (var key in keys)
        {
            var present = lookups.Select(l => l.TryGetValue(key, out var e) && e.Value is double ? e : ((double?, double?, bool, JsonNode?)?)null).ToList();
            var values = present.Select(e => e is { } x ? ((double, double?)?)(x.Item1!.Value, x.Item2) : null).ToList();
            var deltas = new List<(double, double?, bool)?>();
            for (int f = 1; f < files.Count; f++)
            {
                if (values[0] is not { } a || values[f] is not { } b) { deltas.Add(null); continue; }
                double delta = b.Item1 - a.Item1;
                double? se = a.Item2 is double sa && b.Item2 is double sb ? Math.Sqrt(sa * sa + sb * sb) : null;
                deltas.Add((delta, se, se is double s && s > 0 && Math.Abs(delta) > 2 * s));
            }
            bool higher = present.FirstOrDefault(e => e != null)?.Item3 ?? true;
            var protocols = present.Where(e => e != null).Select(e => e!.Value.Item4?.ToJsonString()).Distinct().Count();
            rows.Add(new ComparisonRow(key.Task, key.Metric, higher, values, deltas, protocols > 1));
        }
        return rows;
    }
}
