using System.Text.Json.Nodes;
using Hone.Formats;

namespace Hone.DataTools;

/// <param name="Validation">the expected share of records (or groups) in the validation file</param>
/// <param name="By">a field whose value keeps records together: all records with equal values go to the same side</param>
public sealed record DataSplitOptions(string Input, string TrainOutput, string ValidationOutput, double Validation = 0.1, ulong Seed = 0,
    string? By = null, bool SkipBadLines = false, int Threads = 0);

public sealed record DataSplitResult(string File, string TrainOutput, string ValidationOutput, long Records, long Train, long Validation,
    double ValidationShare, ulong Seed, string? By, long BadLines, IReadOnlyList<string> BadLineExamples, double Seconds)
{
    public JsonObject ToJson() => new()
    {
        ["file"] = File, ["train_output"] = TrainOutput, ["validation_output"] = ValidationOutput, ["records"] = Records,
        ["train"] = Train, ["validation"] = Validation, ["validation_share"] = Records == 0 ? 0 : (double)Validation / Records,
        ["requested_validation_share"] = ValidationShare, ["seed"] = Seed, ["by"] = By,
        ["bad_lines"] = BadLines, ["bad_line_examples"] = DataJson.Strings(BadLineExamples), ["seconds"] = Seconds,
    };
}

/// <summary>
/// <c>hone data split</c>: one pass, two outputs committed together. Record k (0-based among the non-blank lines,
/// bad ones included, so skipping a bad line moves nothing else) goes to validation when
/// unit(mix(mix(seed) ⊕ k)) &lt; share; with By, the hash of the field's value (its string, or the JSON text of another
/// value) takes the place of k, so a group lands on one side. The same seed gives the same split on any machine; the
/// validation size is binomial around share × records (or groups). Memory: the read batch only.
/// </summary>
public static class DataSplit
{
    public static DataSplitResult Run(DataSplitOptions o, Action<string>? progress = null, CancellationToken cancel = default)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        if (!(o.Validation >= 0 && o.Validation <= 1)) throw new ArgumentException($"--val must be between 0 and 1, got {o.Validation}");
        DataChecks.DistinctOutput(o.Input, o.TrainOutput, o.ValidationOutput);
        using var reader = new JsonlReader(o.Input);
        using var pipeline = new DataPipeline(reader, o.Threads, "split", progress, cancel);
        using var train = AtomicFile.Begin(o.TrainOutput);
        using var validation = AtomicFile.Begin(o.ValidationOutput);
        var bad = new BadLineLog(o.Input, o.SkipBadLines);
        var scanners = Enumerable.Range(0, pipeline.Threads).Select(_ => new RecordScanner("", wantText: false, groupField: o.By)).ToArray();
        var errors = new string?[pipeline.MaxLines];
        var toValidation = new bool[pipeline.MaxLines];
        ulong seedHash = DataHash.Mix(o.Seed);
        long index = 0, records = 0, trainCount = 0, validationCount = 0;
        while (pipeline.Next())
        {
            var batch = pipeline.Batch;
            long first = index;
            pipeline.ForEach((i, worker) =>
            {
                errors[i] = null;
                if (!scanners[worker].Scan(batch[i], out var record, out errors[i])) return;
                if (o.By != null && record.Group == null) { errors[i] = $"no \"{o.By}\" field to group by"; return; }
                ulong h = o.By == null ? DataHash.Mix(seedHash ^ (ulong)(first + i)) : DataHash.Hash(record.Group!, seedHash);
                toValidation[i] = DataHash.Unit(h) < o.Validation;
            });
            index += batch.Count;
            for (int i = 0; i < batch.Count; i++)
            {
                if (errors[i] is string error) { bad.Report(batch.LineNumber(i), error); continue; }
                records++;
                var target = toValidation[i] ? validation : train;
                if (toValidation[i]) validationCount++; else trainCount++;
                target.Stream.Write(batch[i]);
                target.Stream.WriteByte((byte)'\n');
            }
        }
        train.Commit();
        validation.Commit();
        return new DataSplitResult(o.Input, o.TrainOutput, o.ValidationOutput, records, trainCount, validationCount, o.Validation, o.Seed, o.By,
            bad.Count, bad.Examples, clock.Elapsed.TotalSeconds);
    }
}
