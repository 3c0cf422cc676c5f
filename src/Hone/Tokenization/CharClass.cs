using System.Globalization;
using System.Runtime.CompilerServices;

namespace Hone.Tokenization;

/// <summary>The character classes the pre-tokenizer regexes use: <c>\p{L}</c>, <c>\p{N}</c>, <c>\s</c>, and the rest.</summary>
enum CharKind : byte { Other, Letter, Number, Space }

static class CharClass
{
    static readonly CharKind[] Ascii = new CharKind[128];

    static CharClass()
    {
        for (int c = 0; c < 128; c++)
            Ascii[c] = char.IsAsciiLetter((char)c) ? CharKind.Letter
                : char.IsAsciiDigit((char)c) ? CharKind.Number
                : c is ' ' or (>= '\t' and <= '\r') ? CharKind.Space
                : CharKind.Other;
    }

    /// <summary>The code point at <paramref name="i"/> and how many UTF-16 units it takes. A lone surrogate is reported
    /// as itself (it encodes to U+FFFD in UTF-8, which is also "other").</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int CodePointAt(ReadOnlySpan<char> s, int i, out int length)
    {
        char c = s[i];
        if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
        {
            length = 2;
            return char.ConvertToUtf32(c, s[i + 1]);
        }
        length = 1;
        return c;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static CharKind Of(int codePoint) => codePoint < 128 ? Ascii[codePoint] : OfNonAscii(codePoint);

    static CharKind OfNonAscii(int cp)
    {
        // Unicode White_Space, which is what \s means in Oniguruma and in Rust's regex; all of it is in the BMP.
        if (cp <= 0xFFFF && char.IsWhiteSpace((char)cp)) return CharKind.Space;
        if (cp is >= 0xD800 and <= 0xDFFF) return CharKind.Other;
        switch (CharUnicodeInfo.GetUnicodeCategory(cp))
        {
            case UnicodeCategory.UppercaseLetter: case UnicodeCategory.LowercaseLetter: case UnicodeCategory.TitlecaseLetter:
            case UnicodeCategory.ModifierLetter: case UnicodeCategory.OtherLetter:
                return CharKind.Letter;
            case UnicodeCategory.DecimalDigitNumber: case UnicodeCategory.LetterNumber: case UnicodeCategory.OtherNumber:
                return CharKind.Number;
            default:
                return CharKind.Other;
        }
    }

    /// <summary>Rust regex <c>\w</c> (Alphabetic, marks, decimal digits, connector punctuation, join controls), which
    /// Hugging Face uses for single_word added tokens. Alphabetic is approximated by the letter and letter-number categories.</summary>
    public static bool IsWordCharacter(int cp)
    {
        if (cp < 128) return char.IsAsciiLetterOrDigit((char)cp) || cp == '_';
        if (cp is 0x200C or 0x200D) return true;
        if (cp is >= 0xD800 and <= 0xDFFF) return false;
        return CharUnicodeInfo.GetUnicodeCategory(cp) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter or UnicodeCategory.LetterNumber
                or UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark
                or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.ConnectorPunctuation => true,
            _ => false,
        };
    }

    public static bool IsWhiteSpace(int cp) => cp <= 0xFFFF && char.IsWhiteSpace((char)cp);

    /// <summary>Rust's <c>char::is_numeric</c> (categories Nd, Nl, No), used by the Digits pre-tokenizer.</summary>
    public static bool IsNumeric(int cp) => Of(cp) == CharKind.Number;
}
