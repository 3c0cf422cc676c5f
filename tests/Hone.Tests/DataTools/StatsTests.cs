using Hone.DataTools;
using Hone.Tests.Infrastructure;
using Xunit;
using Hone.Formats;

namespace Hone.Tests.DataTools;

/// <summary><c>data stats</c> on small files whose numbers are worked out by hand.</summary>
public class StatsTests
{
    [Fact]
    public void Stats_of_a_small_fixture()
    {
        using var dir = new TempDirectory();
        var path = Jsonl.Write(dir, "a.jsonl",
            "{\"text\":\"abc\",\"id\":1}",                 // 3
            "{\"text\":\"abc\",\"id\":2}",                 // 3, duplicate of line 1
            "",
            "{\"text\":\"\",\"id\":3}",                    // 0, empty
            "{\"text\":\" \\t\\n\",\"id\":4}",             // 3, whitespace only
            "{\"text\":\"héllo wörld\",\"src\":\"x\"}",    // 11, two non-ASCII
            "{\"text\":\"Привет мир\"}",                   // 10, 9 non-ASCII, Cyrillic
            "{\"text\":\"a\\u0001b\\ufffd😀\"}");          // 5 code points: control, U+FFFD, one emoji (a surrogate pair)
        var r = DataStats.Run(new DataStatsOptions(path, Threads: 2));
        Assert.Equal(8, r.Lines);
        Assert.Equal(1, r.BlankLines);
        Assert.Equal(7, r.Records);
        Assert.Equal(new FileInfo(path).Length, r.Bytes);
        Assert.Equal(3 + 3 + 0 + 3 + 11 + 10 + 5, r.Characters);
        // Lengths sorted: 0 3 3 3 5 10 11; median = 3; p90 at position 0.9·6 = 5.4 → 10 + 0.4·(11 − 10).
        Assert.Equal(new Distribution(7, 0, 3, 10.4, 11, 35 / 7.0), r.CharacterLengths);
        Assert.Equal(1, r.DuplicateRecords);
        Assert.Equal(6, r.DistinctTexts);
        Assert.Equal(1, r.EmptyRecords);
        Assert.Equal(1, r.WhitespaceOnlyRecords);
        var a = r.Anomalies;
        Assert.Equal(3, a.NonAsciiRecords);
        Assert.Equal(2 + 9 + 2, a.NonAsciiCharacters); // code points: the emoji counts once
        Assert.Equal(1, a.ReplacementCharacterRecords);
        Assert.Equal(1, a.ControlCharacterRecords);
        Assert.Equal(0, a.InvalidCharacterRecords);
        Assert.Equal(0, a.MixedScriptRecords);
        Assert.Equal([new SystemCount(WritingSystem.Latin, 4), new SystemCount(WritingSystem.None, 2), new SystemCount(WritingSystem.Cyrillic, 1)], a.DominantSystems);
        Assert.Equal([new FieldCount("text", 7), new FieldCount("id", 4), new FieldCount("src", 1)], r.TopFields);
        Assert.Equal(7, r.Sources[TextSource.Field]);
        Assert.Null(r.TokenLengths);
    }

    [Fact]
    public void A_bad_line_stops_the_run_with_file_and_line_unless_skipped()
    {
        using var dir = new TempDirectory();
        var path = Jsonl.Write(dir, "a.jsonl", "{\"text\":\"a\"}", "", "{\"text\":\"b\"", "{\"text\":\"c\"}", "not json");
        var e = Assert.Throws<DataFormatException>(() => DataStats.Run(new DataStatsOptions(path)));
        Assert.Equal(3, e.Line);
        Assert.StartsWith($"{path}:3: not valid JSON", e.Message);
        var r = DataStats.Run(new DataStatsOptions(path, SkipBadLines: true));
        Assert.Equal((2L, 2L), (r.Records, r.BadLines));
        Assert.Equal(2, r.BadLineExamples.Count);
        Assert.StartsWith($"{path}:3: ", r.BadLineExamples[0]);
        Assert.StartsWith($"{path}:5: not valid JSON", r.BadLineExamples[1]);
    }

    [Fact]
    public void Results_do_not_depend_on_the_thread_count()
    {
        using var dir = new TempDirectory();
        var lines = Enumerable.Range(0, 10_000).Select(i => $"{{\"text\":\"doc {i % 7919} {new string('x', i % 7919 % 13)}\",\"k{i % 3}\":1}}").ToArray();
        var path = Jsonl.Write(dir, "a.jsonl", lines);
        var one = DataStats.Run(new DataStatsOptions(path, Threads: 1)).ToJson();
        var two = DataStats.Run(new DataStatsOptions(path, Threads: 3)).ToJson();
        one.Remove("seconds"); two.Remove("seconds");
        Assert.Equal(one.ToJsonString(), two.ToJsonString());
        Assert.Equal(10_000 - 7919, (long)one["duplicate_records"]!);
    }

    [SkippableFact]
    public void With_a_model_token_lengths_are_the_tokenizers_counts()
    {
        var model = SharedData.Require("models/stories260K/tinyllamas-stories-260k-f32.gguf");
        using var dir = new TempDirectory();
        string[] texts = ["Once upon a time", "Lily saw a big red ball.", "x"];
        var path = Jsonl.Write(dir, "a.jsonl", texts.Select(t => $"{{\"text\":\"{t}\"}}").ToArray());
        var r = DataStats.Run(new DataStatsOptions(path, Model: model));
        using var checkpoint = Hone.Model.Checkpoint.Open(model);
        var tokenizer = checkpoint.LoadTokenizer();
        var counts = texts.Select(t => tokenizer.Encode(t, addSpecialTokens: false, parseSpecialTokens: false).Length).ToArray();
        Assert.Equal(counts.Sum(), r.Tokens);
        Assert.Equal(counts.Min(), r.TokenLengths!.Min);
        Assert.Equal(counts.Max(), r.TokenLengths.Max);
        Assert.Equal(counts.Order().ElementAt(1), r.TokenLengths.Median);
    }
}

/// <summary>Per-text character facts behind the stats.</summary>
public class TextProfileTests
{
    [Fact]
    public void Code_points_non_ascii_and_anomalies()
    {
        var f = TextProfile.Analyze("a😀\u0085\ufffd\ud800\ufdd0\uffff\u0007\t\n\u007f");
        Assert.Equal(11, f.CodePoints);
        Assert.Equal(11, TextProfile.CodePoints("a😀\u0085\ufffd\ud800\ufdd0\uffff\u0007\t\n\u007f"));
        Assert.Equal(6, f.NonAscii); // 😀 (one code point), U+0085, U+FFFD, lone U+D800, U+FDD0, U+FFFF
        Assert.Equal(1, f.Replacement);
        Assert.Equal(3, f.Invalid);  // lone surrogate and two noncharacters
        Assert.Equal(3, f.Control);  // U+0085 (C1), BEL, DEL — not tab or newline
        Assert.False(f.WhitespaceOnly);
        Assert.True(TextProfile.Analyze(" \u00a0\u3000\n").WhitespaceOnly);
        Assert.False(TextProfile.Analyze("").WhitespaceOnly);
    }

    [Theory]
    [InlineData("plain english words", WritingSystem.Latin, false, false)]
    [InlineData("pаypal login", WritingSystem.Latin, false, true)]              // Cyrillic а inside a Latin word
    [InlineData("hello мир and more latin text here", WritingSystem.Latin, true, false)] // 3 of 28 letters Cyrillic
    [InlineData("hello world and more latin text here п", WritingSystem.Latin, false, false)] // 1 of 31: under 10%
    [InlineData("日本語のテキストWindows", WritingSystem.Cjk, true, false)]        // CJK next to Latin is not a mixed word
    [InlineData("한국어 漢字", WritingSystem.Cjk, false, false)]                   // Hangul and Han are one system
    [InlineData("naïve café", WritingSystem.Latin, false, false)]
    [InlineData("12 + 3 = 15", WritingSystem.None, false, false)]
    public void Writing_systems(string text, WritingSystem dominant, bool mixed, bool mixedWord)
    {
        var f = TextProfile.Analyze(text);
        Assert.Equal((dominant, mixed, mixedWord), (f.Dominant, f.MixedScript, f.MixedScriptWord));
    }
}

/// <summary>Exact quantiles as NumPy computes them by default.</summary>
public class QuantileTests
{
    [Fact]
    public void Linear_interpolation_between_order_statistics()
    {
        double[] v = [1, 2, 3, 4];
        Assert.Equal(1, Quantiles.OfSorted(v, 0));
        Assert.Equal(2.5, Quantiles.OfSorted(v, 0.5));
        Assert.Equal(3.7, Quantiles.OfSorted(v, 0.9), 12);   // position 2.7
        Assert.Equal(1.3, Quantiles.OfSorted(v, 0.1), 12);   // position 0.3
        Assert.Equal(4, Quantiles.OfSorted(v, 1));
        Assert.Equal(7, Quantiles.OfSorted([7], 0.9));
        Assert.Throws<ArgumentOutOfRangeException>(() => Quantiles.OfSorted(v, 1.5));
    }

    [Fact]
    public void A_column_spanning_several_chunks_sorts_all_its_values()
    {
        var column = new NumberColumn();
        const int n = 200_001;
        for (int i = 0; i < n; i++) column.Add((i * 7919L) % n); // a permutation of 0..n-1
        var d = Distribution.Of(column)!;
        Assert.Equal((n, 0.0, 100_000.0, 180_000.0, n - 1.0), (d.Count, d.Min, d.Median, d.P90, d.Max));
    }
}
