using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Tensors;

public unsafe class AttentionTrainingKernelTests
{
    static void Check(int visible, int keys, int seed)
    {
        var scores = TestData.Random(keys, seed);
        var dp = TestData.Random(keys, seed + 1);
        var p = (float[])scores.Clone(); var d = (float[])dp.Clone();
        var pr = (float[])scores.Clone(); var dr = (float[])dp.Clone();
        const float scale = 0.125f, lse = 0.75f, rowDot = 0.3f;
        fixed (float* pp = p, pd = d, rp = pr, rd = dr)
        {
            AttentionTraining.ProbabilitiesAndScoreGradients(pp, pd, visible, keys, scale, lse, rowDot);
            AttentionTraining.ProbabilitiesAndScoreGradientsReference(rp, rd, visible, keys, scale, lse, rowDot);
        }
        var magnitude = new float[keys];
        for (int c = 0; c < keys; c++) magnitude[c] = MathF.Abs(pr[c]) * (MathF.Abs(dp[c]) + rowDot) * scale + 1e-7f;
        TestData.AssertClose(pr, p, pr.Select(x => MathF.Abs(x) + 1e-7f).ToArray(), 2e-6, 0, $"p visible={visible} keys={keys}");
        TestData.AssertClose(dr, d, magnitude, 4e-6, 0, $"dS visible={visible} keys={keys}");
        for (int c = visible; c < keys; c++) Assert.True(p[c] == 0 && d[c] == 0, $"masked key {c} of {keys} not zero");
    }

    /// <summary>The vectorized softmax-gradient row against its double twin over every tail: all lengths 0..256 with
    /// the visible prefix at, below and well below the row length, and odd sizes up to 4097.</summary>
    [Fact]
    public void Probabilities_and_score_gradients_match_the_reference_on_every_tail()
    {
        for (int keys = 0; keys <= 256; keys++)
        {
            Check(keys, keys, keys);
            Check(keys / 2, keys, keys + 1000);
            Check(Math.Max(0, keys - 17), keys, keys + 2000);
        }
        foreach (int keys in new[] { 257, 511, 1023, 1025, 2049, 4097 }) Check(keys - 3, keys, keys);
    }
}
