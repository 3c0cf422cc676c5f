using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hone.Tensors;

/// <summary>Matrix transposition kernels used by GEMM packing.</summary>
public static unsafe class Transpose
{
    /// <summary>dst[c, r] = src[r, c] for a rows×cols block; strides in floats.</summary>
    public static void BlockReference(float* src, nint srcStride, float* dst, nint dstStride, int rows, int cols)
    {
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                dst[c * dstStride + r] = src[r * srcStride + c];
    }

    /// <summary>dst[c, r] = src[r, c] for a rows×cols block, in 16×16 AVX-512 tiles where possible.</summary>
    public static void Block(float* src, nint srcStride, float* dst, nint dstStride, int rows, int cols)
    {
        if (!Avx512F.IsSupported) { BlockReference(src, srcStride, dst, dstStride, rows, cols); return; }
        int r = 0;
        for (; r + 16 <= rows; r += 16)
        {
            int c = 0;
            for (; c + 16 <= cols; c += 16)
                Tile16x16(src + r * srcStride + c, srcStride, dst + c * dstStride + r, dstStride);
            if (c < cols) BlockReference(src + r * srcStride + c, srcStride, dst + c * dstStride + r, dstStride, 16, cols - c);
        }
        if (r < rows) BlockReference(src + r * srcStride, srcStride, dst + r, dstStride, rows - r, cols);
    }

    /// <summary>Transpose one 16×16 tile in registers: unpack pairs, unpack quads, then two 128-bit lane shuffles.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Tile16x16(float* s, nint ss, float* d, nint ds)
    {
        // Stage 1+2: for each group of 4 rows, u[j] holds column j, j+4, j+8, j+12 (one per 128-bit lane) of those rows.
        Quad(s, ss, out var a0, out var a1, out var a2, out var a3);
        Quad(s + 4 * ss, ss, out var b0, out var b1, out var b2, out var b3);
        Quad(s + 8 * ss, ss, out var c0, out var c1, out var c2, out var c3);
        Quad(s + 12 * ss, ss, out var e0, out var e1, out var e2, out var e3);
        Finish(a0, b0, c0, e0, d, ds, 0);
        Finish(a1, b1, c1, e1, d, ds, 1);
        Finish(a2, b2, c2, e2, d, ds, 2);
        Finish(a3, b3, c3, e3, d, ds, 3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Quad(float* s, nint ss, out Vector512<float> u0, out Vector512<float> u1, out Vector512<float> u2, out Vector512<float> u3)
    {
        var r0 = Vector512.Load(s); var r1 = Vector512.Load(s + ss);
        var r2 = Vector512.Load(s + 2 * ss); var r3 = Vector512.Load(s + 3 * ss);
        var t0 = Avx512F.UnpackLow(r0, r1).AsDouble(); var t1 = Avx512F.UnpackHigh(r0, r1).AsDouble();
        var t2 = Avx512F.UnpackLow(r2, r3).AsDouble(); var t3 = Avx512F.UnpackHigh(r2, r3).AsDouble();
        u0 = Avx512F.UnpackLow(t0, t2).AsSingle(); u1 = Avx512F.UnpackHigh(t0, t2).AsSingle();
        u2 = Avx512F.UnpackLow(t1, t3).AsSingle(); u3 = Avx512F.UnpackHigh(t1, t3).AsSingle();
    }

    /// <summary>From the four row-quads' vectors for column j (+4,+8,+12), write columns j, j+4, j+8, j+12.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Finish(Vector512<float> q0, Vector512<float> q1, Vector512<float> q2, Vector512<float> q3, float* d, nint ds, int j)
    {
        var v0 = Avx512F.Shuffle4x128(q0, q1, 0x88); // col j (rows 0-3, 4-7 in lanes 0,2), col j+8 in lanes 1,3
        var v1 = Avx512F.Shuffle4x128(q0, q1, 0xDD); // col j+4, j+12
        var v2 = Avx512F.Shuffle4x128(q2, q3, 0x88);
        var v3 = Avx512F.Shuffle4x128(q2, q3, 0xDD);
        Vector512.Store(Avx512F.Shuffle4x128(v0, v2, 0x88), d + j * ds);
        Vector512.Store(Avx512F.Shuffle4x128(v0, v2, 0xDD), d + (j + 8) * ds);
        Vector512.Store(Avx512F.Shuffle4x128(v1, v3, 0x88), d + (j + 4) * ds);
        Vector512.Store(Avx512F.Shuffle4x128(v1, v3, 0xDD), d + (j + 12) * ds);
    }
}
