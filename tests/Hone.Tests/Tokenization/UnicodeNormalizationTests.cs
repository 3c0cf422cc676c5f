using Hone.Tokenization;
using Xunit;

namespace Hone.Tests.Tokenization;

/// <summary>Our NFC (needed because string.Normalize is a no-op under invariant globalization).</summary>
public class UnicodeNormalizationTests
{
    [Theory]
    [InlineData("e\u0301", "\u00E9")]                 // combining acute composes
    [InlineData("\u00E9", "\u00E9")]                  // already composed
    [InlineData("plain ascii", "plain ascii")]
    [InlineData("\u1100\u1161", "\uAC00")]            // Hangul L+V
    [InlineData("\u1100\u1161\u11A8", "\uAC01")]      // Hangul L+V+T
    [InlineData("\uAC00\u11A8", "\uAC01")]            // LV syllable + T
    [InlineData("s\u0307\u0323", "\u1E69")]           // marks reordered by class, then composed
    [InlineData("\u212B", "\u00C5")]                  // singleton (Angstrom sign) decomposes
    [InlineData("\u0958", "\u0915\u093C")]            // composition exclusion stays decomposed
    [InlineData("a\u0308\u0301", "\u00E4\u0301")]     // second mark blocked by the first (same class)
    [InlineData("\u0041\u030A\u0301", "\u01FA")]      // Å + acute → Ǻ
    [InlineData("中文 🦙 e\u0301!", "中文 🦙 \u00E9!")]
    public void Composes_like_the_unicode_standard(string input, string expected)
    {
        Assert.Equal(expected, UnicodeNormalization.ToNfc(input));
    }

    [Fact]
    public void Invariant_globalization_really_does_not_normalize()
    {
        // The reason for our own implementation; if this starts failing, string.Normalize could be used instead.
        Assert.Equal("e\u0301", "e\u0301".Normalize(System.Text.NormalizationForm.FormC));
    }
}
