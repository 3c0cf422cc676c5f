using System.Runtime.InteropServices;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Tensors;

/// <summary>A bf16 KV cache: attention over it gives, bit for bit, what the fp32 kernels give over the same values
/// widened (the rounding happens once, when a row is stored), for decode, batched decode and chunked prefill, with head
/// sizes that are and are not a multiple of the vector width.</summary>
public unsafe class KvCacheTypeTests
{
    static readonly WorkerPool Two = new(2);
    static readonly WorkerPool Three = new(3);

    /// <summary>values rounded to bf16: the 16-bit cache and the same values as fp32.</summary>
    static (ushort[] Half, float[] Widened) Rounded(float[] values)
    {
        var half = new ushort[values.Length];
        var widened = new float[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            half[i] = NumberConversion.SingleToBFloat16(values[i]);
            widened[i] = NumberConversion.BFloat16ToSingle(half[i]);
        }
        return (half, widened);
    }

    [Theory]
    [InlineData(20)]
    [InlineData(64)]
    [InlineData(80)]
    public void Decode_and_prefill_over_bf16_equal_fp32_over_the_widened_values(int headDim)
    {
        const int heads = 6, kvHeads = 2, tokens = 70, context = 80;
        int qd = heads * headDim, kd = kvHeads * headDim;
        var q = TestData.Random(tokens * qd, 1);
        var (k16, k32) = Rounded(TestData.Random(context * kd, 2));
        var (v16, v32) = Rounded(TestData.Random(context * kd, 3));
        float scale = 1f / MathF.Sqrt(headDim);
        var expected = new float[tokens * qd];
        var actual = new float[tokens * qd];
        fixed (float* pq = q, pk = k32, pv = v32, pe = expected, pa = actual)
        fixed (ushort* hk = k16, hv = v16)
        {
            // Prefill in chunks, then one decode query at the last position.
            int start = 0;
            foreach (int count in new[] { 1, 40, 2, 26 })
            {
                Attention.Forward(Two, pq + start * qd, qd, pk, pv, kd, pe + start * qd, qd, count, heads, kvHeads, headDim, start, scale, promptRows: true);
                Attention.Forward(Three, pq + start * qd, qd, hk, hv, kd, pa + start * qd, qd, count, heads, kvHeads, headDim, start, scale, promptRows: true,
                    cacheType: KvCacheType.BF16);
                start += count;
            }
            Attention.Forward(Two, pq + (tokens - 1) * qd, qd, pk, pv, kd, pe + (tokens - 1) * qd, qd, 1, heads, kvHeads, headDim, context - 1, scale);
            Attention.Forward(Two, pq + (tokens - 1) * qd, qd, hk, hv, kd, pa + (tokens - 1) * qd, qd, 1, heads, kvHeads, headDim, context - 1, scale,
                cacheType: KvCacheType.BF16);
        }
        Assert.True(expected.AsSpan().SequenceEqual(actual), $"Dh={headDim}");
    }

    [Fact]
    public void Batched_decode_over_bf16_equals_one_call_per_sequence()
    {
        const int heads = 6, kvHeads = 3, headDim = 32, context = 90, sequences = 4;
        int qd = heads * headDim, kd = kvHeads * headDim;
        var q = TestData.Random(sequences * qd, 11);
        var caches = Enumerable.Range(0, sequences).Select(i => (K: Rounded(TestData.Random(context * kd, 20 + i)).Half, V: Rounded(TestData.Random(context * kd, 40 + i)).Half)).ToArray();
        int[] positions = [0, 17, 89, 50];
        var batched = new float[sequences * qd];
        var alone = new float[sequences * qd];
        var handles = caches.SelectMany(c => new[] { GCHandle.Alloc(c.K, GCHandleType.Pinned), GCHandle.Alloc(c.V, GCHandleType.Pinned) }).ToArray();
        try
        {
            fixed (float* pq = q, pb = batched, pa = alone)
            {
                var queries = new Attention.DecodeQuery[sequences];
                for (int s = 0; s < sequences; s++)
                {
                    nint kp = handles[2 * s].AddrOfPinnedObject(), vp = handles[2 * s + 1].AddrOfPinnedObject();
                    queries[s] = new Attention.DecodeQuery((nint)(pq + s * qd), kp, vp, (nint)(pb + s * qd), positions[s]);
                    Attention.Forward(Two, pq + s * qd, qd, (void*)kp, (void*)vp, kd, pa + s * qd, qd, 1, heads, kvHeads, headDim, positions[s], 0.3f,
                        cacheType: KvCacheType.BF16);
                }
                Attention.ForwardDecodeBatch(Three, queries, kd, heads, kvHeads, headDim, 0.3f, KvCacheType.BF16);
            }
        }
        finally { foreach (var h in handles) h.Free(); }
        Assert.True(alone.AsSpan().SequenceEqual(batched));
    }

    [Fact]
    public void Store_rounds_to_nearest_even_and_load_widens_exactly()
    {
        var values = TestData.Random(37, 5, 100f);
        var half = new ushort[37];
        var back = new float[37];
        fixed (float* v = values, b = back) fixed (ushort* h = half)
        {
            KvCacheTypes.Store(KvCacheType.BF16, v, h, 37);
            KvCacheTypes.Load(KvCacheType.BF16, h, b, 37);
        }
        for (int i = 0; i < 37; i++)
        {
            Assert.Equal(NumberConversion.SingleToBFloat16(values[i]), half[i]);
            Assert.Equal(NumberConversion.BFloat16ToSingle(half[i]), back[i]);
        }
        Assert.Equal(KvCacheType.BF16, KvCacheTypes.Parse("BF16"));
        Assert.Contains("known: f32, bf16", Assert.Throws<ArgumentException>(() => KvCacheTypes.Parse("q8_0")).Message);
    }
}
