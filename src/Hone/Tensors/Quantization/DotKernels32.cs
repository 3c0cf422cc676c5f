using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hone.Tensors.Quantization;

/// <summary>
/// Dot products of Q8_0 and Q4_0 weight rows (32-element blocks) with Q8_0 activations.
///
/// The activations are first unpacked once per call ("prepared"): quants contiguous, scales as floats, and for Q4_0
/// the per-block activation sums. Q4_0 nibbles are multiplied unsigned (0..15, so vpmaddubsw cannot saturate:
/// 2·15·127 &lt; 2^15) and the −8 offset is applied afterwards: Σ (q − 8)·y = Σ q·y − 8·Σ y, where the second term
/// only depends on the row through the block scale: Σ_b dw_b·(8·dy_b·Σy_b). Q8_0 is signed × signed, done as
/// |w| × (y with w's sign), exact since our activations never hold −128.
/// </summary>
internal static unsafe class DotKernels32
{
    const int Block = 32;
    const int StackPreparedLimit = 16384; // elements: prepared activations up to ~20 KB live on the stack

    /// <summary>Activations unpacked from Q8_0 blocks.</summary>
    readonly struct Prepared(sbyte* quants, float* scales, float* offsets)
    {
        /// <summary>n int8 quants, contiguous (64-byte aligned)</summary>
        public readonly sbyte* Quants = quants;
        /// <summary>n/32 block scales dy as float</summary>
        public readonly float* Scales = scales;
        /// <summary>n/32 values 8·dy·Σ(block quants): the Q4_0 offset term per unit weight scale</summary>
        public readonly float* Offsets = offsets;
    }

    public static void Run(SimdLevel level, TensorType type, byte* weights, long rowBytes, int rows, byte* xq, int n, float* y)
    {
        int blocks = n / Block;
        if (rows == 0) return;
        // layout: quants (n bytes) | scales (blocks floats) | offsets (blocks floats); +64 for alignment
        long bytes = n + 8L * blocks + 64;
        byte* raw = n <= StackPreparedLimit ? null : (byte*)NativeMemory.Alloc((nuint)bytes);
        byte* stack = stackalloc byte[n <= StackPreparedLimit ? (int)bytes : 0];
        try
        {
            byte* start = raw != null ? raw : stack;
            sbyte* quants = (sbyte*)(((nint)start + 63) & ~(nint)63);
            var prepared = new Prepared(quants, (float*)(quants + n), (float*)(quants + n) + blocks);
            Prepare(level, xq, blocks, prepared);
            for (int r = 0; r < rows; r++)
            {
                byte* w = weights + r * rowBytes;
                y[r] = (type, level) switch
                {
                    (TensorType.Q4_0, SimdLevel.Vector512) => DotQ4_0Row512(w, prepared.Quants, prepared.Scales, prepared.Offsets, blocks),
                    (TensorType.Q4_0, SimdLevel.Vector256) => DotQ4_0Row256(w, prepared.Quants, prepared.Scales, prepared.Offsets, blocks),
                    (TensorType.Q4_0, SimdLevel.Vector128) => DotQ4_0Row128(w, prepared.Quants, prepared.Scales, prepared.Offsets, blocks),
                    (TensorType.Q8_0, SimdLevel.Vector512) => DotQ8_0Row512(w, prepared.Quants, prepared.Scales, blocks),
                    (TensorType.Q8_0, SimdLevel.Vector256) => DotQ8_0Row256(w, prepared.Quants, prepared.Scales, blocks),
                    (TensorType.Q8_0, SimdLevel.Vector128) => DotQ8_0Row128(w, prepared.Quants, prepared.Scales, blocks),
                    _ => throw new UnreachableException(),
                };
            }
        }
        finally
        {
            if (raw != null) NativeMemory.Free(raw);
        }
    }

    /// <param name="xq">blocks Q8_0 blocks</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Prepare(SimdLevel level, byte* xq, int blocks, Prepared p)
    {
        for (int b = 0; b < blocks; b++, xq += Q8_0Block.Bytes)
        {
            byte* q = xq + Q8_0Block.Qs;
            int sum;
            if (level >= SimdLevel.Vector256)
            {
                var v = Vector256.Load(q);
                v.Store((byte*)p.Quants + Block * b);
                // Σ signed bytes = Σ (byte ^ 0x80) − 32·128, with the unsigned sums from vpsadbw
                var sad = Avx2.SumAbsoluteDifferences(v ^ Vector256.Create((byte)0x80), Vector256<byte>.Zero).AsInt64();
                sum = (int)Vector256.Sum(sad) - Block * 128;
            }
            else
            {
                var lo = Vector128.Load(q);
                var hi = Vector128.Load(q + 16);
                lo.Store((byte*)p.Quants + Block * b);
                hi.Store((byte*)p.Quants + Block * b + 16);
                var sad = Sse2.SumAbsoluteDifferences(lo ^ Vector128.Create((byte)0x80), Vector128<byte>.Zero).AsInt64()
                        + Sse2.SumAbsoluteDifferences(hi ^ Vector128.Create((byte)0x80), Vector128<byte>.Zero).AsInt64();
                sum = (int)Vector128.Sum(sad) - Block * 128;
            }
            float dy = Fp16.ToSingle(*(ushort*)(xq + Q8_0Block.D));
            p.Scales[b] = dy;
            p.Offsets[b] = 8 * dy * sum;
        }
    }

    // ------------------------------------------------------------------ Q4_0, AVX-512

    /// <param name="w">blocks Q4_0 blocks (18 bytes each)</param>
    /// <param name="ys">blocks·32 int8 activations</param>
    /// <param name="dy">blocks activation scales</param>
    /// <param name="offsets">blocks offset terms 8·dy·Σy</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float DotQ4_0Row512(byte* w, sbyte* ys, float* dy, float* offsets, int blocks)
    {
        var acc0 = Vector512<float>.Zero;
        var acc1 = Vector512<float>.Zero;
        var acc2 = Vector512<float>.Zero;
        var acc3 = Vector512<float>.Zero;
        var offsetAcc = Vector256<float>.Zero;
        // word index of block k's scale inside the 128 bytes from the first of 8 blocks: byte 18k
        var scaleWords = Vector512.Create((short)0, 9, 18, 27, 36, 45, 54, 63, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
        int b = 0;
        for (; b + 8 <= blocks; b += 8, w += 8 * Q4_0Block.Bytes, ys += 8 * Block)
        {
            var halves = Avx512BW.PermuteVar32x16x2(Vector512.Load((short*)w), scaleWords, Vector512.Load((short*)(w + 64)));
            var dw = Fp16.ToSingle(Avx2.ConvertToVector256Int32(halves.GetLower().GetLower().AsUInt16()).AsInt32());
            var scales = (dw * Vector256.Load(dy + b)).ToVector512Unsafe();
            offsetAcc = Fma.MultiplyAdd(dw, Vector256.Load(offsets + b), offsetAcc);
            acc0 = Q4_0Pair512(w, ys, scales, Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), acc0);
            acc1 = Q4_0Pair512(w + 2 * Q4_0Block.Bytes, ys + 64, scales, Vector512.Create(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3), acc1);
            acc2 = Q4_0Pair512(w + 4 * Q4_0Block.Bytes, ys + 128, scales, Vector512.Create(4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5), acc2);
            acc3 = Q4_0Pair512(w + 6 * Q4_0Block.Bytes, ys + 192, scales, Vector512.Create(6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7), acc3);
        }
        var tail = Vector256<float>.Zero;
        for (; b < blocks; b++, w += Q4_0Block.Bytes, ys += Block)
        {
            float dw = Fp16.ToSingle(*(ushort*)w);
            tail = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Q4_0Block256(w, ys)), Vector256.Create(dw * dy[b]), tail);
            offsetAcc = Fma.MultiplyAdd(Vector256.CreateScalar(dw), Vector256.CreateScalar(offsets[b]), offsetAcc);
        }
        return Vector512.Sum((acc0 + acc1) + (acc2 + acc3)) + Vector256.Sum(tail) - Vector256.Sum(offsetAcc);
    }

    /// <summary>Two Q4_0 blocks times 64 activations, accumulated with their scales.</summary>
    /// <param name="w">2 Q4_0 blocks</param>
    /// <param name="y">64 int8 activations</param>
    /// <param name="scales">dw·dy of 8 blocks in lanes 0..7</param>
    /// <param name="lanes">which scale each of the 16 int32 partial sums takes (8 lanes per block)</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Q4_0Pair512(byte* w, sbyte* y, Vector512<float> scales, Vector512<int> lanes, Vector512<float> acc)
    {
        // [qs0, qs0, qs1, qs1] shifted by [0, 4, 0, 4] per 16 bytes: the nibbles of both blocks in element order
        var packed = Vector512.Create(
            Avx2.BroadcastVector128ToVector256(w + Q4_0Block.Qs),
            Avx2.BroadcastVector128ToVector256(w + Q4_0Block.Bytes + Q4_0Block.Qs));
        var q = Avx512F.ShiftRightLogicalVariable(packed.AsUInt64(), Vector512.Create(0ul, 0, 4, 4, 0, 0, 4, 4)).AsByte()
                & Vector512.Create((byte)0x0F);
        var pairs = Avx512BW.MultiplyAddAdjacent(q, Vector512.Load(y));
        var sums = Avx512BW.MultiplyAddAdjacent(pairs, Vector512.Create((short)1));
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(sums), Avx512F.PermuteVar16x32(scales, lanes), acc);
    }

    /// <summary>Unsigned-nibble products of one Q4_0 block with 32 activations, as 8 int32 partial sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Q4_0Block256(byte* w, sbyte* y)
    {
        var q = Avx2.ShiftRightLogicalVariable(Avx2.BroadcastVector128ToVector256(w + Q4_0Block.Qs).AsUInt64(), Vector256.Create(0ul, 0, 4, 4)).AsByte()
                & Vector256.Create((byte)0x0F);
        return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Vector256.Load(y)), Vector256.Create((short)1));
    }

    // ------------------------------------------------------------------ Q4_0, AVX2

    /// <param name="w">blocks Q4_0 blocks</param>
    /// <param name="ys">blocks·32 int8 activations</param>
    /// <param name="dy">blocks activation scales</param>
    /// <param name="offsets">blocks offset terms 8·dy·Σy</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float DotQ4_0Row256(byte* w, sbyte* ys, float* dy, float* offsets, int blocks)
    {
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        var acc2 = Vector256<float>.Zero;
        var acc3 = Vector256<float>.Zero;
        var offsetAcc = Vector256<float>.Zero;
        var scaleOffsets = Vector256.Create(0, 18, 36, 54, 72, 90, 108, 126);
        int b = 0;
        for (; b + 8 <= blocks; b += 8, w += 8 * Q4_0Block.Bytes, ys += 8 * Block)
        {
            var dw = Fp16.ToSingle(Avx2.GatherVector256((int*)w, scaleOffsets, 1));
            var scales = dw * Vector256.Load(dy + b);
            offsetAcc = Fma.MultiplyAdd(dw, Vector256.Load(offsets + b), offsetAcc);
            for (int k = 0; k < 8; k += 4)
            {
                acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Q4_0Block256(w + k * 18, ys + k * 32)), Avx2.PermuteVar8x32(scales, Vector256.Create(k)), acc0);
                acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Q4_0Block256(w + k * 18 + 18, ys + k * 32 + 32)), Avx2.PermuteVar8x32(scales, Vector256.Create(k + 1)), acc1);
                acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Q4_0Block256(w + k * 18 + 36, ys + k * 32 + 64)), Avx2.PermuteVar8x32(scales, Vector256.Create(k + 2)), acc2);
                acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Q4_0Block256(w + k * 18 + 54, ys + k * 32 + 96)), Avx2.PermuteVar8x32(scales, Vector256.Create(k + 3)), acc3);
            }
        }
        float offsetTail = 0;
        for (; b < blocks; b++, w += Q4_0Block.Bytes, ys += Block)
        {
            float dw = Fp16.ToSingle(*(ushort*)w);
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Q4_0Block256(w, ys)), Vector256.Create(dw * dy[b]), acc0);
            offsetTail += dw * offsets[b];
        }
        return Vector256.Sum((acc0 + acc1) + (acc2 + acc3)) - (Vector256.Sum(offsetAcc) + offsetTail);
    }

    // ------------------------------------------------------------------ Q4_0, SSSE3

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float DotQ4_0Row128(byte* w, sbyte* ys, float* dy, float* offsets, int blocks)
    {
        var acc0 = Vector128<float>.Zero;
        var acc1 = Vector128<float>.Zero;
        float offsetSum = 0;
        var ones = Vector128.Create((short)1);
        var mask = Vector128.Create((byte)0x0F);
        for (int b = 0; b < blocks; b++, w += Q4_0Block.Bytes, ys += Block)
        {
            var packed = Vector128.Load(w + Q4_0Block.Qs);
            var low = packed & mask;
            var high = Sse2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & mask;
            var sums = Sse2.MultiplyAddAdjacent(Ssse3.MultiplyAddAdjacent(low, Vector128.Load(ys)), ones)
                     + Sse2.MultiplyAddAdjacent(Ssse3.MultiplyAddAdjacent(high, Vector128.Load(ys + 16)), ones);
            float dw = Fp16.ToSingle(*(ushort*)w);
            var term = Sse2.ConvertToVector128Single(sums) * Vector128.Create(dw * dy[b]);
            if ((b & 1) == 0) acc0 += term; else acc1 += term;
            offsetSum += dw * offsets[b];
        }
        return Vector128.Sum(acc0 + acc1) - offsetSum;
    }

    // ------------------------------------------------------------------ Q8_0, AVX-512

    /// <param name="w">blocks Q8_0 blocks (34 bytes each)</param>
    /// <param name="ys">blocks·32 int8 activations</param>
    /// <param name="dy">blocks activation scales</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float DotQ8_0Row512(byte* w, sbyte* ys, float* dy, int blocks)
    {
        var acc0 = Vector512<float>.Zero;
        var acc1 = Vector512<float>.Zero;
        var acc2 = Vector512<float>.Zero;
        var acc3 = Vector512<float>.Zero;
        // word index of block k's scale (k < 4) inside 128 bytes from the block: byte 34k
        var scaleWords = Vector512.Create((short)0, 17, 34, 51, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
        int b = 0;
        for (; b + 8 <= blocks; b += 8, w += 8 * Q8_0Block.Bytes, ys += 8 * Block)
        {
            var first = Avx512BW.PermuteVar32x16x2(Vector512.Load((short*)w), scaleWords, Vector512.Load((short*)(w + 64)));
            var second = Avx512BW.PermuteVar32x16x2(Vector512.Load((short*)(w + 136)), scaleWords, Vector512.Load((short*)(w + 200)));
            var halves = Sse2.UnpackLow(first.GetLower().GetLower().AsInt64(), second.GetLower().GetLower().AsInt64()).AsUInt16();
            var dw = Fp16.ToSingle(Avx2.ConvertToVector256Int32(halves).AsInt32());
            var scales = (dw * Vector256.Load(dy + b)).ToVector512Unsafe();
            acc0 = Q8_0Pair512(w, ys, scales, Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), acc0);
            acc1 = Q8_0Pair512(w + 2 * Q8_0Block.Bytes, ys + 64, scales, Vector512.Create(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3), acc1);
            acc2 = Q8_0Pair512(w + 4 * Q8_0Block.Bytes, ys + 128, scales, Vector512.Create(4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5), acc2);
            acc3 = Q8_0Pair512(w + 6 * Q8_0Block.Bytes, ys + 192, scales, Vector512.Create(6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7), acc3);
        }
        var tail = Vector256<float>.Zero;
        for (; b < blocks; b++, w += Q8_0Block.Bytes, ys += Block)
        {
            float scale = Fp16.ToSingle(*(ushort*)w) * dy[b];
            tail = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Q8_0Block256(w, ys)), Vector256.Create(scale), tail);
        }
        return Vector512.Sum((acc0 + acc1) + (acc2 + acc3)) + Vector256.Sum(tail);
    }

    /// <param name="w">2 Q8_0 blocks</param>
    /// <param name="y">64 int8 activations</param>
    /// <param name="scales">dw·dy of 8 blocks in lanes 0..7</param>
    /// <param name="lanes">which scale each of the 16 int32 partial sums takes</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Q8_0Pair512(byte* w, sbyte* y, Vector512<float> scales, Vector512<int> lanes, Vector512<float> acc)
    {
        var q = Vector512.Create(Vector256.Load((sbyte*)w + Q8_0Block.Qs), Vector256.Load((sbyte*)w + Q8_0Block.Bytes + Q8_0Block.Qs));
        var x = Vector512.Load(y);
        // vpmaddubsw wants one unsigned operand: |w| times y carrying w's sign
        var signed = Vector512.ConditionalSelect(Vector512.LessThan(q, Vector512<sbyte>.Zero), -x, x);
        var pairs = Avx512BW.MultiplyAddAdjacent(Avx512BW.Abs(q), signed);
        var sums = Avx512BW.MultiplyAddAdjacent(pairs, Vector512.Create((short)1));
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(sums), Avx512F.PermuteVar16x32(scales, lanes), acc);
    }

    /// <summary>Products of one Q8_0 block with 32 activations, as 8 int32 partial sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Q8_0Block256(byte* w, sbyte* y)
    {
        var q = Vector256.Load((sbyte*)w + Q8_0Block.Qs);
        var pairs = Avx2.MultiplyAddAdjacent(Avx2.Abs(q), Avx2.Sign(Vector256.Load(y), q));
        return Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1));
    }

    // ------------------------------------------------------------------ Q8_0, AVX2

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float DotQ8_0Row256(byte* w, sbyte* ys, float* dy, int blocks)
    {
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        var acc2 = Vector256<float>.Zero;
        var acc3 = Vector256<float>.Zero;
        var scaleOffsets = Vector256.Create(0, 34, 68, 102, 136, 170, 204, 238);
        int b = 0;
        for (; b + 8 <= blocks; b += 8, w += 8 * Q8_0Block.Bytes, ys += 8 * Block)
        {
            var scales = Fp16.ToSingle(Avx2.GatherVector256((int*)w, scaleOffsets, 1)) * Vector256.Load(dy + b);
            for (int k = 0; k < 8; k += 4)
            {
                acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Q8_0Block256(w + k * 34, ys + k * 32)), Avx2.PermuteVar8x32(scales, Vector256.Create(k)), acc0);
                acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Q8_0Block256(w + k * 34 + 34, ys + k * 32 + 32)), Avx2.PermuteVar8x32(scales, Vector256.Create(k + 1)), acc1);
                acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Q8_0Block256(w + k * 34 + 68, ys + k * 32 + 64)), Avx2.PermuteVar8x32(scales, Vector256.Create(k + 2)), acc2);
                acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Q8_0Block256(w + k * 34 + 102, ys + k * 32 + 96)), Avx2.PermuteVar8x32(scales, Vector256.Create(k + 3)), acc3);
            }
        }
        for (; b < blocks; b++, w += Q8_0Block.Bytes, ys += Block)
        {
            float scale = Fp16.ToSingle(*(ushort*)w) * dy[b];
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Q8_0Block256(w, ys)), Vector256.Create(scale), acc0);
        }
        return Vector256.Sum((acc0 + acc1) + (acc2 + acc3));
    }

    // ------------------------------------------------------------------ Q8_0, SSSE3

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float DotQ8_0Row128(byte* w, sbyte* ys, float* dy, int blocks)
    {
        var acc0 = Vector128<float>.Zero;
        var acc1 = Vector128<float>.Zero;
        var ones = Vector128.Create((short)1);
        for (int b = 0; b < blocks; b++, w += Q8_0Block.Bytes, ys += Block)
        {
            var q0 = Vector128.Load((sbyte*)w + Q8_0Block.Qs);
            var q1 = Vector128.Load((sbyte*)w + Q8_0Block.Qs + 16);
            var sums = Sse2.MultiplyAddAdjacent(Ssse3.MultiplyAddAdjacent(Ssse3.Abs(q0), Ssse3.Sign(Vector128.Load(ys), q0)), ones)
                     + Sse2.MultiplyAddAdjacent(Ssse3.MultiplyAddAdjacent(Ssse3.Abs(q1), Ssse3.Sign(Vector128.Load(ys + 16), q1)), ones);
            var term = Sse2.ConvertToVector128Single(sums) * Vector128.Create(Fp16.ToSingle(*(ushort*)w) * dy[b]);
            if ((b & 1) == 0) acc0 += term; else acc1 += term;
        }
        return Vector128.Sum(acc0 + acc1);
    }
}
