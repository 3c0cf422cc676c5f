using System.Buffers.Binary;

namespace Hone.Tensors.Quantization;

/// <summary>
/// One block of a block format as fitted to some values: the block's bytes exactly as the type's quantizer writes them
/// for those values (scales, mins and the quants it chose), and the codec's own numbers needed to round a value the way
/// that quantizer does (an inverse scale computed before the fp16 rounding of the stored scale).
/// </summary>
public sealed class BlockFit
{
    public BlockFit(TensorType type)
    {
        Bytes = new byte[type.Traits().BlockBytes];
        Numbers = new float[8];
    }

    /// <summary>The block's bytes; quants are overwritten element by element by <see cref="ElementCodec.Store"/>.</summary>
    public byte[] Bytes { get; }
    /// <summary>Codec-specific rounding parameters (e.g. Q4_0's inverse scale).</summary>
    public float[] Numbers { get; }
}

/// <summary>
/// A block format seen one element at a time, for error-feedback quantizers (GPTQ) that quantize a block's elements in
/// turn while the later ones still move: <see cref="Fit"/> fits a block's shared parameters (scales, mins) from its
/// current values exactly as the type's quantizer does (importance-weighted when weights are given), then
/// <see cref="Quantize"/> rounds one element against those fixed parameters (giving its code and the value the stored
/// block dequantizes to), and <see cref="Store"/> packs the code into the block's bytes. Quantizing every element of a
/// fitted block with its own fitted value and storing the codes gives the type's quantizer's bytes, bit for bit.
/// </summary>
public abstract class ElementCodec
{
    public abstract TensorType Type { get; }
    public int BlockSize => Type.Traits().BlockSize;

    /// <summary>A statistic of the whole row some weighted quantizers use (weighted Q4_0's σ² = Σx²/n); 0 when unused.</summary>
    public virtual float RowStatistic(ReadOnlySpan<float> row, bool weighted) => 0;

    /// <summary>Fits one block to <paramref name="values"/>[BlockSize].</summary>
    /// <param name="importance">[BlockSize] importance weights (an importance matrix's column weights), or empty for the
    /// unweighted quantizer</param>
    /// <param name="rowStatistic"><see cref="RowStatistic"/> of the block's row</param>
    public abstract void Fit(ReadOnlySpan<float> values, ReadOnlySpan<float> importance, float rowStatistic, BlockFit fit);

    /// <summary>The code of element <paramref name="index"/> (0..BlockSize−1) of a fitted block holding
    /// <paramref name="value"/>; <paramref name="dequantized"/> is what the stored block will read back there.
    /// Read before <see cref="Store"/> overwrites that element.</summary>
    public abstract int Quantize(BlockFit fit, int index, float value, out float dequantized);

    /// <summary>Packs <paramref name="code"/> as element <paramref name="index"/>'s quant in the fitted block's bytes.</summary>
    public abstract void Store(BlockFit fit, int index, int code);

    protected static float Half(ReadOnlySpan<byte> bytes, int offset) => Fp16.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes[offset..]));
    protected static int NearestInt(float v) => BlockQuantizationReference.NearestInt(v);
}

/// <summary>The one table of element codecs, one row per type an error-feedback quantizer can write.</summary>
public static class ElementCodecs
{
    static readonly Dictionary<TensorType, ElementCodec> Table = new()
    {
        [TensorType.Q8_0] = new Q8_0Codec(),
        [TensorType.Q4_0] = new Q4_0Codec(),
        [TensorType.Q4_K] = new Q4_KCodec(),
        [TensorType.Q6_K] = new Q6_KCodec(),
        [TensorType.HQ3_O] = new OutlierCodec(TensorType.HQ3_O),
        [TensorType.HQ4_O] = new OutlierCodec(TensorType.HQ4_O),
    };

    public static IReadOnlyCollection<TensorType> Types => Table.Keys;

    public static bool TryGet(TensorType type, out ElementCodec codec) => Table.TryGetValue(type, out codec!);

    public static ElementCodec For(TensorType type) => Table.TryGetValue(type, out var codec) ? codec
        : throw new NotSupportedException($"no element codec for {type.Name()} (GPTQ writes {string.Join(", ", Table.Keys.Select(t => t.Name()))})");
}

/// <summary>Q8_0: d = amax/127 per 32; code = round-half-away(x/d) (ggml's roundf), clamped to int8. Ignores importance,
/// as ggml's quantize_q8_0 does.</summary>
sealed class Q8_0Codec : ElementCodec
{
    public override TensorType Type => TensorType.Q8_0;

    public override void Fit(ReadOnlySpan<float> values, ReadOnlySpan<float> importance, float rowStatistic, BlockFit fit)
    {
        BlockQuantizationReference.QuantizeRow(TensorType.Q8_0, values, fit.Bytes);
        float amax = 0;
        for (int j = 0; j < Q8_0Block.Elements; j++)
        {
            float a = MathF.Abs(values[j]);
            amax = amax > a ? amax : a;
        }
        float d = amax / 127;
        fit.Numbers[0] = d != 0 ? 1f / d : 0f; // the unrounded inverse scale the quantizer multiplies by
    }

    public override int Quantize(BlockFit fit, int index, float value, out float dequantized)
    {
        int code = (int)Math.Clamp(MathF.Round(value * fit.Numbers[0], MidpointRounding.AwayFromZero), -128f, 127f);
        dequantized = code * Half(fit.Bytes, Q8_0Block.D);
        return code;
    }

    public override void Store(BlockFit fit, int index, int code) => fit.Bytes[Q8_0Block.Qs + index] = (byte)(sbyte)code;
}

/// <summary>Q4_0: unweighted, d = max/−8 (the signed value of largest magnitude) and code = min(15, trunc(x/d + 8.5));
/// weighted, make_qx_quants' best inverse scale and code = 8 + clamp(nearest(iscale·x), −8, 7). Codes are clamped to
/// 0..15, which the plain quantizer never needs; values read back as (code − 8)·d.</summary>
sealed class Q4_0Codec : ElementCodec
{
    const int Plain = 0, Weighted = 1;

    public override TensorType Type => TensorType.Q4_0;

    public override float RowStatistic(ReadOnlySpan<float> row, bool weighted) => weighted ? WeightedQuantization.RowSigma2(row) : 0;

    public override void Fit(ReadOnlySpan<float> values, ReadOnlySpan<float> importance, float rowStatistic, BlockFit fit)
    {
        if (importance.IsEmpty)
        {
            BlockQuantizationReference.QuantizeRow(TensorType.Q4_0, values, fit.Bytes);
            float amax = 0, max = 0;
            for (int j = 0; j < Q4_0Block.Elements; j++)
                if (amax < MathF.Abs(values[j])) { amax = MathF.Abs(values[j]); max = values[j]; }
            float d = max / -8;
            fit.Numbers[0] = d != 0 ? 1f / d : 0f;
            fit.Numbers[1] = Plain;
        }
        else
        {
            WeightedQuantization.QuantizeQ4_0Block(values, importance, rowStatistic, fit.Bytes, out float iscale);
            fit.Numbers[0] = iscale;
            fit.Numbers[1] = Weighted;
        }
    }

    public override int Quantize(BlockFit fit, int index, float value, out float dequantized)
    {
        float id = fit.Numbers[0];
        int code;
        if (fit.Numbers[1] == Plain) code = Math.Clamp((int)(value * id + 8.5f), 0, 15); // C: (int8_t)(x·id + 8.5f), truncation
        else if (id == 0) code = Code(fit.Bytes, index); // an all-zero group keeps its quants (0)
        else code = 8 + Math.Clamp(NearestInt(id * value), -8, 7);
        dequantized = (code - 8) * Half(fit.Bytes, Q4_0Block.D);
        return code;
    }

    static int Code(byte[] block, int index) => index < 16 ? block[Q4_0Block.Qs + index] & 0xF : block[Q4_0Block.Qs + index - 16] >> 4;

    public override void Store(BlockFit fit, int index, int code)
    {
        ref byte b = ref fit.Bytes[Q4_0Block.Qs + index % 16];
        b = index < 16 ? (byte)((b & 0xF0) | code) : (byte)((b & 0x0F) | (code << 4));
    }
}

/// <summary>Q4_K: the super-block's scales and mins as the (weighted) quantizer packs them; code =
/// clamp(nearest((x + m)/d), 0, 15) against the stored 6-bit scale d and min m of the element's sub-block of 32 (a
/// sub-block whose scale is 0 keeps the quants its fit chose); values read back as d·code − m.</summary>
sealed class Q4_KCodec : ElementCodec
{
    public override TensorType Type => TensorType.Q4_K;

    public override void Fit(ReadOnlySpan<float> values, ReadOnlySpan<float> importance, float rowStatistic, BlockFit fit)
    {
        if (importance.IsEmpty) BlockQuantizationReference.QuantizeRow(TensorType.Q4_K, values, fit.Bytes);
        else WeightedQuantization.QuantizeQ4_KBlock(values, importance, fit.Bytes);
    }

    public override int Quantize(BlockFit fit, int index, float value, out float dequantized)
    {
        var y = fit.Bytes;
        var (sc, m) = BlockQuantizationReference.ScaleMinK4(index / 32, y.AsSpan(Q4_KBlock.Scales, 12));
        float d = Half(y, Q4_KBlock.D) * sc;
        float dm = Half(y, Q4_KBlock.DMin) * m;
        int code = d == 0 ? Code(y, index) : Math.Max(0, Math.Min(15, NearestInt((value + dm) / d)));
        dequantized = d * code - dm;
        return code;
    }

    // element 64c + l is the low nibble of qs[32c + l], element 64c + 32 + l its high nibble
    static int Code(byte[] y, int index) => (y[Q4_KBlock.Qs + 32 * (index / 64) + index % 32] >> (index % 64 >= 32 ? 4 : 0)) & 0xF;

    public override void Store(BlockFit fit, int index, int code)
    {
        ref byte b = ref fit.Bytes[Q4_KBlock.Qs + 32 * (index / 64) + index % 32];
        b = index % 64 >= 32 ? (byte)((b & 0x0F) | (code << 4)) : (byte)((b & 0xF0) | code);
    }
}

/// <summary>Q6_K: the super-block's fp16 scale and 8-bit group scales as the (weighted) quantizer packs them; code =
/// 32 + clamp(nearest(x/d), −32, 31) against the stored scale d of the element's group of 16 (a group whose scale is 0
/// keeps the quants its fit chose); values read back as d·(code − 32).</summary>
sealed class Q6_KCodec : ElementCodec
{
    public override TensorType Type => TensorType.Q6_K;

    public override void Fit(ReadOnlySpan<float> values, ReadOnlySpan<float> importance, float rowStatistic, BlockFit fit)
    {
        if (importance.IsEmpty) BlockQuantizationReference.QuantizeRow(TensorType.Q6_K, values, fit.Bytes);
        else WeightedQuantization.QuantizeQ6_KBlock(values, importance, fit.Bytes);
    }

    public override int Quantize(BlockFit fit, int index, float value, out float dequantized)
    {
        var y = fit.Bytes;
        float d = Half(y, Q6_KBlock.D) * (sbyte)y[Q6_KBlock.Scales + index / 16];
        int code = d == 0 ? BlockQuantizationReference.Q6_KQuant(y, index) : Math.Max(-32, Math.Min(31, NearestInt(value / d))) + 32;
        dequantized = d * (code - 32);
        return code;
    }

    public override void Store(BlockFit fit, int index, int code)
    {
        int h = index / 128, k = index % 128 / 32, l = index % 32;
        ref byte low = ref fit.Bytes[Q6_KBlock.Ql + 64 * h + l + 32 * (k & 1)];
        int shift = 4 * (k >> 1);
        low = (byte)((low & ~(0xF << shift)) | ((code & 0xF) << shift));
        ref byte high = ref fit.Bytes[Q6_KBlock.Qh + 32 * h + l];
        high = (byte)((high & ~(3 << (2 * k))) | ((code >> 4) << (2 * k)));
    }
}

/// <summary>hq3_o / hq4_o: <see cref="Fit"/> runs the type's quantizer on the block (its group scales and mins, and the
/// two outlier slots it picks by imp·(w − q)² from the values at that moment); an element in an outlier slot is then
/// stored as the fp16 of its value when its turn comes (the feedback moves it, so the fitted copy would be stale), the
/// others round against their group's fixed scale and min. The code carries the fp16 bits above the quant.</summary>
sealed class OutlierCodec(TensorType type) : ElementCodec
{
    const int N = OutlierBlock.Elements, G = OutlierBlock.GroupSize;
    static readonly float[] Unit = Enumerable.Repeat(1f, N).ToArray();

    public override TensorType Type => type;

    public override void Fit(ReadOnlySpan<float> values, ReadOnlySpan<float> importance, float rowStatistic, BlockFit fit) =>
        OutlierQuantization.QuantizeBlock(type, values, importance.IsEmpty ? Unit : importance, fit.Bytes);

    int Slot(BlockFit fit, int index)
    {
        int at = OutlierBlock.Index(type);
        for (int s = 0; s < OutlierBlock.Slots; s++) if (fit.Bytes[at + s] == index) return s;
        return -1;
    }

    public override int Quantize(BlockFit fit, int index, float value, out float dequantized)
    {
        var b = fit.Bytes;
        int nmax = (1 << OutlierBlock.Bits(type)) - 1, stats = b[OutlierBlock.Stats + index / G];
        float dd = Half(b, OutlierBlock.D) * (stats & 0xF), dm = Half(b, OutlierBlock.DMin) * (stats >> 4);
        int q = dd > 0 ? Math.Clamp(NearestInt((value + dm) / dd), 0, nmax) : 0;
        if (Slot(fit, index) < 0)
        {
            dequantized = dd * q - dm;
            return q;
        }
        ushort half = Fp16.FromSingle(Math.Clamp(value, -65504f, 65504f));
        dequantized = Fp16.ToSingle(half);
        return q | half << 8;
    }

    public override void Store(BlockFit fit, int index, int code)
    {
        var b = fit.Bytes;
        int q = code & 0xFF;
        if (type == TensorType.HQ4_O)
        {
            int at = OutlierBlock.Qs + index % 32, shift = 4 * (index / 32);
            b[at] = (byte)(b[at] & ~(0xF << shift) | q << shift);
        }
        else
        {
            int low = OutlierBlock.Qs + index % 16, lowShift = 2 * (index / 16), high = OutlierBlock.Qs + 16 + index % 8, highShift = index / 8;
            b[low] = (byte)(b[low] & ~(3 << lowShift) | (q & 3) << lowShift);
            b[high] = (byte)(b[high] & ~(1 << highShift) | (q >> 2) << highShift);
        }
        int slot = Slot(fit, index);
        if (slot >= 0) BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(OutlierBlock.Value(type) + 2 * slot), (ushort)(code >> 8));
    }
}
