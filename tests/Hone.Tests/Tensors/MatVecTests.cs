using Hone.Tensors;
using Hone.Tensors.Quantization;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Tensors;

public unsafe class MatVecTests
{
    static readonly WorkerPool Two = new(2);

    static byte[] Encode(float[] w, TensorType type)
    {
        switch (type)
        {
            case TensorType.F32:
                var bytes = new byte[w.Length * 4];
                Buffer.BlockCopy(w, 0, bytes, 0, bytes.Length);
                return bytes;
            case TensorType.BF16:
            {
                var u = new ushort[w.Length];
                NumberConversion.SingleToBFloat16(w, u);
                var b = new byte[u.Length * 2]; Buffer.BlockCopy(u, 0, b, 0, b.Length); return b;
            }
            case TensorType.F16:
            {
                var u = new ushort[w.Length];
                NumberConversion.SingleToHalf(w, u);
                var b = new byte[u.Length * 2]; Buffer.BlockCopy(u, 0, b, 0, b.Length); return b;
            }
            default: throw new NotSupportedException();
        }
    }

    static void Check(TensorType type, int n, int k, bool accumulate, int seed)
    {
        var w = TestData.Random(n * k, seed);
        var x = TestData.Random(k, seed + 1);
        var bytes = Encode(w, type);
        var y = TestData.Random(n, seed + 2);
        var expected = new float[n];
        var magnitude = new float[n];
        long rowBytes = type.Traits().BytesFor(k);
        fixed (byte* pw = bytes) fixed (float* px = x, py = y, pe = expected)
        {
            var before = (float[])y.Clone();
            MatVec.Multiply(Two, type, pw, rowBytes, n, k, px, py, accumulate);
            MatVec.MultiplyReference(type, pw, rowBytes, n, k, px, pe);
            for (int j = 0; j < n; j++)
            {
                if (accumulate) pe[j] += before[j];
                double s = accumulate ? Math.Abs(before[j]) : 0;
                for (int i = 0; i < k; i++) s += Math.Abs(w[j * k + i] * x[i]);
                magnitude[j] = (float)s + 1e-6f;
            }
        }
        TestData.AssertClose(expected, y, magnitude, 2e-6, 0, $"{type} n={n} k={k}");
    }

    [Theory]
    [InlineData(TensorType.F32)] [InlineData(TensorType.BF16)] [InlineData(TensorType.F16)]
    public void Every_length_from_0_to_256(TensorType type)
    {
        for (int k = 0; k <= 256; k++) Check(type, 7 + k % 5, k, k % 3 == 0, k);
    }

    [Theory]
    [InlineData(TensorType.F32)] [InlineData(TensorType.BF16)] [InlineData(TensorType.F16)]
    public void Odd_sizes_up_to_4097(TensorType type)
    {
        foreach (var k in new[] { 257, 511, 1023, 1537, 2049, 4097 }) Check(type, 37, k, false, k);
        Check(type, 1001, 33, true, 5);
    }

    static byte[] EncodeAny(float[] w, int n, int k, TensorType type)
    {
        if (!type.Traits().IsQuantized) return Encode(w, type);
        long rowBytes = type.Traits().BytesFor(k);
        var bytes = new byte[rowBytes * n];
        for (int r = 0; r < n; r++)
            BlockQuantization.QuantizeRow(type, w.AsSpan(r * k, k), bytes.AsSpan((int)(r * rowBytes), (int)rowBytes));
        return bytes;
    }

    static float[] Separate(WorkerPool pool, TensorType type, byte[] w, int n, int k, float[] x)
    {
        var y = new float[n];
        fixed (byte* pw = w) fixed (float* px = x, py = y)
            MatVec.Multiply(pool, type, pw, type.Traits().BytesFor(k), n, k, px, py);
        return y;
    }

    public static TheoryData<TensorType, int> FusedCases()
    {
        var data = new TheoryData<TensorType, int>();
        foreach (var type in new[] { TensorType.F32, TensorType.BF16, TensorType.F16, TensorType.Q8_0, TensorType.Q4_0, TensorType.Q4_K, TensorType.Q6_K, TensorType.HQ3_O, TensorType.HQ4_O })
            foreach (var threads in new[] { 1, 2, 3 })
                data.Add(type, threads);
        return data;
    }

    /// <summary>q, k and v in one region give, row for row, exactly what three separate products give — also when
    /// the row counts are not multiples of the 16-row chunks the threads split.</summary>
    [Theory]
    [MemberData(nameof(FusedCases))]
    public void Shared_products_match_separate_ones_bit_for_bit(TensorType type, int threads)
    {
        using var pool = new WorkerPool(threads);
        int k = type.Traits().BlockSize > 32 ? 512 : 96;
        foreach (var (n0, n1, n2) in new[] { (64, 32, 32), (37, 5, 21), (1, 1, 0), (100, 300, 17) })
        {
            var w = new[] { n0, n1, n2 }.Select((n, i) => EncodeAny(TestData.Random(Math.Max(n, 1) * k, 10 + i + n0), Math.Max(n, 1), k, type)).ToArray();
            var x = TestData.Random(k, 3 + n1);
            var y = new[] { new float[n0], new float[n1], new float[Math.Max(n2, 1)] };
            long rowBytes = type.Traits().BytesFor(k);
            fixed (byte* w0 = w[0], w1 = w[1], w2 = w[2]) fixed (float* px = x, y0 = y[0], y1 = y[1], y2 = y[2])
                MatVec.MultiplyShared(pool, type, rowBytes, k, px, w0, n0, y0, w1, n1, y1, n2 == 0 ? null : w2, n2, y2);
            Assert.Equal(Separate(pool, type, w[0], n0, k, x), y[0]);
            Assert.Equal(Separate(pool, type, w[1], n1, k, x), y[1]);
            if (n2 > 0) Assert.Equal(Separate(pool, type, w[2], n2, k, x), y[2]);
        }
    }

    /// <summary>The fused gate/up/SwiGLU region equals two products followed by the activation, bit for bit.</summary>
    [Theory]
    [MemberData(nameof(FusedCases))]
    public void Gated_product_matches_two_products_and_the_activation(TensorType type, int threads)
    {
        using var pool = new WorkerPool(threads);
        int k = type.Traits().BlockSize > 32 ? 256 : 64;
        foreach (int n in new[] { 1, 16, 45, 333 })
        {
            var gateWeights = EncodeAny(TestData.Random(n * k, n), n, k, type);
            var upWeights = EncodeAny(TestData.Random(n * k, n + 1), n, k, type);
            var x = TestData.Random(k, n + 2);
            var expected = Separate(pool, type, gateWeights, n, k, x);
            var up = Separate(pool, type, upWeights, n, k, x);
            fixed (float* pe = expected, pu = up) Activations.SwiGlu(pe, pu, n);
            var gate = new float[n];
            var upScratch = new float[n];
            fixed (byte* pg = gateWeights, pw = upWeights) fixed (float* px = x, py = gate, ps = upScratch)
                MatVec.MultiplyGated(pool, type, type.Traits().BytesFor(k), n, k, px, pg, pw, py, ps);
            Assert.Equal(expected, gate);
        }
    }
}
