using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hone.Tensors.Emitted;

/// <summary>
/// Micro-kernels for C[4, 48] (+)= Σ over 32-element blocks b of float(dot_b) · dx[row, b] · dw[b, column], where
/// dot_b is the exact int32 dot of a Q8_0 activation block with a Q8_0 or Q4_0 weight block.
///
/// Packed activation block (160 bytes, one per block of a 4-row panel):
///   [0, 128)   quads [8][4 rows] of 4 int8 (elements 4q..4q+3 of the row's block)
///   [128, 144) dx [4] fp32: the rows' block scales (fp16-rounded, as ggml stores them)
///   [144, 160) correction [4] int32: the integer accumulator's start value (see below)
/// Packed weight block (1728 bytes, one per block of a 48-column sliver):
///   [0, 1536)  quads [8][48 columns] of 4 bytes (elements 4q..4q+3 of the column's block)
///   [1536, 1728) dw [48] fp32
///
/// vpdpbusd multiplies unsigned bytes by signed bytes, so weights are made unsigned: Q4_0 nibbles are 0..15 already
/// (value = nibble − 8), Q8_0 bytes get +128. Σ(w + offset)·x = Σw·x + offset·Σx, so the accumulator starts at
/// −offset·Σx (offset 8 or 128), which the activation packing precomputes. The managed fallback uses vpmaddubsw,
/// whose int16 pair sums saturate for 255·127·2, so for Q8_0 it keeps weights signed and uses the sign trick
/// (|w| × sign(w)·x, at most 128·127·2 = 32512) with correction 0.
/// </summary>
public static unsafe class Int8Kernels
{
    public const int Block = 32;
    public const int Rows = 4;                 // MR
    public const int Columns = 48;             // NR (3 zmm of 16 lanes)
    public const int Quads = Block / 4;        // 4-element groups per block
    public const int ActivationBlockBytes = Quads * Rows * 4 + Rows * 4 + Rows * 4;   // 160
    public const int ActivationScalesOffset = Quads * Rows * 4;                        // 128
    public const int ActivationCorrectionsOffset = ActivationScalesOffset + Rows * 4;  // 144
    public const int WeightBlockBytes = Quads * Columns * 4 + Columns * 4;             // 1728
    public const int WeightScalesOffset = Quads * Columns * 4;                         // 1536

    /// <summary>Emitted kernel: (A blocks, B blocks, C [4][ldc], ldc in bytes, block count, load C?).</summary>
    public static delegate* unmanaged[SuppressGCTransition]<byte*, byte*, float*, nint, nint, nint, void> Emitted =>
        (delegate* unmanaged[SuppressGCTransition]<byte*, byte*, float*, nint, nint, nint, void>)EmittedCode.Value.Pointer;

    /// <summary>The emitted kernel that also prefetches into L2, a slice of <see cref="PrefetchLinesPerBlock"/> cache
    /// lines per block from its seventh argument on: a caller running the same weights against several row panels
    /// fetches the next weights while the later panels compute from cache, so memory is busy all the time rather than
    /// during the first panel only.</summary>
    public static delegate* unmanaged[SuppressGCTransition]<byte*, byte*, float*, nint, nint, nint, byte*, void> EmittedPrefetching =>
        (delegate* unmanaged[SuppressGCTransition]<byte*, byte*, float*, nint, nint, nint, byte*, void>)EmittedPrefetchingCode.Value.Pointer;

    /// <summary>Cache lines the prefetching kernel asks for per block: a third of a weight block's 27, so three panels
    /// fetch the next weights of the same length.</summary>
    public const int PrefetchLinesPerBlock = 9;

    public static bool EmittedAvailable => EmittedCode.Value.Pointer != 0;

    public static string? EmittedUnavailableReason => EmittedCode.Value.Failure;

    static readonly Lazy<(nint Pointer, string? Failure)> EmittedCode = new(() => Create(prefetch: false));
    static readonly Lazy<(nint Pointer, string? Failure)> EmittedPrefetchingCode = new(() => Create(prefetch: true));

    static (nint Pointer, string? Failure) Create(bool prefetch)
    {
        if (!EmittedCpu.CanRunEvexCode) return (0, "AVX-512 code cannot run here (CPU, OS, platform or HONE_DISABLE_EMITTED)");
        if (!EmittedCpu.HasAvx512Vnni) return (0, "the CPU has no AVX512_VNNI");
        var memory = ExecutableMemory.TryCreate(Emit(prefetch), out var failure);
        return memory == null ? (0, failure) : ((nint)memory.Pointer, null);
    }

    static Zmm FloatAccumulator(int row, int vector) => new(row * 3 + vector);         // zmm0..zmm11
    static Zmm IntegerAccumulator(int row, int vector) => new(12 + row * 3 + vector);  // zmm12..zmm23
    static Zmm Weights(int vector) => new(24 + vector);                                 // zmm24..zmm26
    static Zmm Activations(int row) => new(27 + row);                                   // zmm27..zmm30

    /// <summary>The vpdpbusd micro-kernel (System V: rdi=A, rsi=B, rdx=C, rcx=ldc bytes, r8=blocks, r9=load; with
    /// <paramref name="prefetch"/>, a seventh argument on the stack: where to prefetch from). Only caller-saved
    /// registers, so nothing to save.</summary>
    public static byte[] Emit(bool prefetch = false)
    {
        var asm = new X86Assembler();
        Gpr a = Gpr.Rdi, b = Gpr.Rsi, c = Gpr.Rdx, ldc = Gpr.Rcx, blocks = Gpr.R8, load = Gpr.R9, row = Gpr.R10, ahead = Gpr.R11;
        var zero = new Label(); var ready = new Label(); var loop = new Label(); var store = new Label();
        if (prefetch) asm.Mov(ahead, Memory.At(Gpr.Rsp, 8));

        asm.Test(load, load);
        asm.Jump(Condition.Equal, zero);
        asm.Mov(row, c);
        for (int i = 0; i < Rows; i++)
        {
            for (int j = 0; j < 3; j++) asm.Vmovups(FloatAccumulator(i, j), Memory.At(row, 64 * j));
            if (i < Rows - 1) asm.Add(row, ldc);
        }
        asm.Jump(ready);
        asm.Bind(zero);
        for (int i = 0; i < Rows; i++)
            for (int j = 0; j < 3; j++) asm.Vpxord(FloatAccumulator(i, j), FloatAccumulator(i, j), FloatAccumulator(i, j));
        asm.Bind(ready);
        asm.Test(blocks, blocks);
        asm.Jump(Condition.Equal, store);

        asm.Bind(loop);
        // Integer accumulators start at the offset correction −offset·Σx of their row.
        for (int i = 0; i < Rows; i++)
            for (int j = 0; j < 3; j++)
                asm.Vpbroadcastd(IntegerAccumulator(i, j), Memory.At(a, ActivationCorrectionsOffset + 4 * i));
        // Each row's quad is broadcast into a register once and meets the three weight vectors from there: a memory
        // operand per vpdpbusd made the kernel wait on loads (two vpdpbusd issue per cycle, and a third of the loads).
        for (int q = 0; q < Quads; q++)
        {
            for (int j = 0; j < 3; j++) asm.Vmovups(Weights(j), Memory.At(b, (q * Columns + 16 * j) * 4));
            for (int i = 0; i < Rows; i++) asm.Vpbroadcastd(Activations(i), Memory.At(a, (q * Rows + i) * 4));
            for (int i = 0; i < Rows; i++)
                for (int j = 0; j < 3; j++)
                    asm.Vpdpbusd(IntegerAccumulator(i, j), Weights(j), Activations(i));
            if (prefetch) asm.Prefetcht1(Memory.At(ahead, 64 * q)); // spread among the quads
        }
        if (prefetch)
        {
            for (int line = Quads; line < PrefetchLinesPerBlock; line++) asm.Prefetcht1(Memory.At(ahead, 64 * line));
            asm.Add(ahead, 64 * PrefetchLinesPerBlock);
        }
        // facc += float(dot) · dx[row] · dw[columns], the scales loaded once per block into the freed registers.
        for (int j = 0; j < 3; j++) asm.Vmovups(Weights(j), Memory.At(b, WeightScalesOffset + 64 * j));
        for (int i = 0; i < Rows; i++) asm.Vbroadcastss(Activations(i), Memory.At(a, ActivationScalesOffset + 4 * i));
        for (int i = 0; i < Rows; i++)
            for (int j = 0; j < 3; j++)
            {
                var t = IntegerAccumulator(i, j);
                asm.Vcvtdq2ps(t, t);
                asm.Vmulps(t, t, Activations(i));
                asm.Vfmadd231ps(FloatAccumulator(i, j), t, Weights(j));
            }
        asm.Add(a, ActivationBlockBytes);
        asm.Add(b, WeightBlockBytes);
        asm.Dec(blocks);
        asm.Jump(Condition.NotEqual, loop);

        asm.Bind(store);
        asm.Mov(row, c);
        for (int i = 0; i < Rows; i++)
        {
            for (int j = 0; j < 3; j++) asm.Vmovups(Memory.At(row, 64 * j), FloatAccumulator(i, j));
            if (i < Rows - 1) asm.Add(row, ldc);
        }
        asm.Vzeroupper();
        asm.Ret();
        return asm.ToArray();
    }

    // ---- managed fallbacks ---------------------------------------------------------------------------

    /// <summary>AVX-512BW: the 4×48 tile as three passes of 4 rows × 16 columns.</summary>
    /// <param name="signedWeights">weights are signed int8 (Q8_0, sign trick) rather than unsigned nibbles (Q4_0)</param>
    public static void Fallback512(byte* a, byte* b, float* c, nint ldcBytes, nint blocks, bool load, bool signedWeights)
    {
        for (int group = 0; group < 3; group++)
        {
            if (signedWeights) SignedPass512(a, b + 64 * group, c + 16 * group, ldcBytes, blocks, load);
            else UnsignedPass512(a, b + 64 * group, c + 16 * group, ldcBytes, blocks, load);
        }
    }

    /// <summary>C[4, 16] (+)= blocks of unsigned weight bytes (Q4_0 nibbles) × signed activations.</summary>
    /// <param name="a">packed activation blocks</param>
    /// <param name="b">packed weight blocks, offset to this pass's 16 columns</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void UnsignedPass512(byte* a, byte* b, float* c, nint ldcBytes, nint blocks, bool load)
    {
        LoadTile512(c, ldcBytes, load, out var f0, out var f1, out var f2, out var f3);
        var ones = Vector512.Create((short)1);
        for (nint block = 0; block < blocks; block++)
        {
            var i0 = Vector512.Create(*(int*)(a + ActivationCorrectionsOffset));
            var i1 = Vector512.Create(*(int*)(a + ActivationCorrectionsOffset + 4));
            var i2 = Vector512.Create(*(int*)(a + ActivationCorrectionsOffset + 8));
            var i3 = Vector512.Create(*(int*)(a + ActivationCorrectionsOffset + 12));
            for (int q = 0; q < Quads; q++)
            {
                var w = Vector512.Load(b + q * Columns * 4);
                int* x = (int*)(a + q * Rows * 4);
                // Nibble × int8 pair sums are at most 15·127·2, far from int16 saturation.
                i0 += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(x[0]).AsSByte()), ones);
                i1 += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(x[1]).AsSByte()), ones);
                i2 += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(x[2]).AsSByte()), ones);
                i3 += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(w, Vector512.Create(x[3]).AsSByte()), ones);
            }
            ScaleAndAccumulate512(a, b, i0, i1, i2, i3, ref f0, ref f1, ref f2, ref f3);
            a += ActivationBlockBytes; b += WeightBlockBytes;
        }
        StoreTile512(c, ldcBytes, f0, f1, f2, f3);
    }

    /// <summary>C[4, 16] (+)= blocks of signed weight bytes (Q8_0) × signed activations, by |w| × (sign(w)·x).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void SignedPass512(byte* a, byte* b, float* c, nint ldcBytes, nint blocks, bool load)
    {
        LoadTile512(c, ldcBytes, load, out var f0, out var f1, out var f2, out var f3);
        var ones = Vector512.Create((short)1);
        for (nint block = 0; block < blocks; block++)
        {
            var i0 = Vector512.Create(*(int*)(a + ActivationCorrectionsOffset));
            var i1 = Vector512.Create(*(int*)(a + ActivationCorrectionsOffset + 4));
            var i2 = Vector512.Create(*(int*)(a + ActivationCorrectionsOffset + 8));
            var i3 = Vector512.Create(*(int*)(a + ActivationCorrectionsOffset + 12));
            for (int q = 0; q < Quads; q++)
            {
                var w = Vector512.Load((sbyte*)b + q * Columns * 4);
                var magnitude = Avx512BW.Abs(w);
                var negative = Vector512.LessThan(w, Vector512<sbyte>.Zero);
                int* x = (int*)(a + q * Rows * 4);
                i0 += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(magnitude, Signed(Vector512.Create(x[0]).AsSByte(), negative)), ones);
                i1 += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(magnitude, Signed(Vector512.Create(x[1]).AsSByte(), negative)), ones);
                i2 += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(magnitude, Signed(Vector512.Create(x[2]).AsSByte(), negative)), ones);
                i3 += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(magnitude, Signed(Vector512.Create(x[3]).AsSByte(), negative)), ones);
            }
            ScaleAndAccumulate512(a, b, i0, i1, i2, i3, ref f0, ref f1, ref f2, ref f3);
            a += ActivationBlockBytes; b += WeightBlockBytes;
        }
        StoreTile512(c, ldcBytes, f0, f1, f2, f3);
    }

    /// <summary>x negated where the weight is negative (AVX-512 has no vpsignb); |x| ≤ 127, so no overflow.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<sbyte> Signed(Vector512<sbyte> x, Vector512<sbyte> negative) => Vector512.ConditionalSelect(negative, -x, x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void ScaleAndAccumulate512(byte* a, byte* b, Vector512<int> i0, Vector512<int> i1, Vector512<int> i2, Vector512<int> i3,
        ref Vector512<float> f0, ref Vector512<float> f1, ref Vector512<float> f2, ref Vector512<float> f3)
    {
        var dw = Vector512.Load((float*)(b + WeightScalesOffset));
        float* dx = (float*)(a + ActivationScalesOffset);
        f0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i0) * dx[0], dw, f0);
        f1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i1) * dx[1], dw, f1);
        f2 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i2) * dx[2], dw, f2);
        f3 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i3) * dx[3], dw, f3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void LoadTile512(float* c, nint ldcBytes, bool load,
        out Vector512<float> f0, out Vector512<float> f1, out Vector512<float> f2, out Vector512<float> f3)
    {
        if (load)
        {
            f0 = Vector512.Load(c); f1 = Vector512.Load((float*)((byte*)c + ldcBytes));
            f2 = Vector512.Load((float*)((byte*)c + 2 * ldcBytes)); f3 = Vector512.Load((float*)((byte*)c + 3 * ldcBytes));
        }
        else f0 = f1 = f2 = f3 = default;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void StoreTile512(float* c, nint ldcBytes, Vector512<float> f0, Vector512<float> f1, Vector512<float> f2, Vector512<float> f3)
    {
        Vector512.Store(f0, c); Vector512.Store(f1, (float*)((byte*)c + ldcBytes));
        Vector512.Store(f2, (float*)((byte*)c + 2 * ldcBytes)); Vector512.Store(f3, (float*)((byte*)c + 3 * ldcBytes));
    }

    /// <summary>AVX2: the 4×48 tile as six passes of 4 rows × 8 columns.</summary>
    public static void Fallback256(byte* a, byte* b, float* c, nint ldcBytes, nint blocks, bool load, bool signedWeights)
    {
        for (int group = 0; group < 6; group++)
            Pass256(a, b + 32 * group, c + 8 * group, ldcBytes, blocks, load, signedWeights);
    }

    /// <summary>C[4, 8] (+)= blocks of weights × activations with vpmaddubsw/vpmaddwd (vpsignb for signed weights).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Pass256(byte* a, byte* b, float* c, nint ldcBytes, nint blocks, bool load, bool signedWeights)
    {
        Vector256<float> f0, f1, f2, f3;
        if (load)
        {
            f0 = Vector256.Load(c); f1 = Vector256.Load((float*)((byte*)c + ldcBytes));
            f2 = Vector256.Load((float*)((byte*)c + 2 * ldcBytes)); f3 = Vector256.Load((float*)((byte*)c + 3 * ldcBytes));
        }
        else f0 = f1 = f2 = f3 = default;
        var ones = Vector256.Create((short)1);
        for (nint block = 0; block < blocks; block++)
        {
            var i0 = Vector256.Create(*(int*)(a + ActivationCorrectionsOffset));
            var i1 = Vector256.Create(*(int*)(a + ActivationCorrectionsOffset + 4));
            var i2 = Vector256.Create(*(int*)(a + ActivationCorrectionsOffset + 8));
            var i3 = Vector256.Create(*(int*)(a + ActivationCorrectionsOffset + 12));
            for (int q = 0; q < Quads; q++)
            {
                var w = Vector256.Load((sbyte*)b + q * Columns * 4);
                int* x = (int*)(a + q * Rows * 4);
                if (signedWeights)
                {
                    var magnitude = Avx2.Abs(w);
                    i0 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(magnitude, Avx2.Sign(Vector256.Create(x[0]).AsSByte(), w)), ones);
                    i1 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(magnitude, Avx2.Sign(Vector256.Create(x[1]).AsSByte(), w)), ones);
                    i2 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(magnitude, Avx2.Sign(Vector256.Create(x[2]).AsSByte(), w)), ones);
                    i3 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(magnitude, Avx2.Sign(Vector256.Create(x[3]).AsSByte(), w)), ones);
                }
                else
                {
                    var u = w.AsByte();
                    i0 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, Vector256.Create(x[0]).AsSByte()), ones);
                    i1 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, Vector256.Create(x[1]).AsSByte()), ones);
                    i2 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, Vector256.Create(x[2]).AsSByte()), ones);
                    i3 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, Vector256.Create(x[3]).AsSByte()), ones);
                }
            }
            var dw = Vector256.Load((float*)(b + WeightScalesOffset));
            float* dx = (float*)(a + ActivationScalesOffset);
            f0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0) * dx[0], dw, f0);
            f1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1) * dx[1], dw, f1);
            f2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2) * dx[2], dw, f2);
            f3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3) * dx[3], dw, f3);
            a += ActivationBlockBytes; b += WeightBlockBytes;
        }
        Vector256.Store(f0, c); Vector256.Store(f1, (float*)((byte*)c + ldcBytes));
        Vector256.Store(f2, (float*)((byte*)c + 2 * ldcBytes)); Vector256.Store(f3, (float*)((byte*)c + 3 * ldcBytes));
    }
}
