using System.Runtime.Intrinsics;
using Hone.Tensors.Quantization;
using Xunit;

namespace Hone.Tests.Quantization;

/// <summary>The fp16 block scales: our bit-trick widening against System.Half for every one of the 65536 patterns.</summary>
public class Fp16Tests
{
    static void AssertSame(float expected, float actual, int bits)
    {
        if (float.IsNaN(expected)) Assert.True(float.IsNaN(actual), $"0x{bits:x4}: expected NaN, got {actual}");
        else Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual),
            $"0x{bits:x4}: expected {expected:R}, got {actual:R}");
    }

    [Fact]
    public void Scalar_widening_matches_System_Half_for_all_patterns()
    {
        for (int bits = 0; bits < 65536; bits++)
            AssertSame((float)BitConverter.UInt16BitsToHalf((ushort)bits), Fp16.ToSingle((ushort)bits), bits);
    }

    [Fact]
    public void Vector_widening_matches_the_scalar_one_for_all_patterns_and_ignores_the_high_bits()
    {
        var words = new int[65536];
        // garbage in the high 16 bits must not matter: the kernels feed whole dwords
        for (int bits = 0; bits < 65536; bits++) words[bits] = bits | (bits * 7919 << 16);
        for (int i = 0; i < 65536; i += 16)
        {
            var v128 = Fp16.ToSingle(Vector128.Create(words, i));
            var v256 = Fp16.ToSingle(Vector256.Create(words, i));
            var v512 = Fp16.ToSingle(Vector512.Create(words, i));
            for (int j = 0; j < 16; j++)
            {
                float expected = Fp16.ToSingle((ushort)(i + j));
                if (j < 4) AssertSame(expected, v128[j], i + j);
                if (j < 8) AssertSame(expected, v256[j], i + j);
                AssertSame(expected, v512[j], i + j);
            }
        }
    }

    [Fact]
    public void Narrowing_round_trips_every_half_and_rounds_midpoints_to_even()
    {
        for (int bits = 0; bits < 0x7C00; bits++)
        {
            float value = Fp16.ToSingle((ushort)bits);
            Assert.Equal((ushort)bits, Fp16.FromSingle(value));
            Assert.Equal((ushort)(bits | 0x8000), Fp16.FromSingle(-value));
            // the float halfway to the next half rounds to whichever of the two has an even mantissa
            float next = Fp16.ToSingle((ushort)(bits + 1));
            float midpoint = value + (next - value) / 2;
            Assert.Equal((ushort)((bits & 1) == 0 ? bits : bits + 1), Fp16.FromSingle(midpoint));
        }
        Assert.Equal((ushort)0x7C00, Fp16.FromSingle(65520f)); // beyond the largest half (65504) rounds to infinity
    }
}
