using Hone.DataTools;
using Hone.Tests.Infrastructure;
using Xunit;
using Hone.Formats;

namespace Hone.Tests.DataTools;

public class FilterTests
{
    static string Scored(TempDirectory dir, params (string Text, string Ppl)[] records) =>
        Jsonl.Write(dir, "in.jsonl", records.Select(r => $"{{\"text\":\"{r.Text}\",\"ppl\":{r.Ppl}}}").ToArray());

    [Fact]
    public void Value_bounds_are_inclusive_and_null_scores_fail_them()
    {
        using var dir = new TempDirectory();
        var input = Scored(dir, ("a", "9.999"), ("b", "10"), ("c", "15"), ("d", "20"), ("e", "20.001"), ("f", "null"));
        var r = DataFilter.Run(new DataFilterOptions(input, dir.File("out.jsonl"), MinValue: 10, MaxValue: 20));
        Assert.Equal(["{\"text\":\"b\",\"ppl\":10}", "{\"text\":\"c\",\"ppl\":15}", "{\"text\":\"d\",\"ppl\":20}"], Jsonl.Lines(dir.File("out.jsonl")));
        Assert.Equal((6L, 3L), (r.Records, r.Kept));
        Assert.Equal(new FilterReasons(1, 1, 0, 1, 0, 0, 0, 0), r.Removed);
    }

    [Fact]
    public void Quantile_band_uses_exact_interpolated_quantiles_of_the_file()
    {
        using var dir = new TempDirectory();
        // Values 1..10 in shuffled order: q(0.1) = 1 + 0.9·1 = 1.9, q(0.9) = 9.1, so 2..9 stay.
        int[] order = [7, 2, 10, 1, 5, 9, 3, 8, 6, 4];
        var input = Scored(dir, order.Select(v => ($"t{v}", v.ToString())).Append(("none", "null")).ToArray());
        var r = DataFilter.Run(new DataFilterOptions(input, dir.File("out.jsonl"), KeepQuantiles: (0.1, 0.9), Threads: 2));
        Assert.Equal(1.9, r.QuantileBounds!.Value.Low, 12);
        Assert.Equal(9.1, r.QuantileBounds!.Value.High, 12);
        Assert.Equal(10, r.ValuesForQuantiles);
        Assert.Equal(order.Where(v => v is >= 2 and <= 9).Select(v => $"t{v}"), Jsonl.Lines(dir.File("out.jsonl")).Select(l => l.Split('"')[3]));
        Assert.Equal(new FilterReasons(0, 0, 2, 1, 0, 0, 0, 0), r.Removed);
        // The full range keeps every scored record.
        var all = DataFilter.Run(new DataFilterOptions(input, dir.File("all.jsonl"), KeepQuantiles: (0, 1)));
        Assert.Equal(10, all.Kept);
    }

    [Fact]
    public void Length_bounds_count_code_points()
    {
        using var dir = new TempDirectory();
        var input = Jsonl.Write(dir, "in.jsonl", "{\"text\":\"ab\"}", "{\"text\":\"abc\"}", "{\"text\":\"😀😀😀\"}", "{\"text\":\"abcde\"}", "{\"text\":\"abcdef\"}");
        var r = DataFilter.Run(new DataFilterOptions(input, dir.File("out.jsonl"), MinChars: 3, MaxChars: 5));
        Assert.Equal(["{\"text\":\"abc\"}", "{\"text\":\"😀😀😀\"}", "{\"text\":\"abcde\"}"], Jsonl.Lines(dir.File("out.jsonl")));
        Assert.Equal(new FilterReasons(0, 0, 0, 0, 1, 1, 0, 0), r.Removed);
    }

    [SkippableFact]
    public void Token_bounds_use_the_models_tokenizer()
    {
        var model = SharedData.Require("models/stories260K/tinyllamas-stories-260k-f32.gguf");
        using var dir = new TempDirectory();
        using var checkpoint = Hone.Model.Checkpoint.Open(model);
        var tokenizer = checkpoint.LoadTokenizer();
        string[] texts = ["Once", "Once upon a time", "Once upon a time there was a little girl named Lily."];
        var counts = texts.Select(t => tokenizer.Encode(t, false, false).Length).ToArray();
        Assert.True(counts[0] < counts[1] && counts[1] < counts[2]);
        var input = Jsonl.Write(dir, "in.jsonl", texts.Select(t => $"{{\"text\":\"{t}\"}}").ToArray());
        var r = DataFilter.Run(new DataFilterOptions(input, dir.File("out.jsonl"), MinTokens: counts[1], MaxTokens: counts[1], Model: model));
        Assert.Equal([$"{{\"text\":\"{texts[1]}\"}}"], Jsonl.Lines(dir.File("out.jsonl")));
        Assert.Equal(new FilterReasons(0, 0, 0, 0, 0, 0, 1, 1), r.Removed);
    }

    [Fact]
    public void Missing_column_is_a_bad_line_and_options_are_checked()
    {
        using var dir = new TempDirectory();
        var input = Jsonl.Write(dir, "in.jsonl", "{\"text\":\"a\",\"ppl\":3}", "{\"text\":\"b\"}");
        var e = Assert.Throws<DataFormatException>(() => DataFilter.Run(new DataFilterOptions(input, dir.File("o.jsonl"), MaxValue: 5)));
        Assert.Equal(2, e.Line);
        Assert.Contains("no \"ppl\" field", e.Message);
        Assert.Equal(1, DataFilter.Run(new DataFilterOptions(input, dir.File("o.jsonl"), MaxValue: 5, SkipBadLines: true)).BadLines);
        Assert.Throws<ArgumentException>(() => DataFilter.Run(new DataFilterOptions(input, dir.File("x.jsonl"))));
        Assert.Throws<ArgumentException>(() => DataFilter.Run(new DataFilterOptions(input, dir.File("x.jsonl"), MinValue: 5, MaxValue: 1)));
        Assert.Throws<ArgumentException>(() => DataFilter.Run(new DataFilterOptions(input, dir.File("x.jsonl"), KeepQuantiles: (0.9, 0.1))));
        Assert.Throws<ArgumentException>(() => DataFilter.Run(new DataFilterOptions(input, dir.File("x.jsonl"), MinTokens: 3)));
        Assert.False(File.Exists(dir.File("x.jsonl")));
    }
}

public class SplitTests
{
    static string Records(TempDirectory dir, int count, Func<int, string>? extra = null) =>
        Jsonl.Write(dir, "in.jsonl", Enumerable.Range(0, count).Select(i => $"{{\"text\":\"r{i}\"{extra?.Invoke(i)}}}").ToArray());

    [Fact]
    public void Proportions_are_binomial_and_every_record_lands_once_in_order()
    {
        using var dir = new TempDirectory();
        const int n = 100_000;
        var input = Records(dir, n);
        var r = DataSplit.Run(new DataSplitOptions(input, dir.File("t.jsonl"), dir.File("v.jsonl"), Validation: 0.1, Seed: 5, Threads: 2));
        double sd = Math.Sqrt(n * 0.1 * 0.9);
        Assert.InRange(r.Validation, n * 0.1 - 4 * sd, n * 0.1 + 4 * sd);
        Assert.Equal(n, r.Train + r.Validation);
        var train = Jsonl.Lines(dir.File("t.jsonl"));
        var val = Jsonl.Lines(dir.File("v.jsonl"));
        Assert.Equal(r.Validation, val.Length);
        int Index(string line) => int.Parse(line[10..line.IndexOf('"', 10)]);
        Assert.True(train.Select(Index).SequenceEqual(train.Select(Index).Order()));
        Assert.Equal(Enumerable.Range(0, n), train.Concat(val).Select(Index).Order());
    }

    [Fact]
    public void The_same_seed_gives_the_same_split_and_another_seed_another()
    {
        using var dir = new TempDirectory();
        var input = Records(dir, 2000);
        DataSplit.Run(new DataSplitOptions(input, dir.File("t1"), dir.File("v1"), 0.25, Seed: 9, Threads: 1));
        DataSplit.Run(new DataSplitOptions(input, dir.File("t2"), dir.File("v2"), 0.25, Seed: 9, Threads: 3));
        DataSplit.Run(new DataSplitOptions(input, dir.File("t3"), dir.File("v3"), 0.25, Seed: 10));
        Assert.Equal(File.ReadAllBytes(dir.File("v1")), File.ReadAllBytes(dir.File("v2")));
        Assert.Equal(File.ReadAllBytes(dir.File("t1")), File.ReadAllBytes(dir.File("t2")));
        Assert.NotEqual(File.ReadAllLines(dir.File("v1")), File.ReadAllLines(dir.File("v3")));
        // Decisions depend on the record index, not on the content: adding a record at the end moves nothing.
        File.AppendAllText(input, "{\"text\":\"extra\"}\n");
        DataSplit.Run(new DataSplitOptions(input, dir.File("t4"), dir.File("v4"), 0.25, Seed: 9));
        Assert.Equal(File.ReadAllLines(dir.File("v1")), File.ReadAllLines(dir.File("v4")).Where(l => !l.Contains("extra")));
    }

    [Fact]
    public void Groups_stay_together()
    {
        using var dir = new TempDirectory();
        var input = Records(dir, 5000, i => $",\"doc\":\"d{i % 97}\"");
        var r = DataSplit.Run(new DataSplitOptions(input, dir.File("t"), dir.File("v"), 0.3, Seed: 1, By: "doc"));
        string Group(string line) => line[(line.IndexOf("\"doc\":\"", StringComparison.Ordinal) + 7)..^2];
        var trainGroups = Jsonl.Lines(dir.File("t")).Select(Group).ToHashSet();
        var valGroups = Jsonl.Lines(dir.File("v")).Select(Group).ToHashSet();
        Assert.Empty(trainGroups.Intersect(valGroups));
        Assert.Equal(97, trainGroups.Count + valGroups.Count);
        Assert.InRange(valGroups.Count, 97 * 0.3 - 4 * Math.Sqrt(97 * 0.21), 97 * 0.3 + 4 * Math.Sqrt(97 * 0.21));
        Assert.Equal(5000, r.Records);
    }

    [Fact]
    public void A_record_without_the_group_field_is_a_bad_line()
    {
        using var dir = new TempDirectory();
        var input = Jsonl.Write(dir, "in.jsonl", "{\"text\":\"a\",\"g\":1}", "{\"text\":\"b\"}");
        var e = Assert.Throws<DataFormatException>(() => DataSplit.Run(new DataSplitOptions(input, dir.File("t"), dir.File("v"), By: "g")));
        Assert.Equal(2, e.Line);
        Assert.Empty(Jsonl.Others(dir, "in.jsonl"));
    }
}
