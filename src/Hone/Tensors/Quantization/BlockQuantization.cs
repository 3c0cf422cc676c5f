namespace Hone.Tensors.Quantization;

// Placeholder surface until the quantized block formats land (helper/quant branch); every call fails loudly.
public static unsafe class BlockQuantization
{
    public static void QuantizeRow(TensorType type, ReadOnlySpan<float> source, Span<byte> destination) =>
        throw new NotSupportedException($"quantizing to {type.Name()} is not available yet");
    public static void DequantizeRow(TensorType type, ReadOnlySpan<byte> source, Span<float> destination) =>
        throw new NotSupportedException($"dequantizing {type.Name()} is not available yet");
    public static TensorType DotType(TensorType weightType) =>
        throw new NotSupportedException($"{weightType.Name()} dot products are not available yet");
    public static void QuantizeForDot(TensorType weightType, ReadOnlySpan<float> x, Span<byte> destination) =>
        throw new NotSupportedException($"{weightType.Name()} dot products are not available yet");
    public static void DotRows(TensorType weightType, byte* weights, long rowBytes, int rows, byte* xq, int n, float* y) =>
        throw new NotSupportedException($"{weightType.Name()} dot products are not available yet");
}
