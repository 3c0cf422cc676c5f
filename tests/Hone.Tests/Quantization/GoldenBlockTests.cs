using Hone.Tensors;
using Hone.Tensors.Quantization;
using Xunit;

namespace Hone.Tests.Quantization;

/// <summary>
/// Hand-built blocks with known values: the bit layout of each format, written out from ggml-common.h's description
/// independently of the implementation, and the rounding rules of the quantizers on chosen inputs.
/// </summary>
public class GoldenBlockTests
{
    const ushort Half1 = 0x3C00, HalfHalf = 0x3800, Half2 = 0x4000, HalfQuarter = 0x3400;

    static float[] Dequantize(TensorType type, byte[] block)
    {
        var y = new float[type.Traits().BlockSize * (block.Length / type.Traits().BlockBytes)];
        BlockQuantizationReference.DequantizeRow(type, block, y);
        var fast = new float[y.Length];
        BlockQuantization.DequantizeRow(type, block, fast);
        Assert.Equal(y, fast);
        return y;
    }

    [Fact]
    public void Q8_0_is_fp16_scale_then_32_signed_quants()
    {
        var block = new byte[34];
        block[0] = Half2 & 0xFF; block[1] = Half2 >> 8;
        for (int j = 0; j < 32; j++) block[2 + j] = (byte)(sbyte)(j - 16);
        block[2 + 31] = 0x80; // −128 is a valid weight byte
        var y = Dequantize(TensorType.Q8_0, block);
        for (int j = 0; j < 31; j++) Assert.Equal(2f * (j - 16), y[j]);
        Assert.Equal(-256f, y[31]);
    }

    [Fact]
    public void Q4_0_low_nibbles_are_the_first_16_elements_and_high_nibbles_the_last_16()
    {
        var block = new byte[18];
        block[0] = HalfHalf & 0xFF; block[1] = HalfHalf >> 8;
        for (int j = 0; j < 16; j++) block[2 + j] = (byte)(j | ((15 - j) << 4));
        var y = Dequantize(TensorType.Q4_0, block);
        for (int j = 0; j < 16; j++)
        {
            Assert.Equal(0.5f * (j - 8), y[j]);
            Assert.Equal(0.5f * (7 - j), y[16 + j]);
        }
    }

    [Fact]
    public void Q4_K_unpacks_six_bit_scales_and_mins_and_the_nibble_chunks()
    {
        int[] scales = [1, 2, 3, 4, 17, 33, 47, 63];
        int[] mins = [0, 5, 9, 12, 16, 31, 48, 62];
        var block = new byte[144];
        block[0] = Half1 & 0xFF; block[1] = Half1 >> 8;       // d = 1
        block[2] = HalfHalf & 0xFF; block[3] = HalfHalf >> 8; // dmin = 0.5
        // bytes 4..7: scale j (6 bits) | top bits of scale j+4 in bits 6..7; bytes 8..11 the same for mins;
        // bytes 12..15: low nibble = low 4 bits of scale j+4, high nibble = low 4 bits of min j+4
        for (int j = 0; j < 4; j++)
        {
            block[4 + j] = (byte)(scales[j] | (scales[j + 4] >> 4) << 6);
            block[8 + j] = (byte)(mins[j] | (mins[j + 4] >> 4) << 6);
            block[12 + j] = (byte)((scales[j + 4] & 0xF) | (mins[j + 4] & 0xF) << 4);
        }
        // chunk c (bytes 16 + 32c ..): low nibbles = sub-block 2c, high nibbles = sub-block 2c+1
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                block[16 + 32 * c + l] = (byte)((l % 16) | (15 - l % 16) << 4);
        var y = Dequantize(TensorType.Q4_K, block);
        for (int s = 0; s < 8; s++)
            for (int l = 0; l < 32; l++)
            {
                int q = s % 2 == 0 ? l % 16 : 15 - l % 16;
                Assert.Equal(1f * scales[s] * q - 0.5f * mins[s], y[32 * s + l]);
            }
    }

    [Fact]
    public void Q6_K_interleaves_low_nibbles_high_bit_pairs_and_16_group_scales()
    {
        var block = new byte[210];
        block[208] = HalfQuarter & 0xFF; block[209] = HalfQuarter >> 8; // d = 0.25
        for (int g = 0; g < 16; g++) block[192 + g] = (byte)(sbyte)(g - 8);
        int Quant(int e) => (e * 7 + 3) % 64;
        // element 128h + 32k + l: low 4 bits in ql[64h + 32(k%2) + l] (low nibble for k < 2, high for k >= 2),
        // high 2 bits in qh[32h + l] at bits 2k..2k+1
        for (int e = 0; e < 256; e++)
        {
            int h = e / 128, k = e % 128 / 32, l = e % 32, q = Quant(e);
            block[64 * h + 32 * (k % 2) + l] |= (byte)((q & 0xF) << (k < 2 ? 0 : 4));
            block[128 + 32 * h + l] |= (byte)((q >> 4) << (2 * k));
        }
        var y = Dequantize(TensorType.Q6_K, block);
        for (int e = 0; e < 256; e++) Assert.Equal(0.25f * (e / 16 - 8) * (Quant(e) - 32), y[e]);
    }

    [Fact]
    public void Q8_0_quantizer_rounds_halves_away_from_zero()
    {
        // amax 127 gives d = 1, so the quants are the inputs rounded like C roundf
        var x = new float[32];
        float[] head = [0.5f, -0.5f, 1.5f, -1.5f, 2.5f, -2.5f, 127f, -126.5f, 0.49999997f];
        head.CopyTo(x, 0);
        var block = new byte[34];
        BlockQuantization.QuantizeRow(TensorType.Q8_0, x, block);
        Assert.Equal(Half1, BitConverter.ToUInt16(block, 0));
        sbyte[] expected = [1, -1, 2, -2, 3, -3, 127, -127, 0];
        for (int j = 0; j < expected.Length; j++) Assert.Equal(expected[j], (sbyte)block[2 + j]);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Q4_0_quantizer_maps_the_first_largest_magnitude_to_minus_8(bool negativeFirst)
    {
        var x = new float[32];
        x[3] = negativeFirst ? -8 : 8;
        x[5] = negativeFirst ? 8 : -8;
        x[7] = 0.5f;
        x[20] = -3.25f;
        var block = new byte[18];
        BlockQuantization.QuantizeRow(TensorType.Q4_0, x, block);
        float d = negativeFirst ? 1 : -1; // d = max / −8
        Assert.Equal(BitConverter.HalfToUInt16Bits((Half)d), BitConverter.ToUInt16(block, 0));
        int Quant(int j) => j < 16 ? block[2 + j] & 0xF : block[2 + j - 16] >> 4;
        Assert.Equal(0, Quant(3));                                // the first maximum: exactly −8
        Assert.Equal(15, Quant(5));                               // the opposite one clamps to 15 (7·d)
        Assert.Equal(negativeFirst ? 9 : 8, Quant(7));            // trunc(±0.5 + 8.5)
        Assert.Equal(negativeFirst ? 5 : 11, Quant(20));          // trunc(∓3.25 + 8.5)
        Assert.Equal(8, Quant(0));                                // zero
    }

    [Fact]
    public void Q8_K_keeps_the_sign_of_the_first_largest_magnitude_and_block_sums()
    {
        var x = new float[256];
        for (int i = 0; i < 256; i++) x[i] = (i % 9 - 4) * 0.25f;
        x[10] = -2; x[11] = 2;
        var block = new byte[292];
        BlockQuantization.QuantizeRow(TensorType.Q8_K, x, block);
        // iscale = −127/max with max = −2, the first of the two largest magnitudes: 63.5
        Assert.Equal(1 / 63.5f, BitConverter.ToSingle(block, 0));
        Assert.Equal(-127, (sbyte)block[4 + 10]);
        Assert.Equal(127, (sbyte)block[4 + 11]);
        Assert.Equal(-64, (sbyte)block[4 + 0]);  // −1·63.5 = −63.5: nearest_int rounds halves to even
        Assert.Equal(64, (sbyte)block[4 + 8]);   // 63.5 → 64
        Assert.Equal(-48, (sbyte)block[4 + 1]);  // −0.75·63.5 = −47.625
        for (int g = 0; g < 16; g++)
        {
            int sum = 0;
            for (int i = 0; i < 16; i++) sum += (sbyte)block[4 + 16 * g + i];
            Assert.Equal(sum, BitConverter.ToInt16(block, 260 + 2 * g));
        }
    }
}
