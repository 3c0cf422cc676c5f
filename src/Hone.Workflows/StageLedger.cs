using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Formats;

namespace Hone.Workflows;

/// <summary>
/// Which stages of a workflow have finished, so that running it again skips them: one JSON file of stage records, each
/// with the key of the settings it ran with (a stage whose key changed runs again), its seconds and its result. A stage
/// is recorded only once its body returns, and the file is rewritten whole through a temporary name, so an interrupted
/// stage runs again from the start.
/// </summary>
public sealed class StageLedger
{
    readonly string path;
    readonly JsonObject stages;
    readonly Action<string> log;

    public StageLedger(string path, Action<string> log)
    {
        this.path = path;
        this.log = log;
        stages = new JsonObject();
        if (!File.Exists(path)) return;
        try
        {
            if (JsonNode.Parse(File.ReadAllText(path))?["stages"] is JsonObject saved) stages = (JsonObject)saved.DeepClone();
        }
        catch (JsonException e)
        {
            // A damaged ledger only costs the time of the stages again.
            log($"   {path}: not valid JSON ({e.Message}); every stage runs again");
        }
    }

    /// <summary>Every stage run or skipped in this process, with its seconds (a skipped stage's from when it ran).</summary>
    public List<(string Stage, TimeSpan Time, bool Skipped)> Stages { get; } = [];

    /// <summary>Seconds of every recorded stage, as they ran.</summary>
    public double RecordedSeconds => stages.Select(s => s.Value?["seconds"] is JsonValue v && v.TryGetValue(out double d) ? d : 0).Sum();

    /// <summary>Runs <paramref name="body"/> unless a stage of this name finished with the same key; returns its result
    /// (the recorded one when skipped).</summary>
    public JsonNode? Run(string name, string key, Func<JsonNode?> body, CancellationToken cancel)
    {
        cancel.ThrowIfCancellationRequested();
        if (stages[name] is JsonObject done && (string?)done["key"] == key)
        {
            double seconds = done["seconds"] is JsonValue v && v.TryGetValue(out double d) ? d : 0;
            log($"== {name}: finished earlier ({seconds:F1} s then), skipped");
            Stages.Add((name, TimeSpan.FromSeconds(seconds), true));
            return done["result"]?.DeepClone();
        }
        log($"== {name}");
        var clock = Stopwatch.StartNew();
        // Through its text, so that a stage's result reads the same run or skipped (numbers convert to any numeric type).
        var result = body() is JsonNode produced ? JsonNode.Parse(produced.ToJsonString()) : null;
        // A training stopped by Ctrl-C returns normally with its checkpoint: it is not finished.
        cancel.ThrowIfCancellationRequested();
        stages[name] = new JsonObject { ["key"] = key, ["seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 1), ["result"] = result?.DeepClone() };
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        AtomicFile.WriteAllText(path, new JsonObject { ["version"] = 1, ["stages"] = stages.DeepClone() }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        log($"   ({clock.Elapsed.TotalSeconds:F1} s)");
        Stages.Add((name, clock.Elapsed, false));
        return result;
    }
}
