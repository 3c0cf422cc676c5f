using System.Text.Json.Nodes;
using Hone.Formats;

namespace Hone.DataTools;

/// <param name="Bands">LSH bands; null chooses them for the threshold (<see cref="LshBands.Choose"/>)</param>
/// <param name="Seed">seeds the shingle hash and the MinHash permutations: the same seed gives the same result anywhere</param>
public sealed record DataDedupOptions(string Input, string Output, bool Near = false, double Threshold = 0.8, int Ngram = 5,
    int NumPerm = 128, int? Bands = null, ShingleKind Shingle = ShingleKind.Word, ulong Seed = 42, string Field = "text",
    bool SkipBadLines = false, int Threads = 0);

public enum DuplicateKind { Exact, Near }

/// <param name="Jaccard">the MinHash estimate for near duplicates; 1 for exact ones</param>
public sealed record DuplicatePair(DuplicateKind Kind, long KeptLine, long RemovedLine, double Jaccard, string KeptPreview, string RemovedPreview);

/// <param name="Candidates">LSH candidate pairs verified against the signatures</param>
public sealed record DataDedupResult(string File, string Output, long Records, long Kept, long ExactDuplicates, long NearDuplicates,
    long BadLines, IReadOnlyList<string> BadLineExamples, bool Near, double Threshold, int Ngram, ShingleKind Shingle, int NumPerm,
    LshBands? Bands, ulong Seed, long Candidates, IReadOnlyList<DuplicatePair> Examples, long IndexBytes, double Seconds)
{
    public JsonObject ToJson() => new()
    {
        ["file"] = File, ["output"] = Output, ["records"] = Records, ["kept"] = Kept, ["removed"] = ExactDuplicates + NearDuplicates,
        ["exact_duplicates"] = ExactDuplicates, ["near_duplicates"] = NearDuplicates,
        ["bad_lines"] = BadLines, ["bad_line_examples"] = DataJson.Strings(BadLineExamples),
        ["near"] = Near,
        ["minhash"] = Near ? new JsonObject
        {
            ["threshold"] = Threshold, ["ngram"] = Ngram, ["shingle"] = DataJson.Name(Shingle), ["num_perm"] = NumPerm,
            ["bands"] = Bands!.Value.Bands, ["rows"] = Bands.Value.Rows, ["seed"] = Seed,
            ["candidate_probability_at_threshold"] = Bands.Value.CandidateProbability(Threshold),
            ["candidates_verified"] = Candidates, ["index_bytes"] = IndexBytes,
        } : null,
        ["examples"] = new JsonArray(Examples.Select(e => (JsonNode)new JsonObject
        {
            ["kind"] = DataJson.Name(e.Kind), ["kept_line"] = e.KeptLine, ["removed_line"] = e.RemovedLine, ["jaccard"] = e.Jaccard,
            ["kept"] = e.KeptPreview, ["removed"] = e.RemovedPreview,
        }).ToArray()),
        ["seconds"] = Seconds,
    };
}

/// <summary>
/// <c>hone data dedup</c>: drop records whose text equals an earlier record's (SHA-256 content hash, first kept), and
/// with Near also records whose MinHash Jaccard estimate against an earlier kept record reaches the threshold (LSH
/// candidates, verified with the signatures). Records are kept in order and byte for byte. A record is only compared
/// with kept records, so in a chain A ≈ B ≈ C where B is removed, C stays when it is not itself close to A.
/// Memory: about 48 bytes a distinct text (hash and first line), and with Near about 15 bytes a band (12 bands by
/// default) a kept text; signatures (16 + 2·num-perm bytes a kept text) go to a temporary file beside the output.
/// </summary>
public static class DataDedup
{
    public const int MaxExamples = 5;
    const int PreviewChars = 80;

    struct Item
    {
        public string? Error;
        public UInt128 Hash;
        public int Shingles;
        public string? Text;
    }

    public static DataDedupResult Run(DataDedupOptions o, Action<string>? progress = null, CancellationToken cancel = default)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        DataChecks.DistinctOutput(o.Input, o.Output);
        LshBands? bands = null;
        MinHasher? hasher = null;
        if (o.Near)
        {
            if (o.Threshold is <= 0 or >= 1 || double.IsNaN(o.Threshold)) throw new ArgumentException($"--threshold must be between 0 and 1, got {o.Threshold}");
            hasher = new MinHasher(o.NumPerm, o.Ngram, o.Shingle, o.Seed);
            bands = o.Bands is int b ? LshBands.ForBands(b, o.NumPerm) : LshBands.Choose(o.Threshold, o.NumPerm);
        }
        using var reader = new JsonlReader(o.Input);
        using var pipeline = new DataPipeline(reader, o.Threads, "dedup", progress, cancel);
        using var output = AtomicFile.Begin(o.Output);
        using var signatures = o.Near ? new SignatureStore(Path.GetDirectoryName(output.Path)!, o.NumPerm) : null;
        var index = o.Near ? new BandIndex() : null;
        var bad = new BadLineLog(o.Input, o.SkipBadLines);
        var scanners = Enumerable.Range(0, pipeline.Threads).Select(_ => new RecordScanner(o.Field)).ToArray();
        var scratch = Enumerable.Range(0, pipeline.Threads).Select(_ => new MinHasher.Scratch()).ToArray();
        int k = o.NumPerm, bandCount = bands?.Bands ?? 0;
        var items = new Item[pipeline.MaxLines];
        var sigs = o.Near ? new uint[pipeline.MaxLines * k] : [];
        var keys = o.Near ? new ulong[pipeline.MaxLines * bandCount] : [];
        var firstLine = new Dictionary<UInt128, long>();
        var examples = new List<DuplicatePair>();
        var candidates = new List<int>();
        var nearExamples = new List<(int KeptId, long RemovedLine, double Jaccard, string Preview)>();
        long records = 0, kept = 0, exact = 0, near = 0, verified = 0;

        while (pipeline.Next())
        {
            var batch = pipeline.Batch;
            pipeline.ForEach((i, worker) =>
            {
                ref var item = ref items[i];
                item = default;
                if (!scanners[worker].Scan(batch[i], out var record, out item.Error)) return;
                var text = record.Text!;
                item.Hash = TextProfile.ContentHash(text);
                item.Text = text;
                if (hasher == null) return;
                var sig = sigs.AsSpan(i * k, k);
                item.Shingles = hasher.Signature(text, sig, scratch[worker]);
                for (int b = 0; b < bandCount; b++) keys[i * bandCount + b] = bands!.Value.Key(sig, b);
            });
            for (int i = 0; i < batch.Count; i++)
            {
                ref var item = ref items[i];
                long line = batch.LineNumber(i);
                if (item.Error != null) { bad.Report(line, item.Error); continue; }
                records++;
                if (!firstLine.TryAdd(item.Hash, line))
                {
                    exact++;
                    if (examples.Count(e => e.Kind == DuplicateKind.Exact) < MaxExamples)
                        examples.Add(new DuplicatePair(DuplicateKind.Exact, firstLine[item.Hash], line, 1, Preview(item.Text!), Preview(item.Text!)));
                    continue;
                }
                if (o.Near && item.Shingles > 0)
                {
                    var sig = sigs.AsSpan(i * k, k);
                    candidates.Clear();
                    for (int b = 0; b < bandCount; b++) index!.Find(keys[i * bandCount + b], candidates);
                    int best = -1;
                    double bestJaccard = 0;
                    if (candidates.Count > 1) candidates.Sort(); // a text found through several bands is verified once
                    for (int c = 0; c < candidates.Count; c++)
                    {
                        if (c > 0 && candidates[c] == candidates[c - 1]) continue;
                        verified++;
                        double j = signatures!.Jaccard(candidates[c], sig);
                        if (j >= o.Threshold && j > bestJaccard) { best = candidates[c]; bestJaccard = j; }
                    }
                    if (best >= 0)
                    {
                        near++;
                        if (nearExamples.Count < MaxExamples) nearExamples.Add((best, line, bestJaccard, Preview(item.Text!)));
                        continue;
                    }
                    int id = signatures!.Add(line, batch.Offset(i), sig);
                    for (int b = 0; b < bandCount; b++) index!.Add(keys[i * bandCount + b], id);
                }
                kept++;
                output.Stream.Write(batch[i]);
                output.Stream.WriteByte((byte)'\n');
            }
        }
        foreach (var (keptId, removedLine, jaccard, preview) in nearExamples)
        {
            var (keptLine, keptOffset) = signatures!.Location(keptId);
            examples.Add(new DuplicatePair(DuplicateKind.Near, keptLine, removedLine, jaccard, PreviewAt(o.Input, keptOffset, o.Field), preview));
        }
        output.Commit();
        return new DataDedupResult(o.Input, o.Output, records, kept, exact, near, bad.Count, bad.Examples, o.Near, o.Threshold, o.Ngram,
            o.Shingle, o.NumPerm, bands, o.Seed, verified, examples, index?.MemoryBytes ?? 0, clock.Elapsed.TotalSeconds);
    }

    static string Preview(string text)
    {
        var flat = text.Length > PreviewChars * 2 ? text[..(PreviewChars * 2)] : text;
        flat = string.Join(' ', flat.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
        return flat.Length > PreviewChars ? flat[..PreviewChars] + "…" : flat;
    }

    /// <summary>The preview of the record at a byte offset of the input (for examples, so kept texts need not be held).</summary>
    internal static string PreviewAt(string file, long offset, string field)
    {
        using var handle = File.OpenHandle(file);
        var buffer = new List<byte>();
        var chunk = new byte[1 << 16];
        for (long at = offset; ; at += chunk.Length)
        {
            int read = RandomAccess.Read(handle, chunk, at);
            int newline = Array.IndexOf(chunk, (byte)'\n', 0, read);
            buffer.AddRange(chunk.AsSpan(0, newline >= 0 ? newline : read));
            if (newline >= 0 || read < chunk.Length) break;
        }
        var bytes = buffer.ToArray().AsSpan();
        if (bytes.StartsWith("\uFEFF"u8)) bytes = bytes[3..];
        return new RecordScanner(field).Scan(bytes.TrimEnd((byte)'\r'), out var record, out _) ? Preview(record.Text!) : "";
    }
}
