using System.Buffers;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Formats;

namespace Hone.DataTools;

/// <param name="Against">evaluation files (JSONL, CSV such as MMLU's, or plain text; see <see cref="EvalNgrams"/>)</param>
/// <param name="Report">the side file listing each dropped record (default: OUTPUT with .contamination.jsonl)</param>
public sealed record DecontaminateOptions(string Input, IReadOnlyList<string> Against, string Output, int Ngram = 13, string? Report = null,
    string Field = "text", bool SkipBadLines = false, int Threads = 0)
{
    public string ReportPath => Report ?? DefaultReport(Output);

    public static string DefaultReport(string output) =>
        (output.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) ? output[..^6] : output) + ".contamination.jsonl";
}

/// <param name="DroppedBySet">dropped records by the evaluation set of their first overlapping n-gram</param>
public sealed record DecontaminateResult(string File, string Output, string Report, int Ngram, long Records, long Kept, long Dropped,
    IReadOnlyList<EvalSetInfo> EvalSets, IReadOnlyList<long> DroppedBySet, long BadLines, IReadOnlyList<string> BadLineExamples, double Seconds)
{
    public JsonObject ToJson() => new()
    {
        ["file"] = File, ["output"] = Output, ["report"] = Report, ["ngram"] = Ngram, ["records"] = Records, ["kept"] = Kept, ["dropped"] = Dropped,
        ["eval_sets"] = new JsonArray(EvalSets.Select((s, i) => (JsonNode)new JsonObject
        {
            ["path"] = s.Path, ["format"] = s.Format, ["segments"] = s.Segments, ["short_segments"] = s.ShortSegments,
            ["ngrams"] = s.Ngrams, ["dropped"] = DroppedBySet[i],
        }).ToArray()),
        ["bad_lines"] = BadLines, ["bad_line_examples"] = DataJson.Strings(BadLineExamples), ["seconds"] = Seconds,
    };
}

/// <summary>
/// <c>hone data decontaminate</c>: drop training records sharing any word n-gram (13 by default) with the evaluation
/// sets — GPT-3's and lm-evaluation-harness's rule, words lowercased with punctuation deleted (<see cref="Words"/>).
/// Kept records pass through in order and byte for byte; each dropped one gets a line in the report: its line, the
/// evaluation set and line of the first overlap, that n-gram, how many of its n-grams overlap and which sets.
/// A text with fewer than n words cannot overlap. Memory: the evaluation n-grams (about 40 bytes each) and the read
/// batch; training data is streamed.
/// </summary>
public static class Decontaminate
{
    struct Item
    {
        public string? Error;
        public int Matches, Set;
        public long EvalLine;
        public ulong Mask;
        public string? Ngram;
    }

    public static DecontaminateResult Run(DecontaminateOptions o, Action<string>? progress = null, CancellationToken cancel = default)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        if (o.Against.Count == 0) throw new ArgumentException("--against needs at least one evaluation file");
        DataChecks.DistinctOutput(o.Input, o.Output, o.ReportPath);
        if (!File.Exists(o.Input)) throw new FileNotFoundException($"{o.Input}: no such file", o.Input);
        var eval = new EvalNgrams(o.Ngram);
        foreach (var path in o.Against) eval.Add(path);
        if (eval.Count == 0) throw new InvalidOperationException($"the evaluation sets have no text of {o.Ngram} or more words to match");

        using var reader = new JsonlReader(o.Input);
        using var pipeline = new DataPipeline(reader, o.Threads, "decontaminate", progress, cancel);
        using var output = AtomicFile.Begin(o.Output);
        using var report = AtomicFile.Begin(o.ReportPath);
        var bad = new BadLineLog(o.Input, o.SkipBadLines);
        var scanners = Enumerable.Range(0, pipeline.Threads).Select(_ => new RecordScanner(o.Field)).ToArray();
        var scratch = Enumerable.Range(0, pipeline.Threads).Select(_ => new EvalNgrams.NgramScratch()).ToArray();
        var items = new Item[pipeline.MaxLines];
        var droppedBySet = new long[eval.Sets.Count];
        var buffer = new ArrayBufferWriter<byte>(1024);
        long records = 0, kept = 0, dropped = 0;
        while (pipeline.Next())
        {
            var batch = pipeline.Batch;
            pipeline.ForEach((i, worker) =>
            {
                ref var item = ref items[i];
                item = default;
                if (!scanners[worker].Scan(batch[i], out var record, out item.Error)) return;
                var (first, set, evalLine, matches, mask) = eval.Match(record.Text!, scratch[worker]);
                item.Matches = matches;
                if (matches == 0) return;
                item.Set = set; item.EvalLine = evalLine; item.Mask = mask;
                item.Ngram = eval.NgramText(scratch[worker], first);
            });
            for (int i = 0; i < batch.Count; i++)
            {
                ref var item = ref items[i];
                if (item.Error != null) { bad.Report(batch.LineNumber(i), item.Error); continue; }
                records++;
                if (item.Matches == 0)
                {
                    kept++;
                    output.Stream.Write(batch[i]);
                    output.Stream.WriteByte((byte)'\n');
                    continue;
                }
                dropped++;
                droppedBySet[item.Set]++;
                buffer.ResetWrittenCount();
                using (var w = new Utf8JsonWriter(buffer, DataJson.Readable))
                {
                    w.WriteStartObject();
                    w.WriteNumber("line", batch.LineNumber(i));
                    w.WriteString("eval", eval.Sets[item.Set].Path);
                    w.WriteNumber("eval_line", item.EvalLine);
                    w.WriteString("ngram", item.Ngram);
                    w.WriteNumber("matching_ngrams", item.Matches);
                    w.WriteStartArray("eval_sets");
                    for (int s = 0; s < eval.Sets.Count; s++)
                        if ((item.Mask & (1UL << Math.Min(s, 63))) != 0) w.WriteStringValue(eval.Sets[s].Path);
                    w.WriteEndArray();
                    w.WriteEndObject();
                }
                buffer.Write("\n"u8);
                report.Stream.Write(buffer.WrittenSpan);
            }
        }
        output.Commit();
        report.Commit();
        return new DecontaminateResult(o.Input, o.Output, o.ReportPath, o.Ngram, records, kept, dropped, eval.Sets, droppedBySet, bad.Count,
            bad.Examples, clock.Elapsed.TotalSeconds);
    }
}
