using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hone.Tensors.Emitted;

/// <summary>
/// Micro-kernels for C[8, 48] (+)= A[8, kc] · B[kc, 48] with bf16 operands and fp32 accumulators.
///
/// Emitted (AVX512_BF16): A packed as [pairs][8] dwords and B as [pairs][48] dwords, each dword a bf16 pair
/// (element 2p in the low half, 2p+1 in the high half), so one vdpbf16ps multiplies 16 columns by one broadcast
/// pair of a row: 2 products per fp32 lane per instruction. 24 zmm accumulators (8 rows × 3 vectors) stay in registers.
///
/// Managed fallback: the same tile with A and B widened to fp32 at packing time ([k][8] and [k][48] floats, A
/// rounded to bf16 first), multiplied with plain FMAs. Both compute exact bf16·bf16 products (8-bit mantissas
/// multiply exactly in fp32) accumulated in fp32, so they differ only in accumulation order and in vdpbf16ps
/// treating denormal inputs and outputs as zero.
/// </summary>
public static unsafe class BFloat16Kernels
{
    public const int Rows = 8;          // MR: rows of C per micro-tile
    public const int Columns = 48;      // NR: columns of C per micro-tile (3 zmm of 16 fp32)
    public const int PairsPerStep = 4;  // k pairs per iteration of the emitted loop (packed depth is padded to this)

    /// <summary>Emitted kernel: (A [pairs][8] dwords, B [pairs][48] dwords, C [8][ldc], ldc in bytes, pairs / PairsPerStep, load C?).</summary>
    public static delegate* unmanaged[SuppressGCTransition]<byte*, byte*, float*, nint, nint, nint, void> Emitted =>
        (delegate* unmanaged[SuppressGCTransition]<byte*, byte*, float*, nint, nint, nint, void>)EmittedCode.Value.Pointer;

    /// <summary>True when the vdpbf16ps kernel was emitted and may run here.</summary>
    public static bool EmittedAvailable => EmittedCode.Value.Pointer != 0;

    /// <summary>Why the emitted kernel is unavailable (null when it is available).</summary>
    public static string? EmittedUnavailableReason => EmittedCode.Value.Failure;

    static readonly Lazy<(nint Pointer, string? Failure)> EmittedCode = new(() =>
    {
        if (!EmittedCpu.CanRunEvexCode) return (0, "AVX-512 code cannot run here (CPU, OS, platform or HONE_DISABLE_EMITTED)");
        if (!EmittedCpu.HasAvx512Bf16) return (0, "the CPU has no AVX512_BF16");
        var memory = ExecutableMemory.TryCreate(Emit(), out var failure);
        return memory == null ? (0, failure) : ((nint)memory.Pointer, null);
    });

    static Zmm Accumulator(int row, int vector) => new(row * 3 + vector);  // zmm0..zmm23
    static Zmm BVector(int vector) => new(24 + vector);                      // zmm24..zmm26

    /// <summary>The machine code of the vdpbf16ps micro-kernel (System V: rdi=A, rsi=B, rdx=C, rcx=ldc bytes,
    /// r8=steps, r9=load). Uses only caller-saved registers, so the prologue saves nothing.</summary>
    public static byte[] Emit()
    {
        var asm = new X86Assembler();
        Gpr a = Gpr.Rdi, b = Gpr.Rsi, c = Gpr.Rdx, ldc = Gpr.Rcx, steps = Gpr.R8, load = Gpr.R9, row = Gpr.R10;
        var zero = new Label(); var ready = new Label(); var loop = new Label(); var store = new Label();

        asm.Test(load, load);
        asm.Jump(Condition.Equal, zero);
        asm.Mov(row, c);
        for (int i = 0; i < Rows; i++)
        {
            for (int j = 0; j < 3; j++) asm.Vmovups(Accumulator(i, j), Memory.At(row, 64 * j));
            if (i < Rows - 1) asm.Add(row, ldc);
        }
        asm.Jump(ready);
        asm.Bind(zero);
        for (int i = 0; i < Rows; i++)
            for (int j = 0; j < 3; j++) asm.Vpxord(Accumulator(i, j), Accumulator(i, j), Accumulator(i, j));
        asm.Bind(ready);
        asm.Test(steps, steps);
        asm.Jump(Condition.Equal, store);

        asm.Bind(loop);
        for (int u = 0; u < PairsPerStep; u++)
        {
            for (int j = 0; j < 3; j++) asm.Vmovups(BVector(j), Memory.At(b, (u * Columns + 16 * j) * 4));
            for (int i = 0; i < Rows; i++)
                for (int j = 0; j < 3; j++)
                    asm.Vdpbf16ps(Accumulator(i, j), BVector(j), Memory.At(a, (u * Rows + i) * 4), broadcast: true);
        }
        asm.Add(a, PairsPerStep * Rows * 4);
        asm.Add(b, PairsPerStep * Columns * 4);
        asm.Dec(steps);
        asm.Jump(Condition.NotEqual, loop);

        asm.Bind(store);
        asm.Mov(row, c);
        for (int i = 0; i < Rows; i++)
        {
            for (int j = 0; j < 3; j++) asm.Vmovups(Memory.At(row, 64 * j), Accumulator(i, j));
            if (i < Rows - 1) asm.Add(row, ldc);
        }
        asm.Vzeroupper();
        asm.Ret();
        return asm.ToArray();
    }

    // ---- managed fallbacks (fp32 operands widened at packing) ----------------------------------------

    /// <summary>C[8, 48] (+)= A[k][8] · B[k][48], all fp32, on AVX-512F: 24 accumulators in registers.</summary>
    /// <param name="a">[k][8] floats (bf16-rounded activations)</param>
    /// <param name="b">[k][48] floats (widened bf16 weights)</param>
    /// <param name="c">C[8][ldc bytes]</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Fallback512(float* a, float* b, float* c, nint ldcBytes, nint k, bool load)
    {
        Vector512<float> c00, c01, c02, c10, c11, c12, c20, c21, c22, c30, c31, c32,
                         c40, c41, c42, c50, c51, c52, c60, c61, c62, c70, c71, c72;
        byte* r = (byte*)c;
        if (load)
        {
            c00 = Vector512.Load((float*)r); c01 = Vector512.Load((float*)r + 16); c02 = Vector512.Load((float*)r + 32); r += ldcBytes;
            c10 = Vector512.Load((float*)r); c11 = Vector512.Load((float*)r + 16); c12 = Vector512.Load((float*)r + 32); r += ldcBytes;
            c20 = Vector512.Load((float*)r); c21 = Vector512.Load((float*)r + 16); c22 = Vector512.Load((float*)r + 32); r += ldcBytes;
            c30 = Vector512.Load((float*)r); c31 = Vector512.Load((float*)r + 16); c32 = Vector512.Load((float*)r + 32); r += ldcBytes;
            c40 = Vector512.Load((float*)r); c41 = Vector512.Load((float*)r + 16); c42 = Vector512.Load((float*)r + 32); r += ldcBytes;
            c50 = Vector512.Load((float*)r); c51 = Vector512.Load((float*)r + 16); c52 = Vector512.Load((float*)r + 32); r += ldcBytes;
            c60 = Vector512.Load((float*)r); c61 = Vector512.Load((float*)r + 16); c62 = Vector512.Load((float*)r + 32); r += ldcBytes;
            c70 = Vector512.Load((float*)r); c71 = Vector512.Load((float*)r + 16); c72 = Vector512.Load((float*)r + 32);
        }
        else
        {
            c00 = c01 = c02 = c10 = c11 = c12 = c20 = c21 = c22 = c30 = c31 = c32 = default;
            c40 = c41 = c42 = c50 = c51 = c52 = c60 = c61 = c62 = c70 = c71 = c72 = default;
        }
        for (nint p = 0; p < k; p++)
        {
            var b0 = Vector512.Load(b); var b1 = Vector512.Load(b + 16); var b2 = Vector512.Load(b + 32);
            var x = Vector512.Create(a[0]);
            c00 = Avx512F.FusedMultiplyAdd(x, b0, c00); c01 = Avx512F.FusedMultiplyAdd(x, b1, c01); c02 = Avx512F.FusedMultiplyAdd(x, b2, c02);
            x = Vector512.Create(a[1]);
            c10 = Avx512F.FusedMultiplyAdd(x, b0, c10); c11 = Avx512F.FusedMultiplyAdd(x, b1, c11); c12 = Avx512F.FusedMultiplyAdd(x, b2, c12);
            x = Vector512.Create(a[2]);
            c20 = Avx512F.FusedMultiplyAdd(x, b0, c20); c21 = Avx512F.FusedMultiplyAdd(x, b1, c21); c22 = Avx512F.FusedMultiplyAdd(x, b2, c22);
            x = Vector512.Create(a[3]);
            c30 = Avx512F.FusedMultiplyAdd(x, b0, c30); c31 = Avx512F.FusedMultiplyAdd(x, b1, c31); c32 = Avx512F.FusedMultiplyAdd(x, b2, c32);
            x = Vector512.Create(a[4]);
            c40 = Avx512F.FusedMultiplyAdd(x, b0, c40); c41 = Avx512F.FusedMultiplyAdd(x, b1, c41); c42 = Avx512F.FusedMultiplyAdd(x, b2, c42);
            x = Vector512.Create(a[5]);
            c50 = Avx512F.FusedMultiplyAdd(x, b0, c50); c51 = Avx512F.FusedMultiplyAdd(x, b1, c51); c52 = Avx512F.FusedMultiplyAdd(x, b2, c52);
            x = Vector512.Create(a[6]);
            c60 = Avx512F.FusedMultiplyAdd(x, b0, c60); c61 = Avx512F.FusedMultiplyAdd(x, b1, c61); c62 = Avx512F.FusedMultiplyAdd(x, b2, c62);
            x = Vector512.Create(a[7]);
            c70 = Avx512F.FusedMultiplyAdd(x, b0, c70); c71 = Avx512F.FusedMultiplyAdd(x, b1, c71); c72 = Avx512F.FusedMultiplyAdd(x, b2, c72);
            a += Rows; b += Columns;
        }
        r = (byte*)c;
        Vector512.Store(c00, (float*)r); Vector512.Store(c01, (float*)r + 16); Vector512.Store(c02, (float*)r + 32); r += ldcBytes;
        Vector512.Store(c10, (float*)r); Vector512.Store(c11, (float*)r + 16); Vector512.Store(c12, (float*)r + 32); r += ldcBytes;
        Vector512.Store(c20, (float*)r); Vector512.Store(c21, (float*)r + 16); Vector512.Store(c22, (float*)r + 32); r += ldcBytes;
        Vector512.Store(c30, (float*)r); Vector512.Store(c31, (float*)r + 16); Vector512.Store(c32, (float*)r + 32); r += ldcBytes;
        Vector512.Store(c40, (float*)r); Vector512.Store(c41, (float*)r + 16); Vector512.Store(c42, (float*)r + 32); r += ldcBytes;
        Vector512.Store(c50, (float*)r); Vector512.Store(c51, (float*)r + 16); Vector512.Store(c52, (float*)r + 32); r += ldcBytes;
        Vector512.Store(c60, (float*)r); Vector512.Store(c61, (float*)r + 16); Vector512.Store(c62, (float*)r + 32); r += ldcBytes;
        Vector512.Store(c70, (float*)r); Vector512.Store(c71, (float*)r + 16); Vector512.Store(c72, (float*)r + 32);
    }

    /// <summary>The same tile on AVX2+FMA (16 ymm registers): six passes of 4 rows × 16 columns.</summary>
    public static void Fallback256(float* a, float* b, float* c, nint ldcBytes, nint k, bool load)
    {
        for (int half = 0; half < 2; half++)
            for (int group = 0; group < 3; group++)
                Fallback256Pass(a + 4 * half, b + 16 * group, (float*)((byte*)c + 4 * half * ldcBytes) + 16 * group, ldcBytes, k, load);
    }

    /// <summary>C[4, 16] (+)= A[k][8 stride] rows 0..3 · B[k][48 stride] columns 0..15: 8 ymm accumulators.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Fallback256Pass(float* a, float* b, float* c, nint ldcBytes, nint k, bool load)
    {
        Vector256<float> c00, c01, c10, c11, c20, c21, c30, c31;
        byte* r = (byte*)c;
        if (load)
        {
            c00 = Vector256.Load((float*)r); c01 = Vector256.Load((float*)r + 8); r += ldcBytes;
            c10 = Vector256.Load((float*)r); c11 = Vector256.Load((float*)r + 8); r += ldcBytes;
            c20 = Vector256.Load((float*)r); c21 = Vector256.Load((float*)r + 8); r += ldcBytes;
            c30 = Vector256.Load((float*)r); c31 = Vector256.Load((float*)r + 8);
        }
        else c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = default;
        for (nint p = 0; p < k; p++)
        {
            var b0 = Vector256.Load(b); var b1 = Vector256.Load(b + 8);
            var x = Vector256.Create(a[0]); c00 = Fma.MultiplyAdd(x, b0, c00); c01 = Fma.MultiplyAdd(x, b1, c01);
            x = Vector256.Create(a[1]); c10 = Fma.MultiplyAdd(x, b0, c10); c11 = Fma.MultiplyAdd(x, b1, c11);
            x = Vector256.Create(a[2]); c20 = Fma.MultiplyAdd(x, b0, c20); c21 = Fma.MultiplyAdd(x, b1, c21);
            x = Vector256.Create(a[3]); c30 = Fma.MultiplyAdd(x, b0, c30); c31 = Fma.MultiplyAdd(x, b1, c31);
            a += Rows; b += Columns;
        }
        r = (byte*)c;
        Vector256.Store(c00, (float*)r); Vector256.Store(c01, (float*)r + 8); r += ldcBytes;
        Vector256.Store(c10, (float*)r); Vector256.Store(c11, (float*)r + 8); r += ldcBytes;
        Vector256.Store(c20, (float*)r); Vector256.Store(c21, (float*)r + 8); r += ldcBytes;
        Vector256.Store(c30, (float*)r); Vector256.Store(c31, (float*)r + 8);
    }
}
