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
    const int StackPreparedLimit = 16384; // elements: prepared activations (1.75 bytes each) up to ~29 KB live on the stack
    // Rows up to this many blocks go four at a time; longer rows streamed faster one at a time (measured on Zen 4).
    const int FourRowMaxBlocks = 64;
    // Four-row groups prefetch the rows 16 ahead (at most 64 KiB ahead): 4 rows ahead (~1.3 KB at K = 576) left the
    // Q4_0 decode waiting on DRAM, 183 → 256 tokens/s median of 6 interleaved runs on Zen 5 (Q8_0: no change).
    const int PrefetchRows = 16;
    const long PrefetchBytesLimit = 64 << 10;

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
        // layout: quants (n bytes) | dy (blocks floats) | offsets (blocks floats) | four rows' dw·dy (4·blocks floats); +64 for alignment
        long bytes = n + 24L * blocks + 64;
        byte* raw = n <= StackPreparedLimit ? null : (byte*)NativeMemory.Alloc((nuint)bytes);
        byte* stack = stackalloc byte[n <= StackPreparedLimit ? (int)bytes : 0];
        try
        {
            byte* start = raw != null ? raw : stack;
            sbyte* quants = (sbyte*)(((nint)start + 63) & ~(nint)63);
            var prepared = new Prepared(quants, (float*)(quants + n), (float*)(quants + n) + blocks);
            float* rowScales = (float*)(quants + n) + 2 * blocks;
            Prepare(level, xq, blocks, prepared);
            int r = 0;
            if (level >= SimdLevel.Vector256 && blocks <= FourRowMaxBlocks)
            {
                // short rows: four at a time share the activation loads and the per-row overhead
                long prefetchRows = Math.Clamp(PrefetchBytesLimit / Math.Max(rowBytes, 1) / 4 * 4, 4, PrefetchRows);
                for (; r + 4 <= rows; r += 4)
                {
                    long ahead = r + 4 + prefetchRows <= rows ? prefetchRows * rowBytes : 0;
                    if (type == TensorType.Q4_0)
                        DotQ4_0Rows4(level, weights + r * rowBytes, rowBytes, ahead, prepared.Quants, prepared.Scales, prepared.Offsets, rowScales, blocks, y + r);
                    else
                        DotQ8_0Rows4(level, weights + r * rowBytes, rowBytes, ahead, prepared.Quants, prepared.Scales, rowScales, blocks, y + r);
                }
            }
            for (; r < rows; r++)
            {
                byte* w = weights + r * rowBytes;
                long ahead = r + 1 < rows ? rowBytes : 0; // prefetch the next row while this one computes
                y[r] = (type, level) switch
                {
                    (TensorType.Q4_0, >= SimdLevel.Vector256) => DotQ4_0Row256(level, w, ahead, prepared.Quants, prepared.Scales, prepared.Offsets, rowScales, blocks),
                    (TensorType.Q4_0, SimdLevel.Vector128) => DotQ4_0Row128(w, ahead, prepared.Quants, prepared.Scales, prepared.Offsets, blocks),
                    (TensorType.Q8_0, >= SimdLevel.Vector256) => DotQ8_0Row256(level, w, ahead, prepared.Quants, prepared.Scales, rowScales, blocks),
                    (TensorType.Q8_0, SimdLevel.Vector128) => DotQ8_0Row128(w, ahead, prepared.Quants, prepared.Scales, blocks),
                    _ => throw new UnreachableException(),
                };
            }
        }
        finally
        {
            if (raw != null) NativeMemory.Free(raw);
        }
    }

    /// <summary>
    /// Q8_0 weight rows against M activation rows (the decode rows of a batched step): y[m, r] bit-identical to
    /// <see cref="Run"/> of row r with activation row m, because every four-row group computes each (row, activation)
    /// pair with exactly the operations of the four-row kernel — but the weight blocks are loaded once for two
    /// activation rows at a time, and each activation row is unpacked once per call instead of once per call per row.
    /// Returns false (nothing written) where this form does not apply (not Q8_0, no AVX2, long rows).
    /// </summary>
    /// <param name="xq">M rows of n/32 Q8_0 blocks, <paramref name="xqStride"/> bytes apart</param>
    /// <param name="y">Y[M, rows], row stride ldy floats</param>
    public static bool TryRunMany(SimdLevel level, TensorType type, byte* weights, long rowBytes, int rows, byte* xq, long xqStride, int m,
        int n, float* y, long ldy)
    {
        int blocks = n / Block;
        if (type != TensorType.Q8_0 || level < SimdLevel.Vector256 || blocks > FourRowMaxBlocks || rows < 4 || m < 2 || m > 256) return false;
        long preparedBytes = (n + 8L * blocks + 63) / 64 * 64;  // quants | dy (offsets unused for Q8_0), 64-byte aligned
        long bytes = preparedBytes * m + 36L * blocks;
        byte* raw = ManyBuffer.Get(bytes);
        float* ones = (float*)(raw + preparedBytes * m + 16L * blocks);      // [blocks] of 1
        float* dw = ones + blocks;                                            // [4][blocks] weight scales of a row group
        new Span<float>(ones, blocks).Fill(1f);
        {
            Prepared* prepared = stackalloc Prepared[m];
            for (int i = 0; i < m; i++)
            {
                sbyte* quants = (sbyte*)(raw + i * preparedBytes);
                prepared[i] = new Prepared(quants, (float*)(quants + n), (float*)(quants + n) + blocks);
                Prepare(level, xq + i * xqStride, blocks, prepared[i]);
            }
            float* scales = (float*)(raw + preparedBytes * m);   // [4][blocks] dw·dy for a last, unpaired activation row
            int r = 0;
            for (; r + 4 <= rows; r += 4)
            {
                byte* w = weights + r * rowBytes;
                // BlockScales' products dw·dy, with the weight scales read once for all activation rows: dw·1 is dw exactly.
                for (int j = 0; j < 4; j++) BlockScales(level, w + j * rowBytes, Q8_0Block.Bytes, blocks, ones, null, dw + (long)j * blocks);
                int i2 = 0;
                for (; i2 + 2 <= m; i2 += 2)
                    DotQ8_0Rows4Pair(w, rowBytes, i2 == 0 && r + 8 <= rows ? 4 * rowBytes : 0, prepared[i2].Quants, prepared[i2 + 1].Quants,
                        dw, prepared[i2].Scales, prepared[i2 + 1].Scales, blocks, y + i2 * ldy + r, y + (i2 + 1) * ldy + r);
                if (i2 < m)
                {
                    for (int j = 0; j < 4; j++) Multiply(dw + (long)j * blocks, prepared[i2].Scales, scales + (long)j * blocks, blocks);
                    DotQ8_0Rows4(level, w, rowBytes, 0, prepared[i2].Quants, prepared[i2].Scales, scales, blocks, y + i2 * ldy + r, rescale: false);
                }
            }
            for (; r < rows; r++)
                for (int i = 0; i < m; i++)
                    y[i * ldy + r] = DotQ8_0Row256(level, weights + r * rowBytes, 0, prepared[i].Quants, prepared[i].Scales, scales, blocks);
        }
        return true;
    }

    /// <summary>c[i] = a[i]·b[i] (one rounding each, as BlockScales multiplies).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Multiply(float* a, float* b, float* c, int n)
    {
        int i = 0;
        for (; i + 8 <= n; i += 8) (Vector256.Load(a + i) * Vector256.Load(b + i)).Store(c + i);
        for (; i < n; i++) c[i] = a[i] * b[i];
    }

    /// <summary>Each thread's buffer for <see cref="TryRunMany"/>, grown on demand and kept.</summary>
    static class ManyBuffer
    {
        [ThreadStatic] static byte* _buffer;
        [ThreadStatic] static long _capacity;

        public static byte* Get(long bytes)
        {
            if (_capacity < bytes)
            {
                if (_buffer != null) NativeMemory.AlignedFree(_buffer);
                _capacity = Math.Max(bytes, 64 << 10);
                _buffer = (byte*)NativeMemory.AlignedAlloc((nuint)_capacity, 64);
            }
            return _buffer;
        }
    }

    /// <summary>Four Q8_0 rows against two activation rows: for each pair, the operations of <see cref="DotQ8_0Rows4"/>
    /// in its order (the weight blocks loaded once for both; each block's scale dw·dy made as BlockScales makes it).</summary>
    /// <param name="ahead">bytes from w to the next four rows, prefetched meanwhile (0: none)</param>
    /// <param name="dw">[4][blocks] the weight rows' block scales</param>
    /// <param name="dy0">[blocks] the first activation row's block scales (dy1: the second's)</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void DotQ8_0Rows4Pair(byte* w, long rowBytes, long ahead, sbyte* ys0, sbyte* ys1, float* dw, float* dy0, float* dy1, int blocks, float* y0, float* y1)
    {
        byte* w1 = w + rowBytes, w2 = w + 2 * rowBytes, w3 = w + 3 * rowBytes;
        float* d0 = dw, d1 = dw + blocks, d2 = dw + 2 * blocks, d3 = dw + 3 * blocks;
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
        var ones = Vector256.Create((short)1);
        long o = 0;
        for (int b = 0; b < blocks; b++, o += Q8_0Block.Bytes, ys0 += Block, ys1 += Block)
        {
            if (ahead != 0 && (b & 1) == 0)
            {
                Sse.Prefetch1(w + o + ahead);
                Sse.Prefetch1(w1 + o + ahead);
                Sse.Prefetch1(w2 + o + ahead);
                Sse.Prefetch1(w3 + o + ahead);
            }
            var x0 = Vector256.Load(ys0);
            var x1 = Vector256.Load(ys1);
            var q0 = Vector256.Load((sbyte*)w + o + Q8_0Block.Qs);
            var q1 = Vector256.Load((sbyte*)w1 + o + Q8_0Block.Qs);
            var q2 = Vector256.Load((sbyte*)w2 + o + Q8_0Block.Qs);
            var q3 = Vector256.Load((sbyte*)w3 + o + Q8_0Block.Qs);
            a00 = Fma.MultiplyAdd(Q8_0Block256(q0, x0, ones), Vector256.Create(d0[b] * dy0[b]), a00);
            a01 = Fma.MultiplyAdd(Q8_0Block256(q1, x0, ones), Vector256.Create(d1[b] * dy0[b]), a01);
            a02 = Fma.MultiplyAdd(Q8_0Block256(q2, x0, ones), Vector256.Create(d2[b] * dy0[b]), a02);
            a03 = Fma.MultiplyAdd(Q8_0Block256(q3, x0, ones), Vector256.Create(d3[b] * dy0[b]), a03);
            a10 = Fma.MultiplyAdd(Q8_0Block256(q0, x1, ones), Vector256.Create(d0[b] * dy1[b]), a10);
            a11 = Fma.MultiplyAdd(Q8_0Block256(q1, x1, ones), Vector256.Create(d1[b] * dy1[b]), a11);
            a12 = Fma.MultiplyAdd(Q8_0Block256(q2, x1, ones), Vector256.Create(d2[b] * dy1[b]), a12);
            a13 = Fma.MultiplyAdd(Q8_0Block256(q3, x1, ones), Vector256.Create(d3[b] * dy1[b]), a13);
        }
        StoreSums(a00, a01, a02, a03, Vector128<float>.Zero, y0);
        StoreSums(a10, a11, a12, a13, Vector128<float>.Zero, y1);
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

    // ------------------------------------------------------------------ block scales

    /// <summary>
    /// Per-block products dw·dy of one row into <paramref name="scales"/>, and Σ dw·offsets (the Q4_0 offset term).
    /// AVX-512 picks the fp16 scales out of the strided blocks with vpermt2w (8 per 128 or 2×128 bytes); AVX2 gathers them.
    /// </summary>
    /// <param name="w">blocks weight blocks of <paramref name="stride"/> bytes (18 for Q4_0, 34 for Q8_0), the fp16 scale first</param>
    /// <param name="dy">blocks activation scales</param>
    /// <param name="offsets">blocks Q4_0 offset terms, or null</param>
    /// <param name="scales">blocks floats out</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float BlockScales(SimdLevel level, byte* w, int stride, int blocks, float* dy, float* offsets, float* scales)
    {
        var offsetAcc = Vector256<float>.Zero;
        int b = 0;
        if (level >= SimdLevel.Vector512 && stride == Q4_0Block.Bytes)
        {
            // word 9k of the 128 bytes at w is block k's scale; land it in the low half of dword k
            var index = Vector512.Create((short)0, 0, 9, 0, 18, 0, 27, 0, 36, 0, 45, 0, 54, 0, 63, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
            for (; b + 8 <= blocks; b += 8, w += 8 * Q4_0Block.Bytes)
            {
                var halves = Avx512BW.PermuteVar32x16x2(Vector512.Load((short*)w), index, Vector512.Load((short*)(w + 64)));
                offsetAcc = StoreScales(Fp16.ToSingle(halves.GetLower().AsInt32()), dy + b, offsets, b, scales, offsetAcc);
            }
        }
        else if (level >= SimdLevel.Vector512)
        {
            // blocks 0..3: words 0, 17, 34, 51 of the 128 bytes at w; blocks 4..7 the same from w + 136
            var low = Vector512.Create((short)0, 0, 17, 0, 34, 0, 51, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
            var high = Vector512.Create((short)0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 17, 0, 34, 0, 51, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
            for (; b + 8 <= blocks; b += 8, w += 8 * Q8_0Block.Bytes)
            {
                var first = Avx512BW.PermuteVar32x16x2(Vector512.Load((short*)w), low, Vector512.Load((short*)(w + 64)));
                var second = Avx512BW.PermuteVar32x16x2(Vector512.Load((short*)(w + 136)), high, Vector512.Load((short*)(w + 200)));
                var halves = Avx2.Blend(first.GetLower().AsInt32(), second.GetLower().AsInt32(), 0xF0);
                offsetAcc = StoreScales(Fp16.ToSingle(halves), dy + b, offsets, b, scales, offsetAcc);
            }
        }
        else
        {
            var byteOffsets = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7) * stride;
            for (; b + 8 <= blocks; b += 8, w += 8 * stride)
                offsetAcc = StoreScales(Fp16.ToSingle(Avx2.GatherVector256((int*)w, byteOffsets, 1)), dy + b, offsets, b, scales, offsetAcc);
        }
        float offsetSum = Vector256.Sum(offsetAcc);
        for (; b < blocks; b++, w += stride)
        {
            float dw = Fp16.ToSingle(*(ushort*)w);
            scales[b] = dw * dy[b];
            if (offsets != null) offsetSum += dw * offsets[b];
        }
        return offsetSum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> StoreScales(Vector256<float> dw, float* dy, float* offsets, int b, float* scales, Vector256<float> offsetAcc)
    {
        (dw * Vector256.Load(dy)).Store(scales + b);
        return offsets != null ? Fma.MultiplyAdd(dw, Vector256.Load(offsets + b), offsetAcc) : offsetAcc;
    }

    // ------------------------------------------------------------------ Q4_0, AVX2 / AVX-512

    // 256-bit main loops on both levels: on Zen 4 a 512-bit op costs two 256-bit ones, and pairing two 18-byte
    // blocks into one 512-bit vector costs an extra shuffle, so the wider loop was slower there.

    /// <param name="w">blocks Q4_0 blocks (18 bytes each)</param>
    /// <param name="ahead">bytes from w to the next row, prefetched meanwhile (0: none)</param>
    /// <param name="ys">blocks·32 int8 activations</param>
    /// <param name="dy">blocks activation scales</param>
    /// <param name="offsets">blocks offset terms 8·dy·Σy</param>
    /// <param name="scales">blocks floats of scratch</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float DotQ4_0Row256(SimdLevel level, byte* w, long ahead, sbyte* ys, float* dy, float* offsets, float* scales, int blocks)
    {
        float offsetSum = BlockScales(level, w, Q4_0Block.Bytes, blocks, dy, offsets, scales);
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        var acc2 = Vector256<float>.Zero;
        var acc3 = Vector256<float>.Zero;
        var shift = Vector256.Create(0ul, 0, 4, 4);
        var mask = Vector256.Create((byte)0x0F);
        var ones = Vector256.Create((short)1);
        int b = 0;
        for (; b + 4 <= blocks; b += 4, w += 4 * Q4_0Block.Bytes, ys += 4 * Block)
        {
            Sse.Prefetch0(w + ahead);
            Sse.Prefetch0(w + ahead + 64);
            acc0 = Fma.MultiplyAdd(Q4_0Block256(w, Vector256.Load(ys), shift, mask, ones), Vector256.Create(scales[b]), acc0);
            acc1 = Fma.MultiplyAdd(Q4_0Block256(w + 18, Vector256.Load(ys + 32), shift, mask, ones), Vector256.Create(scales[b + 1]), acc1);
            acc2 = Fma.MultiplyAdd(Q4_0Block256(w + 36, Vector256.Load(ys + 64), shift, mask, ones), Vector256.Create(scales[b + 2]), acc2);
            acc3 = Fma.MultiplyAdd(Q4_0Block256(w + 54, Vector256.Load(ys + 96), shift, mask, ones), Vector256.Create(scales[b + 3]), acc3);
        }
        for (; b < blocks; b++, w += Q4_0Block.Bytes, ys += Block)
            acc0 = Fma.MultiplyAdd(Q4_0Block256(w, Vector256.Load(ys), shift, mask, ones), Vector256.Create(scales[b]), acc0);
        return Vector256.Sum((acc0 + acc1) + (acc2 + acc3)) - offsetSum;
    }

    /// <summary>Unsigned-nibble products of one Q4_0 block with 32 activations, as 8 partial sums (exact integers, as float).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Q4_0Block256(byte* w, Vector256<sbyte> x, Vector256<ulong> shift, Vector256<byte> mask, Vector256<short> ones)
    {
        // [qs, qs] shifted by [0, 4]: low nibbles (elements 0..15) then high nibbles (16..31)
        var q = Avx2.ShiftRightLogicalVariable(Avx2.BroadcastVector128ToVector256(w + Q4_0Block.Qs).AsUInt64(), shift).AsByte() & mask;
        // vpdpbusd does vpmaddubsw + vpmaddwd in one instruction, exactly (no saturation either way here)
        var sums = AvxVnni.IsSupported ? AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, q, x)
            : Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, x), ones);
        return Avx.ConvertToVector256Single(sums);
    }

    // ------------------------------------------------------------------ four rows at a time

    /// <summary>Sums of four accumulators, minus four offsets, into y[0..4).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void StoreSums(Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3, Vector128<float> offsets, float* y)
    {
        var pairs = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3)); // [r0 r1 r2 r3 | r0 r1 r2 r3]
        (pairs.GetLower() + pairs.GetUpper() - offsets).Store(y);
    }

    /// <param name="w">row 0's blocks Q4_0 blocks; rows 1..3 follow at <paramref name="rowBytes"/> strides</param>
    /// <param name="ahead">bytes from w to the next four rows, prefetched meanwhile (0: none)</param>
    /// <param name="ys">blocks·32 int8 activations</param>
    /// <param name="dy">blocks activation scales</param>
    /// <param name="offsets">blocks offset terms 8·dy·Σy</param>
    /// <param name="scales">4·blocks floats of scratch</param>
    /// <param name="y">4 results</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void DotQ4_0Rows4(SimdLevel level, byte* w, long rowBytes, long ahead, sbyte* ys, float* dy, float* offsets, float* scales, int blocks, float* y)
    {
        var offsetSums = Vector128.Create(
            BlockScales(level, w, Q4_0Block.Bytes, blocks, dy, offsets, scales),
            BlockScales(level, w + rowBytes, Q4_0Block.Bytes, blocks, dy, offsets, scales + blocks),
            BlockScales(level, w + 2 * rowBytes, Q4_0Block.Bytes, blocks, dy, offsets, scales + 2 * blocks),
            BlockScales(level, w + 3 * rowBytes, Q4_0Block.Bytes, blocks, dy, offsets, scales + 3 * blocks));
        byte* w1 = w + rowBytes, w2 = w + 2 * rowBytes, w3 = w + 3 * rowBytes;
        float* s1 = scales + blocks, s2 = scales + 2 * blocks, s3 = scales + 3 * blocks;
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        var acc2 = Vector256<float>.Zero;
        var acc3 = Vector256<float>.Zero;
        var shift = Vector256.Create(0ul, 0, 4, 4);
        var mask = Vector256.Create((byte)0x0F);
        var ones = Vector256.Create((short)1);
        long o = 0;
        for (int b = 0; b < blocks; b++, o += Q4_0Block.Bytes, ys += Block)
        {
            if ((b & 3) == 0)
            {
                Sse.Prefetch1(w + o + ahead);
                Sse.Prefetch1(w1 + o + ahead);
                Sse.Prefetch1(w2 + o + ahead);
                Sse.Prefetch1(w3 + o + ahead);
            }
            else if ((b & 3) == 2)
            {
                Sse.Prefetch1(w + o + ahead + 32);
                Sse.Prefetch1(w1 + o + ahead + 32);
                Sse.Prefetch1(w2 + o + ahead + 32);
                Sse.Prefetch1(w3 + o + ahead + 32);
            }
            var x = Vector256.Load(ys);
            acc0 = Fma.MultiplyAdd(Q4_0Block256(w + o, x, shift, mask, ones), Vector256.Create(scales[b]), acc0);
            acc1 = Fma.MultiplyAdd(Q4_0Block256(w1 + o, x, shift, mask, ones), Vector256.Create(s1[b]), acc1);
            acc2 = Fma.MultiplyAdd(Q4_0Block256(w2 + o, x, shift, mask, ones), Vector256.Create(s2[b]), acc2);
            acc3 = Fma.MultiplyAdd(Q4_0Block256(w3 + o, x, shift, mask, ones), Vector256.Create(s3[b]), acc3);
        }
        StoreSums(acc0, acc1, acc2, acc3, offsetSums, y);
    }

    /// <param name="w">row 0's blocks Q8_0 blocks; rows 1..3 follow at <paramref name="rowBytes"/> strides</param>
    /// <param name="ahead">bytes from w to the next four rows, prefetched meanwhile (0: none)</param>
    /// <param name="ys">blocks·32 int8 activations</param>
    /// <param name="dy">blocks activation scales</param>
    /// <param name="scales">4·blocks floats of scratch</param>
    /// <param name="y">4 results</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void DotQ8_0Rows4(SimdLevel level, byte* w, long rowBytes, long ahead, sbyte* ys, float* dy, float* scales, int blocks, float* y,
        bool rescale = true)
    {
        if (rescale)
        {
            BlockScales(level, w, Q8_0Block.Bytes, blocks, dy, null, scales);
            BlockScales(level, w + rowBytes, Q8_0Block.Bytes, blocks, dy, null, scales + blocks);
            BlockScales(level, w + 2 * rowBytes, Q8_0Block.Bytes, blocks, dy, null, scales + 2 * blocks);
            BlockScales(level, w + 3 * rowBytes, Q8_0Block.Bytes, blocks, dy, null, scales + 3 * blocks);
        }
        byte* w1 = w + rowBytes, w2 = w + 2 * rowBytes, w3 = w + 3 * rowBytes;
        float* s1 = scales + blocks, s2 = scales + 2 * blocks, s3 = scales + 3 * blocks;
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        var acc2 = Vector256<float>.Zero;
        var acc3 = Vector256<float>.Zero;
        var ones = Vector256.Create((short)1);
        long o = 0;
        for (int b = 0; b < blocks; b++, o += Q8_0Block.Bytes, ys += Block)
        {
            if ((b & 1) == 0)
            {
                Sse.Prefetch1(w + o + ahead);
                Sse.Prefetch1(w1 + o + ahead);
                Sse.Prefetch1(w2 + o + ahead);
                Sse.Prefetch1(w3 + o + ahead);
            }
            var x = Vector256.Load(ys);
            acc0 = Fma.MultiplyAdd(Q8_0Block256(w + o, x, ones), Vector256.Create(scales[b]), acc0);
            acc1 = Fma.MultiplyAdd(Q8_0Block256(w1 + o, x, ones), Vector256.Create(s1[b]), acc1);
            acc2 = Fma.MultiplyAdd(Q8_0Block256(w2 + o, x, ones), Vector256.Create(s2[b]), acc2);
            acc3 = Fma.MultiplyAdd(Q8_0Block256(w3 + o, x, ones), Vector256.Create(s3[b]), acc3);
        }
        StoreSums(acc0, acc1, acc2, acc3, Vector128<float>.Zero, y);
    }

    // ------------------------------------------------------------------ Q4_0, SSSE3

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float DotQ4_0Row128(byte* w, long ahead, sbyte* ys, float* dy, float* offsets, int blocks)
    {
        var acc0 = Vector128<float>.Zero;
        var acc1 = Vector128<float>.Zero;
        float offsetSum = 0;
        var ones = Vector128.Create((short)1);
        var mask = Vector128.Create((byte)0x0F);
        for (int b = 0; b < blocks; b++, w += Q4_0Block.Bytes, ys += Block)
        {
            if ((b & 3) == 0) Sse.Prefetch0(w + ahead);
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

    // ------------------------------------------------------------------ Q8_0, AVX2 / AVX-512

    /// <param name="w">blocks Q8_0 blocks (34 bytes each)</param>
    /// <param name="ahead">bytes from w to the next row, prefetched meanwhile (0: none)</param>
    /// <param name="ys">blocks·32 int8 activations</param>
    /// <param name="dy">blocks activation scales</param>
    /// <param name="scales">blocks floats of scratch</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float DotQ8_0Row256(SimdLevel level, byte* w, long ahead, sbyte* ys, float* dy, float* scales, int blocks)
    {
        BlockScales(level, w, Q8_0Block.Bytes, blocks, dy, null, scales);
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        var acc2 = Vector256<float>.Zero;
        var acc3 = Vector256<float>.Zero;
        var ones = Vector256.Create((short)1);
        int b = 0;
        for (; b + 4 <= blocks; b += 4, w += 4 * Q8_0Block.Bytes, ys += 4 * Block)
        {
            Sse.Prefetch0(w + ahead);
            Sse.Prefetch0(w + ahead + 64);
            Sse.Prefetch0(w + ahead + 128);
            acc0 = Fma.MultiplyAdd(Q8_0Block256(w, Vector256.Load(ys), ones), Vector256.Create(scales[b]), acc0);
            acc1 = Fma.MultiplyAdd(Q8_0Block256(w + 34, Vector256.Load(ys + 32), ones), Vector256.Create(scales[b + 1]), acc1);
            acc2 = Fma.MultiplyAdd(Q8_0Block256(w + 68, Vector256.Load(ys + 64), ones), Vector256.Create(scales[b + 2]), acc2);
            acc3 = Fma.MultiplyAdd(Q8_0Block256(w + 102, Vector256.Load(ys + 96), ones), Vector256.Create(scales[b + 3]), acc3);
        }
        for (; b < blocks; b++, w += Q8_0Block.Bytes, ys += Block)
            acc0 = Fma.MultiplyAdd(Q8_0Block256(w, Vector256.Load(ys), ones), Vector256.Create(scales[b]), acc0);
        return Vector256.Sum((acc0 + acc1) + (acc2 + acc3));
    }

    /// <summary>Products of one Q8_0 block with 32 activations, as 8 partial sums (exact integers, as float).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Q8_0Block256(byte* w, Vector256<sbyte> x, Vector256<short> ones) =>
        Q8_0Block256(Vector256.Load((sbyte*)w + Q8_0Block.Qs), x, ones);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Q8_0Block256(Vector256<sbyte> q, Vector256<sbyte> x, Vector256<short> ones)
    {
        // vpmaddubsw wants one unsigned operand: |w| times x carrying w's sign
        if (AvxVnni.IsSupported) return Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Avx2.Abs(q), Avx2.Sign(x, q)));
        var pairs = Avx2.MultiplyAddAdjacent(Avx2.Abs(q), Avx2.Sign(x, q));
        return Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(pairs, ones));
    }

    // ------------------------------------------------------------------ Q8_0, SSSE3

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float DotQ8_0Row128(byte* w, long ahead, sbyte* ys, float* dy, int blocks)
    {
        var acc0 = Vector128<float>.Zero;
        var acc1 = Vector128<float>.Zero;
        var ones = Vector128.Create((short)1);
        for (int b = 0; b < blocks; b++, w += Q8_0Block.Bytes, ys += Block)
        {
            if ((b & 1) == 0) Sse.Prefetch0(w + ahead);
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
