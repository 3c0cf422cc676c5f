using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tokenization;

namespace Hone.DataTools;

/// <param name="Column">the numeric field the value band and the quantiles apply to (written by <c>data score</c>)</param>
/// <param name="MinValue">keep records whose column is at least this (inclusive)</param>
/// <param name="MaxValue">keep records whose column is at most this (inclusive)</param>
/// <param name="KeepQuantiles">keep records whose column lies between these two quantiles of the file's values (inclusive)</param>
/// <param name="MinChars">bounds on the text length in code points (inclusive)</param>
/// <param name="MinTokens">bounds on the text length in tokens of <paramref name="Model"/>'s tokenizer, without BOS (inclusive)</param>
public sealed record DataFilterOptions(string Input, string Output, string Column = "ppl", double? MinValue = null, double? MaxValue = null,
    (double Low, double High)? KeepQuantiles = null, int? MinChars = null, int? MaxChars = null, int? MinTokens = null, int? MaxTokens = null,
    string? Model = null, string Field = "text", bool SkipBadLines = false, int Threads = 0)
{
    internal bool UsesColumn => MinValue != null || MaxValue != null || KeepQuantiles != null;
    internal bool UsesText => MinChars != null || MaxChars != null || MinTokens != null || MaxTokens != null;
    internal bool UsesTokens => MinTokens != null || MaxTokens != null;
}

/// <summary>Counts of records failing each condition (a record failing two is counted under both).</summary>
public sealed record FilterReasons(long BelowMin, long AboveMax, long OutsideQuantiles, long NoValue, long TooFewChars, long TooManyChars,
    long TooFewTokens, long TooManyTokens);

/// <param name="QuantileBounds">the column values at the two quantiles, when filtering by quantiles</param>
/// <param name="ValuesForQuantiles">how many records had a value in the first pass</param>
public sealed record DataFilterResult(string File, string Output, long Records, long Kept, FilterReasons Removed, string Column,
    (double Low, double High)? QuantileBounds, long ValuesForQuantiles, long BadLines, IReadOnlyList<string> BadLineExamples, double Seconds)
{
    public JsonObject ToJson() => new()
    {
        ["file"] = File, ["output"] = Output, ["records"] = Records, ["kept"] = Kept, ["removed"] = Records - Kept, ["column"] = Column,
        ["quantile_bounds"] = QuantileBounds is { } q ? new JsonArray(q.Low, q.High) : null,
        ["values_for_quantiles"] = ValuesForQuantiles,
        ["removed_by"] = new JsonObject
        {
            ["below_min"] = Removed.BelowMin, ["above_max"] = Removed.AboveMax, ["outside_quantiles"] = Removed.OutsideQuantiles,
            ["no_value"] = Removed.NoValue, ["too_few_chars"] = Removed.TooFewChars, ["too_many_chars"] = Removed.TooManyChars,
            ["too_few_tokens"] = Removed.TooFewTokens, ["too_many_tokens"] = Removed.TooManyTokens,
        },
        ["bad_lines"] = BadLines, ["bad_line_examples"] = DataJson.Strings(BadLineExamples), ["seconds"] = Seconds,
    };
}

/// <summary>
/// <c>hone data filter</c>: keep records inside every given bound, in order and byte for byte.
/// Quantiles take two passes: the first keeps only the column's numbers (8 bytes a record; exact quantiles, linear
/// interpolation between order statistics as NumPy's default — exact is affordable because only numbers are kept, and
/// it makes the band edges reproducible), the second filters. A null value (a text too short to score) fails any
/// value or quantile bound; a record without the column is a bad line. Memory: the read batch, plus the numbers for
/// quantiles.
/// </summary>
public static class DataFilter
{
    struct Item
    {
        public string? Error;
        public double? Value;
        public int Chars, Tokens;
    }

    public static DataFilterResult Run(DataFilterOptions o, Action<string>? progress = null, CancellationToken cancel = default)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Validate(o);
        DataChecks.DistinctOutput(o.Input, o.Output);
        using var checkpoint = o.UsesTokens ? Checkpoint.Open(o.Model!) : null;
        Tokenizer? tokenizer = checkpoint?.LoadTokenizer();

        (double Low, double High)? bounds = null;
        long valuesForQuantiles = 0;
        if (o.KeepQuantiles is { } q)
        {
            var values = new NumberColumn();
            Pass(o, tokenizer, new BadLineLog(o.Input, o.SkipBadLines), "filter (quantiles)", progress, cancel, (item, _, _) =>
            {
                if (item.Value is double v) values.Add(v);
            });
            valuesForQuantiles = values.Count;
            if (values.Count == 0) throw new InvalidOperationException($"{o.Input}: no record has a \"{o.Column}\" value to take quantiles of");
            var sorted = values.ToSortedArray();
            bounds = (Quantiles.OfSorted(sorted, q.Low), Quantiles.OfSorted(sorted, q.High));
        }

        using var output = AtomicFile.Begin(o.Output);
        var bad = new BadLineLog(o.Input, o.SkipBadLines);
        long records = 0, kept = 0, belowMin = 0, aboveMax = 0, outside = 0, noValue = 0, fewChars = 0, manyChars = 0, fewTokens = 0, manyTokens = 0;
        Pass(o, tokenizer, bad, "filter", progress, cancel, (item, batch, i) =>
        {
            records++;
            bool keep = true;
            if (o.UsesColumn)
            {
                if (item.Value is not double v) { noValue++; keep = false; }
                else
                {
                    if (v < o.MinValue) { belowMin++; keep = false; }
                    if (v > o.MaxValue) { aboveMax++; keep = false; }
                    if (bounds is { } b && (v < b.Low || v > b.High)) { outside++; keep = false; }
                }
            }
            if (item.Chars < o.MinChars) { fewChars++; keep = false; }
            if (item.Chars > o.MaxChars) { manyChars++; keep = false; }
            if (item.Tokens < o.MinTokens) { fewTokens++; keep = false; }
            if (item.Tokens > o.MaxTokens) { manyTokens++; keep = false; }
            if (!keep) return;
            kept++;
            output.Stream.Write(batch[i]);
            output.Stream.WriteByte((byte)'\n');
        });
        output.Commit();
        return new DataFilterResult(o.Input, o.Output, records, kept,
            new FilterReasons(belowMin, aboveMax, outside, noValue, fewChars, manyChars, fewTokens, manyTokens),
            o.Column, bounds, valuesForQuantiles, bad.Count, bad.Examples, clock.Elapsed.TotalSeconds);
    }

    static void Validate(DataFilterOptions o)
    {
        if (!o.UsesColumn && !o.UsesText)
            throw new ArgumentException("nothing to filter by: give --min-ppl/--max-ppl, --keep-quantiles, --min-chars/--max-chars or --min-tokens/--max-tokens");
        if (o.MinValue > o.MaxValue) throw new ArgumentException($"the minimum {o.MinValue} is above the maximum {o.MaxValue}");
        if (o.MinChars > o.MaxChars) throw new ArgumentException($"--min-chars {o.MinChars} is above --max-chars {o.MaxChars}");
        if (o.MinTokens > o.MaxTokens) throw new ArgumentException($"--min-tokens {o.MinTokens} is above --max-tokens {o.MaxTokens}");
        if (o.UsesTokens && o.Model == null) throw new ArgumentException("--min-tokens/--max-tokens need --model for its tokenizer");
        if (o.KeepQuantiles is { } q && !(q.Low >= 0 && q.Low < q.High && q.High <= 1))
            throw new ArgumentException($"--keep-quantiles needs 0 <= low < high <= 1, got {q.Low},{q.High}");
    }

    /// <summary>One streaming pass: parse every line in parallel, then hand the usable ones to <paramref name="consume"/> in order.</summary>
    static void Pass(DataFilterOptions o, Tokenizer? tokenizer, BadLineLog bad, string tool, Action<string>? progress, CancellationToken cancel,
        Action<Item, LineBatch, int> consume)
    {
        using var reader = new JsonlReader(o.Input);
        using var pipeline = new DataPipeline(reader, o.Threads, tool, progress, cancel);
        string missing = $"no \"{o.Column}\" field (score the file first with hone data score, or name the field with --column)";
        var scanners = Enumerable.Range(0, pipeline.Threads)
            .Select(_ => new RecordScanner(o.Field, wantText: o.UsesText, numberField: o.UsesColumn ? o.Column : null)).ToArray();
        var items = new Item[pipeline.MaxLines];
        while (pipeline.Next())
        {
            var batch = pipeline.Batch;
            pipeline.ForEach((i, worker) =>
            {
                ref var item = ref items[i];
                item = default;
                if (!scanners[worker].Scan(batch[i], out var record, out item.Error)) return;
                if (o.UsesColumn && !record.HasNumber) { item.Error = missing; return; }
                item.Value = record.Number;
                if (record.Text is string text)
                {
                    item.Chars = TextProfile.CodePoints(text);
                    if (tokenizer != null) item.Tokens = tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: false).Length;
                }
            });
            for (int i = 0; i < batch.Count; i++)
            {
                if (items[i].Error is string error) { bad.Report(batch.LineNumber(i), error); continue; }
                consume(items[i], batch, i);
            }
        }
    }
}
