using Hone.DataTools;
using Hone.Inference;
using Hone.Tests.Infrastructure;
using Xunit;
using Hone.Tensors;

namespace Hone.Tests.DataTools;

/// <summary>Synthetic documents whose word sets have a known Jaccard similarity (1-word shingles make the shingle set
/// the word set). Every pair uses its own words, so different pairs share nothing.</summary>
internal static class JaccardPairs
{
    /// <summary>Two texts over a union of <paramref name="union"/> distinct words with round(J·union) in common;
    /// returns the exact Jaccard.</summary>
    public static (string A, string B, double Jaccard) Make(int pair, double jaccard, int union, Xoshiro256 rng)
    {
        int common = (int)Math.Round(jaccard * union);
        int onlyA = (union - common) / 2, onlyB = union - common - onlyA;
        var words = Enumerable.Range(0, union).Select(w => $"p{pair}w{w}").ToArray();
        for (int i = words.Length - 1; i > 0; i--) { int j = rng.NextInt(i + 1); (words[i], words[j]) = (words[j], words[i]); }
        var a = words[..(common + onlyA)];
        var b = words[..common].Concat(words[(common + onlyA)..]).ToArray();
        return (string.Join(' ', a), string.Join(' ', b), (double)common / union);
    }
}

public class MinHashTests
{
    [Fact]
    public void Estimates_are_unbiased_with_the_binomial_error_of_independent_permutations()
    {
        const int k = 128, pairsPerLevel = 150;
        var hasher = new MinHasher(k, ngram: 1, ShingleKind.Word, seed: 7);
        var scratch = new MinHasher.Scratch();
        var rng = new Xoshiro256(11);
        var sa = new uint[k];
        var sb = new uint[k];
        int pair = 0;
        foreach (double level in new[] { 0.2, 0.5, 0.8, 0.95 })
        {
            double sumError = 0, sumSquared = 0, variance = 0;
            for (int i = 0; i < pairsPerLevel; i++)
            {
                var (a, b, j) = JaccardPairs.Make(pair++, level, union: 300, rng);
                hasher.Signature(a, sa, scratch);
                hasher.Signature(b, sb, scratch);
                double error = MinHasher.Estimate(sa, sb) - j;
                double sigma = Math.Sqrt(j * (1 - j) / k);
                Assert.True(Math.Abs(error) <= 5 * sigma, $"J={j}: estimate off by {error} (σ {sigma})");
                sumError += error;
                sumSquared += error * error;
                variance += sigma * sigma;
            }
            // Mean error within 4 standard errors of zero; mean squared error near J(1−J)/K (relative spread √(2/150) ≈ 0.12).
            double meanSigma = Math.Sqrt(variance / pairsPerLevel);
            Assert.True(Math.Abs(sumError / pairsPerLevel) <= 4 * meanSigma / Math.Sqrt(pairsPerLevel), $"J={level}: bias {sumError / pairsPerLevel}");
            double ratio = sumSquared / variance;
            Assert.True(ratio is > 0.6 and < 1.45, $"J={level}: mean squared error is {ratio:F2} × the binomial variance");
        }
    }

    [Fact]
    public void Band_collisions_follow_the_S_curve()
    {
        const int k = 128;
        var bands = LshBands.Choose(0.8, k);
        Assert.Equal(new LshBands(12, 10), bands);
        Assert.Equal(0.744, bands.CandidateProbability(0.8), 3);
        Assert.Equal(1 - Math.Pow(1 - Math.Pow(0.7, 10), 12), bands.CandidateProbability(0.7), 12);
        var hasher = new MinHasher(k, 1, ShingleKind.Word, seed: 3);
        var scratch = new MinHasher.Scratch();
        var rng = new Xoshiro256(5);
        var sa = new uint[k];
        var sb = new uint[k];
        int pair = 0;
        foreach (double level in new[] { 0.6, 0.7, 0.8, 0.9 })
        {
            const int pairs = 400;
            int collide = 0;
            for (int i = 0; i < pairs; i++)
            {
                var (a, b, _) = JaccardPairs.Make(pair++, level, union: 200, rng);
                hasher.Signature(a, sa, scratch);
                hasher.Signature(b, sb, scratch);
                if (Enumerable.Range(0, bands.Bands).Any(band => bands.Key(sa, band) == bands.Key(sb, band))) collide++;
            }
            double p = bands.CandidateProbability(level), observed = (double)collide / pairs;
            double sd = Math.Sqrt(p * (1 - p) / pairs);
            Assert.True(Math.Abs(observed - p) <= 4 * sd + 0.01, $"J={level}: {observed:F3} of pairs share a band, the S-curve says {p:F3}");
        }
    }

    [Fact]
    public void Word_and_character_shingles()
    {
        var scratch = new MinHasher.Scratch();
        var words = new MinHasher(64, 2, ShingleKind.Word, 1);
        var s1 = new uint[64];
        var s2 = new uint[64];
        // Case and punctuation do not matter to word shingles; the word order does.
        Assert.Equal(3, words.Signature("The cat, sat on", s1, scratch));
        words.Signature("the CAT sat on!", s2, scratch);
        Assert.Equal(1.0, MinHasher.Estimate(s1, s2));
        words.Signature("on sat cat the", s2, scratch);
        Assert.True(MinHasher.Estimate(s1, s2) < 0.2);
        // Fewer words than n: the whole text is one shingle.
        Assert.Equal(1, new MinHasher(64, 5, ShingleKind.Word, 1).Signature("two words", s1, scratch));
        Assert.Equal(0, words.Signature(" ... ", s1, scratch));
        var chars = new MinHasher(64, 3, ShingleKind.Character, 1);
        Assert.Equal(3, chars.Signature("  AB\t\n cd ", s1, scratch)); // "ab cd": "ab ", "b c", " cd"
        chars.Signature("ab cd", s2, scratch);
        Assert.Equal(1.0, MinHasher.Estimate(s1, s2));
    }
}

public class DedupTests(Xunit.Abstractions.ITestOutputHelper log)
{
    [Fact]
    public void Exact_duplicates_are_found_by_text_and_the_first_is_kept_byte_for_byte()
    {
        using var dir = new TempDirectory();
        string[] lines =
        [
            "{\"text\":\"a b\",\"id\":1}",
            "{ \"id\" : 2 , \"text\" : \"a\\u0020b\" }",  // the same text, written differently
            "{\"text\":\"A b\",\"id\":3}",
            "{\"text\":\"a b\",\"id\":4}",
            "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]}",
            "{\"text\":\"q\\na\"}",                        // the same text as the conversation above
        ];
        var input = Jsonl.Write(dir, "in.jsonl", lines);
        var output = dir.File("out.jsonl");
        var r = DataDedup.Run(new DataDedupOptions(input, output));
        Assert.Equal([lines[0], lines[2], lines[4]], Jsonl.Lines(output));
        Assert.Equal((6L, 3L, 3L, 0L), (r.Records, r.Kept, r.ExactDuplicates, r.NearDuplicates));
        Assert.Equal([(1L, 2L), (1L, 4L), (5L, 6L)], r.Examples.Select(e => (e.KeptLine, e.RemovedLine)));
        Assert.Empty(Jsonl.Others(dir, "in.jsonl", "out.jsonl"));
    }

    [Fact]
    public void Near_duplicates_are_removed_at_the_threshold_with_good_recall_and_precision()
    {
        using var dir = new TempDirectory();
        var rng = new Xoshiro256(99);
        var lines = new List<string>();
        var truth = new List<double>();
        const int pairs = 600;
        for (int p = 0; p < pairs; p++)
        {
            double level = 0.4 + 0.6 * p / (pairs - 1);
            var (a, b, j) = JaccardPairs.Make(p, level, union: 240, rng);
            lines.Add($"{{\"text\":\"{a}\"}}");
            lines.Add($"{{\"text\":\"{b}\",\"pair\":{p}}}");
            truth.Add(j);
        }
        var input = Jsonl.Write(dir, "in.jsonl", lines.ToArray());
        var output = dir.File("out.jsonl");
        var r = DataDedup.Run(new DataDedupOptions(input, output, Near: true, Threshold: 0.8, Ngram: 1, Threads: 2));
        var keptPairs = Jsonl.Lines(output).Where(l => l.Contains("\"pair\"")).Select(l => int.Parse(l[(l.LastIndexOf(':') + 1)..^1])).ToHashSet();
        Assert.Equal(pairs, Jsonl.Lines(output).Count(l => !l.Contains("\"pair\""))); // every first text stays
        int truePositive = 0, falsePositive = 0, falseNegative = 0, highRemoved = 0, high = 0;
        for (int p = 0; p < pairs; p++)
        {
            bool removed = !keptPairs.Contains(p), duplicate = truth[p] >= 0.8;
            if (removed && duplicate) truePositive++;
            if (removed && !duplicate) falsePositive++;
            if (!removed && duplicate) falseNegative++;
            if (truth[p] >= 0.9) { high++; if (removed) highRemoved++; }
            if (truth[p] <= 0.65) Assert.False(removed, $"pair {p} with J={truth[p]:F3} was removed");
        }
        double recall = (double)truePositive / (truePositive + falseNegative), precision = (double)truePositive / (truePositive + falsePositive);
        // Expected from the S-curve and the estimator's spread at 0.8: recall about 0.88, precision about 0.95.
        Assert.True(recall >= 0.8, $"recall {recall:F3}");
        Assert.True(precision >= 0.9, $"precision {precision:F3}");
        Assert.True(highRemoved >= 0.97 * high, $"{highRemoved} of {high} pairs with J ≥ 0.9 removed");
        Assert.Equal(pairs - keptPairs.Count, r.NearDuplicates + r.ExactDuplicates); // pairs at J = 1 are exact copies
        Assert.All(r.Examples, e => Assert.True(e.Jaccard >= 0.8 && e.RemovedLine == e.KeptLine + 1));
        Assert.Contains(r.Examples, e => e.Kind == DuplicateKind.Near);
        log.WriteLine($"recall {recall:F3}, precision {precision:F3}, {highRemoved}/{high} with J ≥ 0.9 removed, {r.Candidates} candidates verified");
    }

    [Fact]
    public void Near_dedup_is_deterministic_across_runs_and_thread_counts()
    {
        using var dir = new TempDirectory();
        var rng = new Xoshiro256(4);
        var lines = new List<string>();
        for (int p = 0; p < 300; p++)
        {
            var (a, b, _) = JaccardPairs.Make(p, 0.6 + 0.4 * rng.NextDouble(), 50, rng);
            lines.Add($"{{\"text\":\"{a}\"}}");
            lines.Add($"{{\"text\":\"{b}\"}}");
        }
        var input = Jsonl.Write(dir, "in.jsonl", lines.ToArray());
        var o = new DataDedupOptions(input, dir.File("1.jsonl"), Near: true, Ngram: 2, Threads: 1);
        var first = DataDedup.Run(o);
        DataDedup.Run(o with { Output = dir.File("2.jsonl"), Threads = 3 });
        Assert.Equal(File.ReadAllBytes(dir.File("1.jsonl")), File.ReadAllBytes(dir.File("2.jsonl")));
        Assert.InRange(first.NearDuplicates, 1, 299);
        var other = DataDedup.Run(o with { Output = dir.File("3.jsonl"), Seed = 1234 });
        Assert.InRange(Math.Abs(other.NearDuplicates - first.NearDuplicates), 0, 40); // another seed: other permutations, similar count
    }

    [Fact]
    public void Bad_options_are_refused_before_any_output()
    {
        using var dir = new TempDirectory();
        var input = Jsonl.Write(dir, "in.jsonl", "{\"text\":\"a\"}");
        Assert.Throws<ArgumentException>(() => DataDedup.Run(new DataDedupOptions(input, dir.File("o.jsonl"), Near: true, Threshold: 1.5)));
        Assert.Throws<ArgumentException>(() => DataDedup.Run(new DataDedupOptions(input, dir.File("o.jsonl"), Near: true, Bands: 500)));
        Assert.Throws<ArgumentException>(() => DataDedup.Run(new DataDedupOptions(input, input)));
        Assert.Empty(Jsonl.Others(dir, "in.jsonl"));
    }
}
