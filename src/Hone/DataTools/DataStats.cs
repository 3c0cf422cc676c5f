using System.Text.Json.Nodes;
using Hone.Model;
using Hone.Tokenization;
using Hone.Formats;

namespace Hone.DataTools;

public sealed record DataStatsOptions(string Input, string Field = "text", string? Model = null, bool SkipBadLines = false, int Threads = 0);

public sealed record FieldCount(string Name, long Records);
public sealed record SystemCount(WritingSystem System, long Records);

/// <param name="NonAsciiShare">non-ASCII code points over all code points</param>
/// <param name="DominantSystems">records by the writing system most of their letters belong to (None: no letters)</param>
public sealed record CharsetAnomalies(long ReplacementCharacterRecords, long ReplacementCharacters, long InvalidCharacterRecords,
    long ControlCharacterRecords, long NonAsciiRecords, long NonAsciiCharacters, double NonAsciiShare, long MixedScriptRecords,
    long MixedScriptWordRecords, IReadOnlyList<SystemCount> DominantSystems);

/// <param name="Bytes">file size</param>
/// <param name="Lines">physical lines, blank ones included</param>
/// <param name="Records">usable records (non-blank lines that parsed)</param>
/// <param name="Characters">code points of all record texts</param>
/// <param name="DuplicateRecords">records whose text equals an earlier record's</param>
/// <param name="TopFields">top-level field names by the number of records holding them</param>
public sealed record DataStatsResult(string File, long Bytes, long Lines, long BlankLines, long Records, long BadLines,
    IReadOnlyList<string> BadLineExamples, long Characters, Distribution? CharacterLengths, string? Model, long? Tokens,
    Distribution? TokenLengths, long DuplicateRecords, long DistinctTexts, long EmptyRecords, long WhitespaceOnlyRecords,
    CharsetAnomalies Anomalies, IReadOnlyList<FieldCount> TopFields, IReadOnlyDictionary<TextSource, long> Sources, double Seconds)
{
    public JsonObject ToJson()
    {
        var a = Anomalies;
        return new JsonObject
        {
            ["file"] = File, ["bytes"] = Bytes, ["lines"] = Lines, ["blank_lines"] = BlankLines, ["records"] = Records,
            ["bad_lines"] = BadLines, ["bad_line_examples"] = DataJson.Strings(BadLineExamples),
            ["characters"] = Characters, ["character_lengths"] = DataJson.Of(CharacterLengths),
            ["model"] = Model, ["tokens"] = Tokens, ["token_lengths"] = DataJson.Of(TokenLengths),
            ["duplicate_records"] = DuplicateRecords, ["distinct_texts"] = DistinctTexts,
            ["empty_records"] = EmptyRecords, ["whitespace_only_records"] = WhitespaceOnlyRecords,
            ["anomalies"] = new JsonObject
            {
                ["replacement_character_records"] = a.ReplacementCharacterRecords, ["replacement_characters"] = a.ReplacementCharacters,
                ["invalid_character_records"] = a.InvalidCharacterRecords, ["control_character_records"] = a.ControlCharacterRecords,
                ["non_ascii_records"] = a.NonAsciiRecords, ["non_ascii_characters"] = a.NonAsciiCharacters, ["non_ascii_share"] = a.NonAsciiShare,
                ["mixed_script_records"] = a.MixedScriptRecords, ["mixed_script_word_records"] = a.MixedScriptWordRecords,
                ["dominant_writing_systems"] = new JsonObject(a.DominantSystems.Select(s => KeyValuePair.Create(DataJson.Name(s.System), (JsonNode?)s.Records))),
            },
            ["top_fields"] = new JsonObject(TopFields.Select(f => KeyValuePair.Create(f.Name, (JsonNode?)f.Records))),
            ["text_sources"] = new JsonObject(Sources.Select(s => KeyValuePair.Create(DataJson.Name(s.Key), (JsonNode?)s.Value))),
            ["seconds"] = Seconds,
        };
    }
}

/// <summary>
/// <c>hone data stats</c>: one streaming pass of counts and distributions.
/// Memory: the read batch, 16 bytes a distinct text (exact-duplicate hashes, in a hash set: about 40 bytes with its
/// overhead), 8 bytes a record for the exact character-length quantiles (16 with a model, for token lengths) and the
/// field-name counts (capped at <see cref="RecordScanner.MaxDistinctNames"/>). No text is kept.
/// </summary>
public static class DataStats
{
    public const int TopFieldCount = 20;

    struct Facts
    {
        public string? Error;
        public TextSource Source;
        public TextFacts Text;
        public UInt128 Hash;
        public int Tokens;
    }

    public static DataStatsResult Run(DataStatsOptions o, Action<string>? progress = null, CancellationToken cancel = default)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var checkpoint = o.Model == null ? null : Checkpoint.Open(o.Model);
        Tokenizer? tokenizer = checkpoint?.LoadTokenizer();
        using var reader = new JsonlReader(o.Input);
        using var pipeline = new DataPipeline(reader, o.Threads, "stats", progress, cancel);
        var bad = new BadLineLog(o.Input, o.SkipBadLines);
        var scanners = Enumerable.Range(0, pipeline.Threads).Select(_ => new RecordScanner(o.Field)).ToArray();
        var names = Enumerable.Range(0, pipeline.Threads).Select(_ => new Dictionary<string, long>(StringComparer.Ordinal)).ToArray();
        var facts = new Facts[pipeline.MaxLines];
        var distinct = new HashSet<UInt128>();
        var characterLengths = new NumberColumn();
        var tokenLengths = tokenizer == null ? null : new NumberColumn();
        var systems = new long[Enum.GetValues<WritingSystem>().Length];
        var sources = new long[Enum.GetValues<TextSource>().Length];
        long records = 0, characters = 0, tokens = 0, empty = 0, whitespace = 0, replacementRecords = 0, replacements = 0;
        long invalidRecords = 0, controlRecords = 0, nonAsciiRecords = 0, nonAscii = 0, mixed = 0, mixedWord = 0;

        while (pipeline.Next())
        {
            var batch = pipeline.Batch;
            pipeline.ForEach((i, worker) =>
            {
                ref var f = ref facts[i];
                f = default;
                if (!scanners[worker].Scan(batch[i], out var record, out f.Error, names[worker])) return;
                var text = record.Text!;
                f.Source = record.Source;
                f.Text = TextProfile.Analyze(text);
                f.Hash = TextProfile.ContentHash(text);
                if (tokenizer != null) f.Tokens = tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: false).Length;
            });
            for (int i = 0; i < batch.Count; i++)
            {
                ref var f = ref facts[i];
                if (f.Error != null) { bad.Report(batch.LineNumber(i), f.Error); continue; }
                var t = f.Text;
                records++;
                sources[(int)f.Source]++;
                characters += t.CodePoints;
                characterLengths.Add(t.CodePoints);
                if (tokenLengths != null) { tokens += f.Tokens; tokenLengths.Add(f.Tokens); }
                distinct.Add(f.Hash);
                if (t.CodePoints == 0) empty++;
                if (t.WhitespaceOnly) whitespace++;
                if (t.Replacement > 0) replacementRecords++;
                replacements += t.Replacement;
                if (t.Invalid > 0) invalidRecords++;
                if (t.Control > 0) controlRecords++;
                if (t.NonAscii > 0) nonAsciiRecords++;
                nonAscii += t.NonAscii;
                if (t.MixedScript) mixed++;
                if (t.MixedScriptWord) mixedWord++;
                systems[(int)t.Dominant]++;
            }
        }

        var merged = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var d in names) foreach (var (k, v) in d) merged[k] = merged.GetValueOrDefault(k) + v;
        var top = merged.Where(kv => kv.Value > 0).OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal).Take(TopFieldCount)
            .Select(kv => new FieldCount(kv.Key, kv.Value)).ToList();
        var anomalies = new CharsetAnomalies(replacementRecords, replacements, invalidRecords, controlRecords, nonAsciiRecords, nonAscii,
            characters == 0 ? 0 : (double)nonAscii / characters, mixed, mixedWord,
            Enumerable.Range(0, systems.Length).Where(s => systems[s] > 0).OrderByDescending(s => systems[s]).ThenBy(s => s)
                .Select(s => new SystemCount((WritingSystem)s, systems[s])).ToList());
        var sourceCounts = Enumerable.Range(0, sources.Length).Where(s => sources[s] > 0).ToDictionary(s => (TextSource)s, s => sources[s]);
        return new DataStatsResult(o.Input, reader.Length, reader.Lines, reader.BlankLines, records, bad.Count, bad.Examples,
            characters, Distribution.Of(characterLengths), o.Model, tokenizer == null ? null : tokens, tokenLengths == null ? null : Distribution.Of(tokenLengths),
            records - distinct.Count, distinct.Count, empty, whitespace, anomalies, top, sourceCounts, clock.Elapsed.TotalSeconds);
    }
}
