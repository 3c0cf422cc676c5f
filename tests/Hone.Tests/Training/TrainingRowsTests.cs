using Hone.Tensors;
using Hone.Training;
using Xunit;

namespace Hone.Tests.Training;

/// <summary>TrainingRows cuts rows out of the examples on demand; it must give exactly the rows of the plain
/// construction (every epoch's rows built as arrays), which resumed runs and the quickstart's numbers depend on.</summary>
public class TrainingRowsTests
{
    /// <summary>The plain construction: shuffle, concatenate (packing) or take each example, keep rows with a target.</summary>
    static List<(int[] Tokens, int[] Targets)> Reference(List<TrainingExample> examples, int t, bool packing, int pad, ulong seed, int? epoch)
    {
        var order = Enumerable.Range(0, examples.Count).ToArray();
        if (epoch is int e)
        {
            var rng = new Xoshiro256(seed * 0x9E3779B97F4A7C15UL + (ulong)e);
            for (int i = order.Length - 1; i > 0; i--) { int j = rng.NextInt(i + 1); (order[i], order[j]) = (order[j], order[i]); }
        }
        var rows = new List<(int[], int[])>();
        if (!packing)
        {
            foreach (var index in order)
            {
                var x = examples[index];
                var tokens = Enumerable.Repeat(pad, t).ToArray();
                var targets = Enumerable.Repeat(-1, t).ToArray();
                int n = Math.Min(x.Ids.Length, t + 1);
                for (int j = 0; j < Math.Min(n, t); j++) tokens[j] = x.Ids[j];
                for (int j = 0; j + 1 < n; j++) if (x.IsTarget[j + 1]) targets[j] = x.Ids[j + 1];
                if (targets.Any(y => y >= 0)) rows.Add((tokens, targets));
            }
            return rows;
        }
        var ids = order.SelectMany(i => examples[i].Ids).ToList();
        var mask = order.SelectMany(i => examples[i].IsTarget).ToList();
        for (int start = 0; start + t + 1 <= ids.Count; start += t)
        {
            var tokens = new int[t];
            var targets = new int[t];
            for (int j = 0; j < t; j++) { tokens[j] = ids[start + j]; targets[j] = mask[start + j + 1] ? ids[start + j + 1] : -1; }
            if (targets.Any(y => y >= 0)) rows.Add((tokens, targets));
        }
        return rows;
    }

    static List<TrainingExample> RandomExamples(int count, ulong seed, bool promptOnlySpans)
    {
        var rng = new Xoshiro256(seed);
        var examples = new List<TrainingExample>();
        for (int i = 0; i < count; i++)
        {
            int length = rng.NextInt(5) == 0 ? 0 : 1 + rng.NextInt(90);
            var ids = Enumerable.Range(0, length).Select(_ => 1 + rng.NextInt(1000)).ToArray();
            // Prompt then answer: targets only after a random prompt length (long prompts give target-free windows).
            int prompt = promptOnlySpans ? rng.NextInt(length + 1) : Math.Min(1, length);
            examples.Add(new TrainingExample(ids, Enumerable.Range(0, length).Select(j => j >= prompt).ToArray()));
        }
        return examples;
    }

    [Theory]
    [InlineData(true, false, 16)]
    [InlineData(true, true, 16)]
    [InlineData(true, true, 1)]
    [InlineData(false, true, 32)]
    [InlineData(false, false, 7)]
    public void Rows_equal_the_plain_construction_in_every_epoch_and_in_order(bool packing, bool promptOnlySpans, int t)
    {
        var examples = RandomExamples(60, 11, promptOnlySpans);
        var rows = new TrainingRows(examples, t, packing, padId: 0, seed: 5);
        for (int epoch = 0; epoch < 3; epoch++)
        {
            var expected = Reference(examples, t, packing, 0, 5, epoch);
            if (expected.Count != rows.RowsPerEpoch) continue; // epochs whose target-free windows differ in number wrap instead
            for (int r = 0; r < expected.Count; r++)
            {
                var (tokens, targets) = rows.Row((long)epoch * rows.RowsPerEpoch + r);
                Assert.Equal(expected[r].Tokens, tokens);
                Assert.Equal(expected[r].Targets, targets);
            }
        }
        Assert.Equal(Reference(examples, t, packing, 0, 5, 0).Count, rows.RowsPerEpoch);
        var inOrder = rows.InOrder().ToList();
        var expectedInOrder = Reference(examples, t, packing, 0, 5, null);
        Assert.Equal(expectedInOrder.Count, inOrder.Count);
        for (int r = 0; r < inOrder.Count; r++) { Assert.Equal(expectedInOrder[r].Tokens, inOrder[r].Tokens); Assert.Equal(expectedInOrder[r].Targets, inOrder[r].Targets); }
    }

    [Fact]
    public void An_epoch_with_fewer_rows_than_the_first_wraps_instead_of_failing()
    {
        var examples = RandomExamples(40, 3, promptOnlySpans: true);
        var rows = new TrainingRows(examples, 8, packing: true, 0, 9);
        for (long i = 0; i < rows.RowsPerEpoch * 6L; i++) Assert.Equal(8, rows.Row(i).Tokens.Length);
    }
}
