namespace Hone.Tensors;

/// <summary>Reads segments of weight rows stored in any supported type as fp32.</summary>
public static unsafe class WeightRows
{
    /// <summary>dst[0..count) = W[row][start..start+count) as fp32. For block types start and count are whole blocks.</summary>
    /// <param name="row">the row's first byte</param>
    public static void DequantizeSegment(TensorType type, byte* row, int start, int count, float* dst)
    {
        switch (type)
        {
            case TensorType.F32:
                new ReadOnlySpan<float>((float*)row + start, count).CopyTo(new Span<float>(dst, count));
                break;
            case TensorType.BF16:
                NumberConversion.BFloat16ToSingle((ushort*)row + start, dst, count);
                break;
            case TensorType.F16:
                NumberConversion.HalfToSingle((ushort*)row + start, dst, count);
                break;
            default:
                var traits = type.Traits();
                if (!traits.Compute) throw new NotSupportedException($"tensor type {type.Name()} cannot be computed with");
                if (start % traits.BlockSize != 0 || count % traits.BlockSize != 0)
                    throw new ArgumentException($"{type.Name()} segment [{start}, {start + count}) is not block aligned");
                Quantization.BlockQuantization.DequantizeRow(type,
                    new ReadOnlySpan<byte>(row + traits.BytesFor(start), (int)traits.BytesFor(count)), new Span<float>(dst, count));
                break;
        }
    }
}
