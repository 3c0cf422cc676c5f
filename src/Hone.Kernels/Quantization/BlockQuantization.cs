using System.Diagnostics;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hone.Tensors.Quantization;

/// <summary>Instruction-set level of a kernel; tests force each level the machine supports.</summary>
internal enum SimdLevel
{
    Scalar,
    /// <summary>SSSE3 (pmaddubsw) and SSE4.1, 16-byte vectors.</summary>
    Vector128,
    /// <summary>AVX2 and FMA, 32-byte vectors.</summary>
    Vector256,
    /// <summary>
    /// AVX-512 F/BW/VL. Dequantize and the activation quantizers run 64-byte vectors; the dot products keep 32-byte main
    /// loops and use AVX-512 for the rest (vpermt2w picks block scales out of strided blocks, EVEX embedded broadcasts):
    /// Zen 4 executes a 512-bit op as two 256-bit halves, and there the 512-bit dot loops, which need extra shuffles
    /// to pair up 18- or 34-byte blocks, measured slower.
    /// </summary>
    Vector512,
}

/// <summary>
/// ggml-compatible block quantization (Q8_0, Q4_0, Q4_K, Q6_K, and Q8_K for activations): quantize, dequantize and
/// quantized dot products. The SIMD kernels match <see cref="BlockQuantizationReference"/>: quantizers and dequantizers
/// bit for bit, dot products up to float summation order.
/// </summary>
public static unsafe class BlockQuantization
{
    /// <summary>The best level this process can run (honours DOTNET_EnableAVX512=0, DOTNET_EnableAVX2=0, DOTNET_PreferredVectorBitWidth=256).</summary>
    internal static readonly SimdLevel Best =
        Avx512BW.IsSupported && Avx512F.VL.IsSupported && Avx512BW.VL.IsSupported && Vector512.IsHardwareAccelerated ? SimdLevel.Vector512
        : Avx2.IsSupported && Fma.IsSupported && Vector256.IsHardwareAccelerated ? SimdLevel.Vector256
        : Ssse3.IsSupported && Sse41.IsSupported ? SimdLevel.Vector128
        : SimdLevel.Scalar;

    /// <summary>Levels from scalar up to <see cref="Best"/>.</summary>
    internal static IEnumerable<SimdLevel> SupportedLevels => Enum.GetValues<SimdLevel>().Where(l => l <= Best);

    /// <summary>Quantizes <paramref name="source"/> (a multiple of the block size) into consecutive blocks.</summary>
    public static void QuantizeRow(TensorType type, ReadOnlySpan<float> source, Span<byte> destination) =>
        QuantizeRow(Best, type, source, destination);

    /// <summary>Dequantizes the blocks of <paramref name="destination"/>.Length elements (a multiple of the block size).</summary>
    public static void DequantizeRow(TensorType type, ReadOnlySpan<byte> source, Span<float> destination) =>
        DequantizeRow(Best, type, source, destination);

    /// <summary>The activation format a weight type's dot product takes: Q8_0 for Q8_0/Q4_0 and Hone's hq3_o/hq4_o (two
    /// Q8_0 blocks per 64-weight block, so they apply to 64-wide rows), Q8_K for Q4_K/Q6_K.</summary>
    public static TensorType DotType(TensorType weightType) => weightType switch
    {
        TensorType.Q8_0 or TensorType.Q4_0 or TensorType.HQ3_O or TensorType.HQ4_O => TensorType.Q8_0,
        TensorType.Q4_K or TensorType.Q6_K => TensorType.Q8_K,
        _ => throw new NotSupportedException($"no quantized dot product for {weightType.Name()}"),
    };

    /// <summary>Quantizes activations <paramref name="x"/> into <see cref="DotType"/> blocks for <see cref="DotRows"/>.</summary>
    public static void QuantizeForDot(TensorType weightType, ReadOnlySpan<float> x, Span<byte> destination) =>
        QuantizeRow(Best, DotType(weightType), x, destination);

    /// <summary>
    /// y[r] = Σ_k W[r,k]·x[k] for r in [0, rows).
    /// </summary>
    /// <param name="weights">row r's n/blockSize blocks start at weights + r·rowBytes</param>
    /// <param name="rowBytes">row stride in bytes, at least the bytes of n elements</param>
    /// <param name="xq">n activations as <see cref="DotType"/> blocks, from <see cref="QuantizeForDot"/></param>
    /// <param name="y">rows floats</param>
    public static void DotRows(TensorType weightType, byte* weights, long rowBytes, int rows, byte* xq, int n, float* y) =>
        DotRows(Best, weightType, weights, rowBytes, rows, xq, n, y);

    // ------------------------------------------------------------------ level-explicit entry points (tests, benchmarks)

    internal static void QuantizeRow(SimdLevel level, TensorType type, ReadOnlySpan<float> source, Span<byte> destination)
    {
        int blocks = CheckQuantize(type, source.Length, destination.Length);
        switch (type)
        {
            case TensorType.Q8_0 when level >= SimdLevel.Vector256:
                ActivationQuantizer.QuantizeQ8_0(level, source, destination, blocks); break;
            case TensorType.Q8_K when level >= SimdLevel.Vector256:
                ActivationQuantizer.QuantizeQ8_K(level, source, destination, blocks); break;
            default:
                // Q4_0, Q4_K and Q6_K are written once per model file: the scalar reference is the implementation
                BlockQuantizationReference.QuantizeRow(type, source, destination); break;
        }
    }

    internal static void DequantizeRow(SimdLevel level, TensorType type, ReadOnlySpan<byte> source, Span<float> destination)
    {
        int blocks = CheckDequantize(type, source.Length, destination.Length);
        if (level < SimdLevel.Vector256 || type == TensorType.Q8_K)
        {
            BlockQuantizationReference.DequantizeRow(type, source, destination);
            return;
        }
        fixed (byte* x = source)
        fixed (float* y = destination)
            Dequantizer.Run(level, type, x, y, blocks);
    }

    /// <summary>Weight rows against M activation rows at once, each (row, activation) pair bit-identical to
    /// <see cref="DotRows(TensorType, byte*, long, int, byte*, int, float*)"/>; false (nothing written) where no such
    /// kernel exists for the type or machine, and the caller loops over the activation rows.</summary>
    /// <param name="xq">M rows of the dot format, <paramref name="xqStride"/> bytes apart</param>
    /// <param name="y">Y[M, rows], row stride ldy floats</param>
    public static bool TryDotRowsMany(TensorType weightType, byte* weights, long rowBytes, int rows, byte* xq, long xqStride, int m, int n,
        float* y, long ldy)
    {
        if (weightType != TensorType.Q8_0 || Best == SimdLevel.Scalar) return false;
        CheckDot(weightType, rowBytes, rows, n);
        return DotKernels32.TryRunMany(Best, weightType, weights, rowBytes, rows, xq, xqStride, m, n, y, ldy);
    }

    internal static void DotRows(SimdLevel level, TensorType weightType, byte* weights, long rowBytes, int rows, byte* xq, int n, float* y)
    {
        CheckDot(weightType, rowBytes, rows, n);
        if (level == SimdLevel.Scalar)
        {
            BlockQuantizationReference.DotRows(weightType, weights, rowBytes, rows, xq, n, y);
            return;
        }
        switch (weightType)
        {
            case TensorType.Q8_0:
            case TensorType.Q4_0: DotKernels32.Run(level, weightType, weights, rowBytes, rows, xq, n, y); break;
            case TensorType.Q4_K: DotKernelsQ4_K.Run(level, weights, rowBytes, rows, xq, n, y); break;
            case TensorType.Q6_K: DotKernelsQ6_K.Run(level, weights, rowBytes, rows, xq, n, y); break;
            case TensorType.HQ3_O:
            case TensorType.HQ4_O: DotKernelsOutlier.Run(level, weightType, weights, rowBytes, rows, xq, n, y); break;
            default: throw new UnreachableException();
        }
    }

    // ------------------------------------------------------------------ argument checks

    static bool Quantizable(TensorType type) =>
        type is TensorType.Q8_0 or TensorType.Q4_0 or TensorType.Q4_K or TensorType.Q6_K or TensorType.Q8_K
            or TensorType.HQ3_O or TensorType.HQ4_O;

    /// <returns>the number of blocks</returns>
    internal static int CheckQuantize(TensorType type, int elements, int destinationBytes)
    {
        if (!Quantizable(type)) throw new NotSupportedException($"cannot quantize to {type.Name()}");
        var t = type.Traits();
        if (elements % t.BlockSize != 0)
            throw new ArgumentException($"{elements} elements is not a multiple of the {t.Name} block size {t.BlockSize}");
        int blocks = elements / t.BlockSize;
        if (destinationBytes < (long)blocks * t.BlockBytes)
            throw new ArgumentException($"{t.Name}: {blocks} blocks need {(long)blocks * t.BlockBytes} bytes, destination has {destinationBytes}");
        return blocks;
    }

    /// <returns>the number of blocks</returns>
    internal static int CheckDequantize(TensorType type, int sourceBytes, int elements)
    {
        if (!Quantizable(type)) throw new NotSupportedException($"cannot dequantize {type.Name()}");
        var t = type.Traits();
        if (elements % t.BlockSize != 0)
            throw new ArgumentException($"{elements} elements is not a multiple of the {t.Name} block size {t.BlockSize}");
        int blocks = elements / t.BlockSize;
        if (sourceBytes < (long)blocks * t.BlockBytes)
            throw new ArgumentException($"{t.Name}: {blocks} blocks need {(long)blocks * t.BlockBytes} bytes, source has {sourceBytes}");
        return blocks;
    }

    /// <returns>the number of blocks per row</returns>
    internal static int CheckDot(TensorType weightType, long rowBytes, int rows, int n)
    {
        DotType(weightType);
        var t = weightType.Traits();
        if (n < 0 || n % t.BlockSize != 0)
            throw new ArgumentException($"n = {n} is not a multiple of the {t.Name} block size {t.BlockSize}");
        if (rows < 0) throw new ArgumentOutOfRangeException(nameof(rows));
        if (rowBytes < t.BytesFor(n))
            throw new ArgumentException($"row stride {rowBytes} is shorter than a row of {n} {t.Name} elements ({t.BytesFor(n)} bytes)");
        return n / t.BlockSize;
    }
}
