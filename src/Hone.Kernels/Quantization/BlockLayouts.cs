namespace Hone.Tensors.Quantization;

// Byte layouts of ggml's blocks (ggml-common.h). Offsets are from the start of a block; all little-endian.

/// <summary>block_q8_0: fp16 d, int8 qs[32]; value = qs[j]·d.</summary>
internal static class Q8_0Block
{
    public const int Elements = 32, Bytes = 34, D = 0, Qs = 2;
}

/// <summary>block_q4_0: fp16 d, u8 qs[16]; element j &lt; 16 is the low nibble of qs[j], element 16 + j the high one; value = (q − 8)·d.</summary>
internal static class Q4_0Block
{
    public const int Elements = 32, Bytes = 18, D = 0, Qs = 2;
}

/// <summary>
/// block_q4_K: fp16 d, fp16 dmin, u8 scales[12] (eight 6-bit scales and eight 6-bit mins, get_scale_min_k4 packing),
/// u8 qs[128]. Sub-block s (32 elements) has value = d·scale[s]·q − dmin·min[s]; 64-element chunk c keeps
/// sub-block 2c in the low nibbles of qs[32c .. 32c+32) and sub-block 2c+1 in the high nibbles.
/// </summary>
internal static class Q4_KBlock
{
    public const int Elements = 256, Bytes = 144, D = 0, DMin = 2, Scales = 4, Qs = 16, SubBlocks = 8;
}

/// <summary>
/// block_q6_K: u8 ql[128] (low 4 bits), u8 qh[64] (high 2 bits), int8 scales[16], fp16 d; value = d·scale[g]·(q − 32)
/// for the 16-element group g. In half h (elements 128h ..): element 32k + l (k &lt; 4, l &lt; 32) takes its low bits from
/// ql[64h + l + 32·(k&amp;1)] (low nibble for k &lt; 2, high nibble otherwise) and its high bits from qh[32h + l] bits 2k..2k+1.
/// </summary>
internal static class Q6_KBlock
{
    public const int Elements = 256, Bytes = 210, Ql = 0, Qh = 128, Scales = 192, D = 208, Groups = 16;
}

/// <summary>block_q8_K, the activation side of the K-quant dots: f32 d, int8 qs[256], int16 bsums[16] (sums of 16 quants).</summary>
internal static class Q8_KBlock
{
    public const int Elements = 256, Bytes = 292, D = 0, Qs = 4, BSums = 260;
}

/// <summary>
/// Hone's outlier-aware blocks (hq3_o, hq4_o; GGUF type ids 4003 and 4004, which only Hone reads), in the spirit of
/// SpQR: 64 weights in 4 groups of 16 at 3 or 4 bits with a per-group 4-bit scale and 4-bit min against the block's
/// fp16 d and dmin, plus 2 outlier slots holding an exact fp16 weight.
/// <code>
///   0  fp16 d, 2 fp16 dmin
///   4  u8 stats[4]: group g's scale = stats[g] &amp; 15, min = stats[g] >> 4
///   8  quants. hq4_o: u8 qs[32], element j is nibble j/32 of qs[j % 32].
///               hq3_o: u8 ql[16] then u8 qh[8]; element j = ((ql[j % 16] >> 2·(j/16)) &amp; 3) | (((qh[j % 8] >> (j/8)) &amp; 1) &lt;&lt; 2)
///   Idx  u8 index[2]: the element a slot replaces; 255 = slot unused (anything else ≥ 64 is a damaged block)
///   Val  fp16 value[2]
/// </code>
/// value_j = (d·scale_g)·q_j − dmin·min_g for g = j/16, except where a used slot names j: there value_j = value[slot].
/// Kernels ignore a slot whose index is ≥ 64 (so damaged bytes never reach outside the block); loading a model
/// rejects such blocks (<see cref="OutlierQuantization.ValidateRow"/>).
/// </summary>
internal static class OutlierBlock
{
    public const int Elements = 64, Groups = 4, GroupSize = 16, Slots = 2, D = 0, DMin = 2, Stats = 4, Qs = 8;
    public const byte Unused = 255;

    public static int Bits(TensorType type) => type == TensorType.HQ3_O ? 3 : 4;
    public static int Bytes(TensorType type) => type == TensorType.HQ3_O ? 38 : 46;
    /// <summary>Offset of the slot indices (the slot values follow them).</summary>
    public static int Index(TensorType type) => type == TensorType.HQ3_O ? 32 : 40;
    public static int Value(TensorType type) => Index(type) + Slots;
    public static bool IsOutlierType(TensorType type) => type is TensorType.HQ3_O or TensorType.HQ4_O;
}
