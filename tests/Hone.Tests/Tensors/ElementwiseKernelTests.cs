using System.Runtime.Intrinsics;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Tensors;

/// <summary>Fast kernels against their scalar double-precision twins over every SIMD tail.</summary>
public unsafe class ElementwiseKernelTests
{
    static IEnumerable<int> Lengths() => Enumerable.Range(1, 256).Concat(new[] { 257, 383, 511, 1023, 1537, 2049, 4095, 4097 });

    [Fact]
    public void RmsNorm_matches_reference()
    {
        foreach (int d in Lengths())
        {
            var x = TestData.Random(3 * d, d, 3f);
            var w = TestData.Random(d, d + 1);
            var got = new float[3 * d];
            var want = new float[3 * d];
            fixed (float* px = x, pw = w, pg = got, pe = want)
            {
                RmsNorm.Forward(px, pw, pg, 3, d, 1e-5f);
                RmsNorm.ForwardReference(px, pw, pe, 3, d, 1e-5f);
            }
            TestData.AssertClose(want, got, 1e-5, $"d={d}");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RmsNorm_backward_matches_reference(bool accumulate)
    {
        foreach (int d in Lengths().Append(576))
        {
            var x = TestData.Random(3 * d, d, 3f);
            var w = TestData.Random(d, d + 1);
            var dy = TestData.Random(3 * d, d + 2, 2f);
            var start = TestData.Random(3 * d, d + 3);
            var gotDx = (float[])start.Clone();
            var wantDx = (float[])start.Clone();
            var gotDw = TestData.Random(d, d + 4);
            var wantDw = (float[])gotDw.Clone();
            fixed (float* px = x, pw = w, pdy = dy, pg = gotDx, pe = wantDx, pgw = gotDw, pew = wantDw)
            {
                RmsNormBackward.Compute(px, pw, pdy, pg, pgw, 3, d, 1e-5f, accumulate);
                RmsNormBackward.ComputeReference(px, pw, pdy, pe, pew, 3, d, 1e-5f, accumulate);
            }
            TestData.AssertClose(wantDx, gotDx, 1e-4, $"dx d={d}");
            TestData.AssertClose(wantDw, gotDw, 1e-4, $"dw d={d}");
        }
    }

    [Fact]
    public void Softmax_and_logsumexp_match_reference()
    {
        foreach (int n in Lengths())
        {
            var x = TestData.Random(n, n, 20f);
            var got = (float[])x.Clone();
            var want = (float[])x.Clone();
            fixed (float* pg = got, pe = want, px = x)
            {
                Softmax.InPlace(pg, n);
                Softmax.InPlaceReference(pe, n);
                double lse = Softmax.LogSumExp(px, n);
                double max = x.Max();
                double reference = max + Math.Log(x.Sum(v => Math.Exp(v - max)));
                Assert.True(Math.Abs(lse - reference) < 1e-5 * Math.Max(1, Math.Abs(reference)), $"n={n}: {lse} vs {reference}");
            }
            TestData.AssertClose(want, got, 1e-5, $"n={n}");
        }
    }

    /// <summary>The float exp against exp in double: within 2·10⁻⁷ relative over the range it covers (densely near 0,
    /// where softmax rows live, and at the ends), exactly 0 below −87.34 (its reference twin's rule) and for −∞,
    /// exactly 1 at 0, NaN for NaN.</summary>
    [Fact]
    public void Fast_exp_matches_exp_in_double()
    {
        var rng = new Random(5);
        var xs = new List<float> { 0f, -0f, 1f, -1f, 0.5f, -87.3f, -87.33f, 88.3f, 88.37f, 1e-8f, -1e-8f, float.Epsilon, -float.Epsilon };
        for (int i = 0; i < 20000; i++) xs.Add((float)(rng.NextDouble() * 176 - 88));
        for (int i = 0; i < 20000; i++) xs.Add((float)(rng.NextDouble() * 20 - 15));
        for (float x = -88f; x <= 88f; x += 0.0625f) xs.Add(x);
        double worst = 0;
        for (int i = 0; i < xs.Count; i += 16)
        {
            var lane = new float[16];
            for (int l = 0; l < 16; l++) lane[l] = xs[Math.Min(i + l, xs.Count - 1)];
            var got = FastExp.Exp(Vector512.Create(lane));
            for (int l = 0; l < 16; l++)
            {
                double want = FastExp.ExpReference(lane[l]) == 0 ? 0 : Math.Exp(lane[l]);
                if (want == 0) { Assert.Equal(0f, got.GetElement(l)); continue; }
                double error = Math.Abs(got.GetElement(l) - want) / want;
                worst = Math.Max(worst, error);
                Assert.True(error <= 2e-7, $"exp({lane[l]:R}) = {got.GetElement(l):R}, want {want:R} (relative error {error:E2})");
            }
        }
        Assert.True(worst > 0); // the comparison ran on inexact values
        var special = FastExp.Exp(Vector512.Create(float.NegativeInfinity, -87.34f, -100f, -1e30f, 0f, 0f, 0f, 0f, 0f, 0f, 0f, 0f, 0f, 0f, 0f, 0f));
        for (int l = 0; l < 4; l++) Assert.Equal(0f, special.GetElement(l));
        Assert.Equal(1f, special.GetElement(4));
        Assert.Equal(0f, FastExp.ExpReference(float.NegativeInfinity));
        var nan = FastExp.Exp(Vector512.Create(float.NaN));
        for (int l = 0; l < 16; l++) Assert.True(float.IsNaN(nan.GetElement(l)), "NaN must stay NaN (a diverged run is caught, not hidden)");
    }

    /// <summary>Scaled softmax (training attention's forward row) against its double twin: probabilities, the returned
    /// log-sum-exp, and the elements past n left alone.</summary>
    [Fact]
    public void Scaled_softmax_and_its_logsumexp_match_reference()
    {
        foreach (int n in Lengths().Prepend(0))
        {
            var x = TestData.Random(n + 3, n, 8f);
            var got = (float[])x.Clone();
            var want = (float[])x.Clone();
            float lse, lseReference;
            fixed (float* pg = got, pe = want)
            {
                lse = Softmax.ScaledInPlace(pg, n, 0.125f);
                lseReference = Softmax.ScaledInPlaceReference(pe, n, 0.125f);
            }
            TestData.AssertClose(want, got, want.Select(v => MathF.Abs(v) + 1e-7f).ToArray(), 2e-6, 0, $"n={n}");
            if (n > 0) Assert.True(Math.Abs(lse - lseReference) <= 2e-6 * (Math.Abs(lseReference) + 1), $"n={n}: {lse} vs {lseReference}");
            else Assert.Equal(float.NegativeInfinity, lse);
            for (int i = n; i < n + 3; i++) Assert.Equal(x[i], got[i]);
        }
    }

    /// <summary>The causal-row form: elements from n to the capacity belong to the caller and come back 0, whether the
    /// ragged end runs as one masked vector (capacity reaches the next multiple of 16) or in scalar (it does not).</summary>
    [Fact]
    public void Scaled_softmax_with_capacity_zeroes_the_masked_part_and_matches_reference()
    {
        foreach (int n in Lengths().Where(n => n > 0))
            foreach (int capacity in new[] { n + 1, n + 3, ((n + 15) & ~15) + 5 })
            {
                var x = TestData.Random(capacity + 2, n + capacity, 8f);
                var got = (float[])x.Clone();
                var want = (float[])x.Clone();
                float lse, lseReference;
                fixed (float* pg = got, pe = want)
                {
                    lse = Softmax.ScaledInPlace(pg, n, 0.125f, capacity);
                    lseReference = Softmax.ScaledInPlaceReference(pe, n, 0.125f);
                }
                TestData.AssertClose(want.AsSpan(0, n), got.AsSpan(0, n), want.Take(n).Select(v => MathF.Abs(v) + 1e-7f).ToArray(), 2e-6, 0, $"n={n} capacity={capacity}");
                Assert.True(Math.Abs(lse - lseReference) <= 2e-6 * (Math.Abs(lseReference) + 1), $"n={n} capacity={capacity}: {lse} vs {lseReference}");
                for (int i = n; i < capacity; i++) Assert.True(got[i] == 0, $"n={n} capacity={capacity}: element {i} = {got[i]}");
                for (int i = capacity; i < capacity + 2; i++) Assert.Equal(x[i], got[i]);
            }
    }

    [Fact]
    public void SwiGlu_matches_reference()
    {
        foreach (int n in Lengths())
        {
            var g = TestData.Random(n, n, 8f);
            var u = TestData.Random(n, n + 7, 2f);
            var got = (float[])g.Clone();
            var want = (float[])g.Clone();
            fixed (float* pg = got, pe = want, pu = u)
            {
                Activations.SwiGlu(pg, pu, n);
                Activations.SwiGluReference(pe, pu, n);
            }
            TestData.AssertClose(want, got, 1e-5, $"n={n}");
        }
    }

    [Fact]
    public void SwiGlu_into_another_buffer_leaves_gate_and_matches_in_place_on_every_thread_split()
    {
        using var pool = new WorkerPool(2);
        // 32769 and 49153: n / threads a multiple of 16 with a remainder (the last element must still be covered).
        foreach (int n in Lengths().Append(1 << 15).Append((1 << 15) + 1).Append((1 << 15) + 13).Append(3 * (1 << 14) + 1))
        {
            var g = TestData.Random(n, n + 3, 8f);
            var u = TestData.Random(n, n + 5, 2f);
            var inPlace = (float[])g.Clone();
            var gate = (float[])g.Clone();
            var output = new float[n];
            fixed (float* pi = inPlace, pg = gate, pu = u, po = output)
            {
                Activations.SwiGlu(pi, pu, n);
                RowParallel.SwiGlu(pool, pg, pu, po, n);
            }
            Assert.Equal(g, gate);
            Assert.Equal(inPlace, output);
        }
    }

    [Fact]
    public void Parallel_copy_copies_every_element()
    {
        foreach (int threads in new[] { 2, 3 })
        {
            using var pool = new WorkerPool(threads);
            foreach (int n in Lengths().Append(1 << 15).Append((1 << 15) + 1).Append((1 << 15) + 13).Append(3 * (1 << 14) + 1).Append(100_003))
            {
                var source = TestData.Random(n, n + 11, 1f);
                var destination = new float[n + 1];
                destination[n] = 42f;
                fixed (float* ps = source, pd = destination) RowParallel.Copy(pool, ps, pd, n);
                Assert.Equal(source, destination[..n]);
                Assert.Equal(42f, destination[n]);
            }
        }
    }

    [Theory]
    [InlineData(RopeLayout.Halves)]
    [InlineData(RopeLayout.AdjacentPairs)]
    public void Rope_rotates_the_right_pairs_and_inverts(RopeLayout layout)
    {
        const int dh = 8, heads = 2, positions = 5;
        using var rope = new Rope(dh, dh, 16, 10000, layout);
        var x = TestData.Random(positions * heads * dh, 3);
        var y = (float[])x.Clone();
        fixed (float* p = y) rope.Apply(p, positions, heads, heads * dh, 3);
        for (int t = 0; t < positions; t++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < dh / 2; i++)
                {
                    int a = layout == RopeLayout.Halves ? i : 2 * i, b = layout == RopeLayout.Halves ? i + dh / 2 : 2 * i + 1;
                    int o = (t * heads + h) * dh;
                    double angle = (3 + t) * Math.Pow(10000, -2.0 * i / dh);
                    double ea = x[o + a] * Math.Cos(angle) - x[o + b] * Math.Sin(angle);
                    double eb = x[o + b] * Math.Cos(angle) + x[o + a] * Math.Sin(angle);
                    Assert.Equal(ea, y[o + a], 5);
                    Assert.Equal(eb, y[o + b], 5);
                }
        fixed (float* p = y) rope.Apply(p, positions, heads, heads * dh, 3, inverse: true);
        TestData.AssertClose(x, y, 1e-5, "inverse rotation");
    }

    [Fact]
    public void Llama3_scaling_leaves_high_frequencies_and_divides_low_ones()
    {
        var plain = Rope.InverseFrequencyTable(64, 500000, 1, null, null);
        var scaled = Rope.InverseFrequencyTable(64, 500000, 1, new Llama3RopeScaling(8, 1, 4, 8192), null);
        Assert.Equal(plain[0], scaled[0], 12);                 // short wavelength: unchanged
        Assert.Equal(plain[^1] / 8, scaled[^1], 12);           // long wavelength: divided by the factor
        Assert.Contains(Enumerable.Range(0, 32), i => scaled[i] < plain[i] && scaled[i] > plain[i] / 8); // smooth band
    }

    [Theory]
    [InlineData(1, 0, 4, 2, 16)]    // decode at position 0
    [InlineData(1, 37, 6, 3, 64)]   // decode deep in the cache
    [InlineData(1, 18, 4, 2, 32)]   // decode: a last group of three keys
    [InlineData(1, 2, 4, 2, 48)]    // decode: fewer keys than one group of four
    [InlineData(5, 0, 4, 4, 8)]     // small prefill
    [InlineData(70, 10, 6, 2, 64)]  // prefill across query blocks, after a cached prefix
    [InlineData(129, 0, 9, 3, 64)]  // SmolLM2 head layout
    [InlineData(33, 3, 2, 1, 12)]   // head dim not a multiple of 16
    public void Attention_matches_reference(int tokens, int start, int heads, int kvHeads, int headDim)
    {
        var pool = new WorkerPool(2);
        int kvStride = kvHeads * headDim + 3, qStride = heads * headDim + 5, total = start + tokens;
        var q = TestData.Random(tokens * qStride, 1, 2f);
        var k = TestData.Random(total * kvStride, 2, 2f);
        var v = TestData.Random(total * kvStride, 3);
        var got = new float[tokens * qStride];
        var want = new float[tokens * qStride];
        float scale = 1f / MathF.Sqrt(headDim);
        fixed (float* pq = q, pk = k, pv = v, pg = got, pw = want)
        {
            Attention.Forward(pool, pq, qStride, pk, pv, kvStride, pg, qStride, tokens, heads, kvHeads, headDim, start, scale);
            Attention.ForwardReference(pq, qStride, pk, pv, kvStride, pw, qStride, tokens, heads, kvHeads, headDim, start, scale);
        }
        TestData.AssertClose(want, got, 1e-5, $"T={tokens} P={start}");
        pool.Dispose();
    }
}
