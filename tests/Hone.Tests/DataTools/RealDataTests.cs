using System.Text;
using System.Text.Json.Nodes;
using Hone.DataTools;
using Hone.Tests.Infrastructure;
using Xunit;
using Hone.Formats;

namespace Hone.Tests.DataTools;

/// <summary>The tools on the shared real data sets, checked against counts computed independently here.</summary>
public class RealDataTests(Xunit.Abstractions.ITestOutputHelper log)
{
    /// <summary>Bitext customer support (CSV with quoted multi-line responses) as Alpaca JSONL.</summary>
    static (string Path, List<(string Instruction, string Response)> Rows) Bitext(TempDirectory dir)
    {
        var csv = SharedData.Require("datasets/bitext-customer-support/Bitext_Sample_Customer_Support_Training_Dataset.csv");
        using var reader = new StreamReader(csv);
        var rows = Csv.Rows(reader, csv).ToList();
        Assert.Equal("instruction", rows[0].Cells[2]);
        Assert.Equal("response", rows[0].Cells[10]);
        var pairs = rows.Skip(1).Select(r => (r.Cells[2], r.Cells[10])).ToList();
        var path = dir.File("bitext.jsonl");
        using (var w = new StreamWriter(path, false, new UTF8Encoding(false)))
            foreach (var (instruction, response) in pairs)
                w.WriteLine(new JsonObject { ["instruction"] = instruction, ["input"] = "", ["output"] = response }.ToJsonString());
        return (path, pairs);
    }

    [SkippableFact]
    public void Bitext_stats_and_dedup()
    {
        using var dir = new TempDirectory();
        var (path, pairs) = Bitext(dir);
        Assert.Equal(4514, pairs.Count);
        var texts = pairs.Select(p => p.Instruction + "\n" + p.Response).ToList();
        var stats = DataStats.Run(new DataStatsOptions(path));
        Assert.Equal(4514, stats.Records);
        Assert.Equal(TextSource.Alpaca, stats.Sources.Single().Key);
        Assert.Equal(texts.Sum(t => (long)TextProfile.CodePoints(t)), stats.Characters);
        Assert.Equal(texts.Count - texts.Distinct().Count(), stats.DuplicateRecords);
        Assert.Equal(texts.Count(t => t.Contains('\ufffd')), stats.Anomalies.ReplacementCharacterRecords);
        Assert.Equal(4514, stats.TopFields.Single(f => f.Name == "output").Records);

        var dedup = DataDedup.Run(new DataDedupOptions(path, dir.File("dedup.jsonl"), Near: true));
        Assert.Equal(texts.Distinct().Count(), dedup.Records - dedup.ExactDuplicates);
        Assert.Equal(dedup.Kept, File.ReadLines(dir.File("dedup.jsonl")).Count());
        // The answers are templated but filled in differently: the few near duplicates found are verified at J ≥ 0.8.
        Assert.InRange(dedup.NearDuplicates, 1, 100);
        Assert.All(dedup.Examples.Where(e => e.Kind == DuplicateKind.Near), e => Assert.True(e.Jaccard >= 0.8));
        log.WriteLine($"bitext: {dedup.Records} records, {dedup.ExactDuplicates} exact, {dedup.NearDuplicates} near duplicates, {dedup.Candidates} candidates");
    }

    [SkippableFact]
    public void Tiny_shakespeare_paragraphs_split_and_filter()
    {
        var text = File.ReadAllText(SharedData.Require("datasets/tinyshakespeare/input.txt"));
        var paragraphs = text.Split("\n\n").Where(p => p.Trim().Length > 0).ToList();
        using var dir = new TempDirectory();
        var path = dir.File("shakespeare.jsonl");
        File.WriteAllLines(path, paragraphs.Select(p => new JsonObject { ["text"] = p }.ToJsonString()));
        var stats = DataStats.Run(new DataStatsOptions(path));
        Assert.Equal(paragraphs.Count, stats.Records);
        Assert.Equal(paragraphs.Sum(p => (long)p.Length), stats.Characters); // ASCII only
        Assert.Equal(0, stats.Anomalies.NonAsciiCharacters);
        var lengths = paragraphs.Select(p => (double)p.Length).Order().ToArray();
        Assert.Equal(Quantiles.OfSorted(lengths, 0.9), stats.CharacterLengths!.P90);

        var filter = DataFilter.Run(new DataFilterOptions(path, dir.File("long.jsonl"), MinChars: 200));
        Assert.Equal(paragraphs.Count(p => p.Length >= 200), filter.Kept);
        var split = DataSplit.Run(new DataSplitOptions(path, dir.File("train.jsonl"), dir.File("val.jsonl"), 0.1, Seed: 7));
        Assert.Equal(paragraphs.Count, split.Train + split.Validation);
        Assert.InRange(split.Validation, paragraphs.Count * 0.1 - 4 * Math.Sqrt(paragraphs.Count * 0.09), paragraphs.Count * 0.1 + 4 * Math.Sqrt(paragraphs.Count * 0.09));
    }
}
