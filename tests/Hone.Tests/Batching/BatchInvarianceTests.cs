using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Batching;

/// <summary>
/// The kernel properties the batched engine rests on: a row's result does not depend on the other rows of its step.
/// Decode rows: <see cref="MatVec.MultiplyRows"/> gives each row exactly what <see cref="MatVec.Multiply"/> gives it
/// alone. Prompt rows: <see cref="Gemm.MultiplyWeights(WorkerPool, int, int, int, float*, int, TensorType, byte*, long, float*, int, bool, ComputePrecision)"/>
/// gives a row the same bits whatever M it came in. Attention: prompt queries give the same bits however the prompt
/// is cut into chunks, and batched decode queries the same bits as one sequence's call. Every comparison is bitwise.
/// </summary>
public unsafe class BatchInvarianceTests
{
    static readonly WorkerPool Two = new(2);
    static readonly WorkerPool Three = new(3);

    public static TheoryData<TensorType> Types => new() { TensorType.F32, TensorType.F16, TensorType.BF16, TensorType.Q8_0, TensorType.Q4_0, TensorType.Q4_K, TensorType.Q6_K };

    static byte[] Encode(TensorType type, float[] w, int n, int k)
    {
        long rowBytes = type.Traits().BytesFor(k);
        var bytes = new byte[n * rowBytes];
        for (int j = 0; j < n; j++)
        {
            var src = w.AsSpan(j * k, k);
            var dst = bytes.AsSpan((int)(j * rowBytes), (int)rowBytes);
            switch (type)
            {
                case TensorType.F32: System.Runtime.InteropServices.MemoryMarshal.AsBytes(src).CopyTo(dst); break;
                case TensorType.F16:
                    for (int i = 0; i < k; i++) BitConverter.TryWriteBytes(dst[(2 * i)..], NumberConversion.SingleToHalf(src[i])); break;
                case TensorType.BF16:
                    for (int i = 0; i < k; i++) BitConverter.TryWriteBytes(dst[(2 * i)..], NumberConversion.SingleToBFloat16(src[i])); break;
                default: Hone.Tensors.Quantization.BlockQuantization.QuantizeRow(type, src, dst); break;
            }
        }
        return bytes;
    }

    static int DepthFor(TensorType type) => type is TensorType.Q4_K or TensorType.Q6_K ? 512 : 96;

    /// <summary>Depths with every tail of the kernels: F32's 32-, 16- and one-element steps; Q8_0 rows short enough for
    /// the four-row kernels and too long for them.</summary>
    static int[] DecodeDepths(TensorType type) => type switch
    {
        TensorType.F32 or TensorType.F16 or TensorType.BF16 => [96, 117],
        TensorType.Q8_0 or TensorType.Q4_0 => [96, 576, 2176],
        _ => [DepthFor(type)],
    };

    [Theory]
    [MemberData(nameof(Types))]
    public void Decode_rows_equal_one_matrix_vector_product_each(TensorType type)
    {
        foreach (int k in DecodeDepths(type))
        foreach (var precision in new[] { ComputePrecision.Fast, ComputePrecision.Exact })
            foreach (int n in new[] { 37, 70, 130 })
                foreach (bool accumulate in new[] { false, true })
                {
                    const int m = 7;
                    long ldx = k + 3, ldy = n + 5;
                    var w = Encode(type, TestData.Random(n * k, n + k), n, k);
                    var x = TestData.Random((int)(m * ldx), 2);
                    var start = TestData.Random((int)(m * ldy), 3);
                    var batched = (float[])start.Clone();
                    var alone = (float[])start.Clone();
                    long rowBytes = type.Traits().BytesFor(k);
                    fixed (byte* pw = w) fixed (float* px = x, pb = batched, pa = alone)
                    {
                        MatVec.MultiplyRows(Three, type, pw, rowBytes, n, k, px, ldx, m, pb, ldy, accumulate, precision);
                        for (int r = 0; r < m; r++) MatVec.Multiply(Two, type, pw, rowBytes, n, k, px + r * ldx, pa + r * ldy, accumulate, precision);
                    }
                    Assert.True(alone.AsSpan().SequenceEqual(batched), $"{type} {precision} k={k} n={n} accumulate={accumulate}");
                }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Prompt_rows_give_the_same_bits_whatever_the_row_count(TensorType type)
    {
        int k = DepthFor(type);
        foreach (var precision in new[] { ComputePrecision.Fast, ComputePrecision.Exact })
            foreach (bool accumulate in new[] { false, true })
            {
                const int n = 70, m = 23;
                var w = Encode(type, TestData.Random(n * k, 5), n, k);
                long rowBytes = type.Traits().BytesFor(k);
                var x = TestData.Random(m * k, 6);
                var start = TestData.Random(m * n, 7);
                var all = (float[])start.Clone();
                fixed (byte* pw = w) fixed (float* px = x, py = all)
                    Gemm.MultiplyWeights(Two, m, n, k, px, k, type, pw, rowBytes, py, n, accumulate, precision);
                // The same rows in pieces of 1, 2, 5 and 15, at other offsets of the batch.
                var pieces = (float[])start.Clone();
                int row = 0;
                foreach (int count in new[] { 1, 2, 5, 15 })
                {
                    fixed (byte* pw = w) fixed (float* px = x, py = pieces)
                        Gemm.MultiplyWeights(Three, count, n, k, px + row * k, k, type, pw, rowBytes, py + row * n, n, accumulate, precision);
                    row += count;
                }
                Assert.Equal(m, row);
                Assert.True(all.AsSpan().SequenceEqual(pieces), $"{type} {precision} accumulate={accumulate}");
            }
    }

    [Fact]
    public void Prompt_queries_give_the_same_bits_however_the_prompt_is_chunked()
    {
        const int heads = 4, kvHeads = 2, headDim = 24, tokens = 150, context = 160;
        int qd = heads * headDim, kd = kvHeads * headDim;
        var q = TestData.Random(tokens * qd, 1);
        var k = TestData.Random(context * kd, 2);
        var v = TestData.Random(context * kd, 3);
        var whole = new float[tokens * qd];
        var chunked = new float[tokens * qd];
        float scale = 1f / MathF.Sqrt(headDim);
        fixed (float* pq = q, pk = k, pv = v, pw = whole, pc = chunked)
        {
            Attention.Forward(Two, pq, qd, pk, pv, kd, pw, qd, tokens, heads, kvHeads, headDim, 0, scale, promptRows: true);
            int start = 0;
            foreach (int count in new[] { 1, 63, 2, 1, 70, 13 })
            {
                Attention.Forward(Three, pq + start * qd, qd, pk, pv, kd, pc + start * qd, qd, count, heads, kvHeads, headDim, start, scale, promptRows: true);
                start += count;
            }
            Assert.Equal(tokens, start);
        }
        Assert.True(whole.AsSpan().SequenceEqual(chunked));
    }

    [Fact]
    public void Batched_decode_queries_equal_one_call_per_sequence()
    {
        const int heads = 6, kvHeads = 2, headDim = 20, context = 90, sequences = 5;
        int qd = heads * headDim, kd = kvHeads * headDim;
        var q = TestData.Random(sequences * qd, 11);
        var caches = Enumerable.Range(0, sequences).Select(i => (K: TestData.Random(context * kd, 20 + i), V: TestData.Random(context * kd, 40 + i))).ToArray();
        int[] positions = [0, 17, 89, 3, 50];
        var batched = new float[sequences * qd];
        var alone = new float[sequences * qd];
        float scale = 0.3f;
        var handles = caches.SelectMany(c => new[] { System.Runtime.InteropServices.GCHandle.Alloc(c.K, System.Runtime.InteropServices.GCHandleType.Pinned), System.Runtime.InteropServices.GCHandle.Alloc(c.V, System.Runtime.InteropServices.GCHandleType.Pinned) }).ToArray();
        try
        {
            fixed (float* pq = q, pb = batched, pa = alone)
            {
                var queries = new Attention.DecodeQuery[sequences];
                for (int s = 0; s < sequences; s++)
                {
                    nint kp = handles[2 * s].AddrOfPinnedObject(), vp = handles[2 * s + 1].AddrOfPinnedObject();
                    queries[s] = new Attention.DecodeQuery((nint)(pq + s * qd), kp, vp, (nint)(pb + s * qd), positions[s]);
                    Attention.Forward(Two, pq + s * qd, qd, (float*)kp, (float*)vp, kd, pa + s * qd, qd, 1, heads, kvHeads, headDim, positions[s], scale);
                }
                Attention.ForwardDecodeBatch(Three, queries, kd, heads, kvHeads, headDim, scale);
            }
        }
        finally { foreach (var h in handles) h.Free(); }
        Assert.True(alone.AsSpan().SequenceEqual(batched));
    }
    [Theory]
    [InlineData(8, 1, 64, 0)]   // one KV head for eight query heads: runs of four
    [InlineData(10, 2, 80, 37)] // groups of five; head dim with a 16-wide column tail
    [InlineData(9, 3, 64, 190)] // SmolLM2's layout deep in the cache
    [InlineData(6, 2, 20, 18)]  // head dim not a multiple of 16
    public void Decode_heads_give_the_same_bits_however_threads_group_them(int heads, int kvHeads, int headDim, int position)
    {
        int qd = heads * headDim, kd = kvHeads * headDim, context = position + 1;
        var q = TestData.Random(qd, 5);
        var k = TestData.Random(context * kd, 6);
        var v = TestData.Random(context * kd, 7);
        foreach (var cacheType in new[] { KvCacheType.F32, KvCacheType.BF16 })
        {
            var kc = cacheType == KvCacheType.F32 ? System.Runtime.InteropServices.MemoryMarshal.AsBytes(k.AsSpan()).ToArray() : ToBFloat16(k);
            var vc = cacheType == KvCacheType.F32 ? System.Runtime.InteropServices.MemoryMarshal.AsBytes(v.AsSpan()).ToArray() : ToBFloat16(v);
            var together = new float[qd];
            var apart = new float[qd];
            using var one = new WorkerPool(1);
            using var perHead = new WorkerPool(heads);
            fixed (float* pq = q, pt = together, pa = apart)
            fixed (byte* pk = kc, pv = vc)
            {
                Attention.Forward(one, pq, qd, pk, pv, kd, pt, qd, 1, heads, kvHeads, headDim, position, 0.2f, cacheType: cacheType);
                Attention.Forward(perHead, pq, qd, pk, pv, kd, pa, qd, 1, heads, kvHeads, headDim, position, 0.2f, cacheType: cacheType);
            }
            Assert.True(together.AsSpan().SequenceEqual(apart), $"{cacheType}");
        }
    }

    static byte[] ToBFloat16(float[] x)
    {
        var bytes = new byte[x.Length * 2];
        for (int i = 0; i < x.Length; i++) BitConverter.TryWriteBytes(bytes.AsSpan(2 * i), NumberConversion.SingleToBFloat16(x[i]));
        return bytes;
    }
}
