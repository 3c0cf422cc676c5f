using Hone.Tensors;
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
}
