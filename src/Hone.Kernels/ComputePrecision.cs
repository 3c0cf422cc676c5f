namespace Hone.Tensors;

/// <summary>How activations meet stored weights in the weight products (GEMM and matrix-vector).</summary>
public enum ComputePrecision
{
    /// <summary>
    /// Activations stay fp32 in every weight product: bf16 and fp16 weights widen exactly to fp32 (bf16 by a 16-bit
    /// shift), quantized blocks dequantize to fp32, and fp32 FMAs accumulate. A product equals the F32 model's of the
    /// same (widened) weights up to fp32 summation order; with our kernels it is bit-identical to it.
    /// </summary>
    Exact,

    /// <summary>
    /// The fastest kernels, with llama.cpp's numerics: in a step of two or more tokens, BF16 weights multiply
    /// activations rounded to bf16 (vdpbf16ps, or its managed twin; 2⁻⁹ relative per element) and Q8_0/Q4_0 weights
    /// multiply activations quantized to Q8_0, and Q4_K/Q6_K weights activations rounded to Q8_K (then an fp32 GEMM);
    /// matrix-vector products (one token) with quantized weights quantize the
    /// activations to Q8_0/Q8_K. Products with f32, f16 and bf16 weights in a one-token step are the same as Exact.
    /// </summary>
    Fast,
}

public static class ComputePrecisions
{
    /// <summary>The name used on the command line and in results ("exact", "fast").</summary>
    public static string Name(this ComputePrecision precision) => precision switch
    {
        ComputePrecision.Exact => "exact",
        ComputePrecision.Fast => "fast",
        _ => throw new ArgumentOutOfRangeException(nameof(precision), precision, null),
    };

    public static ComputePrecision Parse(string name) => name switch
    {
        "exact" => ComputePrecision.Exact,
        "fast" => ComputePrecision.Fast,
        _ => throw new ArgumentException($"unknown precision '{name}': use exact or fast"),
    };
}
