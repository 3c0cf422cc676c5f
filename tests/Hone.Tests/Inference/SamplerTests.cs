using Hone.Inference;
using Xunit;

namespace Hone.Tests.Inference;

public class SamplerTests
{
    static float[] Logits() => [1f, 3f, 2f, -1f, 2.5f, 0f];

    [Fact]
    public void Temperature_zero_is_greedy_and_penalties_apply_before_it()
    {
        Assert.Equal(1, new Sampler(SamplerOptions.Greedy).Sample(Logits()));
        var s = new Sampler(SamplerOptions.Greedy with { RepetitionPenalty = 2f });
        s.Accept(1);
        Assert.Equal(4, s.Sample(Logits())); // 3/2 = 1.5 < 2.5
        var f = new Sampler(SamplerOptions.Greedy with { FrequencyPenalty = 0.4f });
        f.Accept(1); f.Accept(1);
        Assert.Equal(4, f.Sample(Logits())); // 3 - 0.8 = 2.2 < 2.5
    }

    [Fact]
    public void Same_seed_same_sequence_different_seed_different_sequence()
    {
        int[] Run(ulong seed)
        {
            var s = new Sampler(new SamplerOptions(Temperature: 1.5f, TopK: 0, TopP: 1f, MinP: 0f, Seed: seed));
            return Enumerable.Range(0, 200).Select(_ => s.Sample(Logits())).ToArray();
        }
        Assert.Equal(Run(42), Run(42));
        Assert.NotEqual(Run(42), Run(43));
    }

    [Fact]
    public void Top_k_top_p_and_min_p_restrict_the_candidates()
    {
        var topK = new Sampler(new SamplerOptions(Temperature: 5f, TopK: 2, TopP: 1f, MinP: 0f, Seed: 1));
        Assert.All(Enumerable.Range(0, 300).Select(_ => topK.Sample(Logits())), t => Assert.Contains(t, new[] { 1, 4 }));
        // Probabilities at T=1: token 1 ≈ 0.40, 4 ≈ 0.24, 2 ≈ 0.15 ...; top-p 0.5 keeps tokens 1 and 4.
        var topP = new Sampler(new SamplerOptions(Temperature: 1f, TopK: 0, TopP: 0.5f, MinP: 0f, Seed: 2));
        var seen = Enumerable.Range(0, 500).Select(_ => topP.Sample(Logits())).Distinct().Order().ToArray();
        Assert.Equal(new[] { 1, 4 }, seen);
        // min-p 0.5: keep tokens with p ≥ 0.5·p(1): only 1 and 4 (e^-0.5 ≈ 0.61).
        var minP = new Sampler(new SamplerOptions(Temperature: 1f, TopK: 0, TopP: 1f, MinP: 0.5f, Seed: 3));
        Assert.Equal(new[] { 1, 4 }, Enumerable.Range(0, 500).Select(_ => minP.Sample(Logits())).Distinct().Order().ToArray());
    }

    [Fact]
    public void Sampling_follows_the_softmax_distribution()
    {
        var s = new Sampler(new SamplerOptions(Temperature: 1f, TopK: 0, TopP: 1f, MinP: 0f, Seed: 7));
        var logits = Logits();
        var counts = new int[logits.Length];
        const int n = 40000;
        for (int i = 0; i < n; i++) counts[s.Sample(logits)]++;
        double z = logits.Sum(l => Math.Exp(l));
        for (int i = 0; i < logits.Length; i++)
        {
            double p = Math.Exp(logits[i]) / z;
            Assert.InRange(counts[i] / (double)n, p - 4 * Math.Sqrt(p * (1 - p) / n) - 1e-3, p + 4 * Math.Sqrt(p * (1 - p) / n) + 1e-3);
        }
    }

    [Fact]
    public void Invalid_settings_are_refused()
    {
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplerOptions(Temperature: -1)));
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplerOptions(TopP: 0)));
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplerOptions(MinP: 1)));
    }

    [Fact]
    public void Greedy_fast_path_picks_what_the_candidate_chain_picks()
    {
        var rng = new Random(3);
        // Lengths around every vector width's tails; values from a few levels so the maximum ties, zeros of both signs.
        foreach (int n in new[] { 1, 2, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 2048, 49152 })
            for (int trial = 0; trial < 20; trial++)
            {
                var x = new float[n];
                for (int i = 0; i < n; i++) x[i] = rng.Next(4) switch { 0 => 0f, 1 => -0f, 2 => rng.Next(3), _ => -rng.Next(5) };
                int expected = 0;
                for (int i = 1; i < n; i++) if (x[i] > x[expected]) expected = i;
                Assert.Equal(expected, Sampler.GreedyArgMax(x, out bool finite));
                Assert.True(finite);
                var allowAll = Enumerable.Repeat(ulong.MaxValue, (n + 63) / 64).ToArray(); // a mask takes the candidate chain
                Assert.Equal(expected, new Sampler(SamplerOptions.Greedy).Sample(x, allowAll));
                Assert.Equal(expected, new Sampler(SamplerOptions.Greedy).Sample(x));
            }
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    public void Greedy_fast_path_refuses_non_finite_logits_anywhere(float bad)
    {
        foreach (int n in new[] { 1, 17, 64, 100 })
            foreach (int at in new[] { 0, n / 2, n - 1 })
            {
                var x = new float[n];
                x[at] = bad;
                Sampler.GreedyArgMax(x, out bool finite);
                Assert.False(finite, $"n={n} at={at}");
                Assert.Throws<Hone.Model.NonFiniteException>(() => new Sampler(SamplerOptions.Greedy).Sample(x));
            }
    }
}
