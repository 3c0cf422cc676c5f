using Hone.Tensors;
using Xunit;

namespace Hone.Tests.Tensors;

public class NumberConversionTests
{
    [Fact]
    public void Half_widening_is_exact_for_every_bit_pattern()
    {
        var all = new ushort[65536];
        for (int i = 0; i < all.Length; i++) all[i] = (ushort)i;
        var fast = new float[all.Length];
        var reference = new float[all.Length];
        NumberConversion.HalfToSingle(all, fast);
        NumberConversion.HalfToSingleReference(all, reference);
        for (int i = 0; i < all.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(fast[i]) == BitConverter.SingleToInt32Bits(reference[i]) ||
                        (float.IsNaN(fast[i]) && float.IsNaN(reference[i])), $"pattern 0x{i:X4}: {fast[i]} vs {reference[i]}");
    }

    [Fact]
    public void BFloat16_round_trip_and_rounding_match_reference_for_every_length()
    {
        var rng = new Random(1);
        for (int n = 0; n <= 256; n++)
        {
            var x = new float[n];
            for (int i = 0; i < n; i++) x[i] = BitConverter.Int32BitsToSingle(rng.Next());
            if (n > 3) { x[0] = float.NaN; x[1] = float.PositiveInfinity; x[2] = -0f; }
            var fast = new ushort[n]; var reference = new ushort[n];
            NumberConversion.SingleToBFloat16(x, fast);
            NumberConversion.SingleToBFloat16Reference(x, reference);
            Assert.Equal(reference, fast);
            var back = new float[n]; var backReference = new float[n];
            NumberConversion.BFloat16ToSingle(fast, back);
            NumberConversion.BFloat16ToSingleReference(fast, backReference);
            for (int i = 0; i < n; i++) Assert.Equal(BitConverter.SingleToInt32Bits(backReference[i]), BitConverter.SingleToInt32Bits(back[i]));
        }
        // Ties go to even: 1 + 2^-8 lies halfway between two bf16 values.
        Assert.Equal((ushort)0x3F80, NumberConversion.SingleToBFloat16(1f + 1f / 256));
        Assert.Equal((ushort)0x3F82, NumberConversion.SingleToBFloat16(1f + 3f / 256));
    }
}
