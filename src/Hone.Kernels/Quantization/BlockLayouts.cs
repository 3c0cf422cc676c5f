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
