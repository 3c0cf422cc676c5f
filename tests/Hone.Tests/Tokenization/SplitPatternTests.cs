using System.Text.RegularExpressions;
using Hone.Tokenization;
using Xunit;

namespace Hone.Tests.Tokenization;

/// <summary>The hand-written split scanners against the regexes they implement, run by .NET's backtracking engine
/// (same alternation semantics as Oniguruma) on random text from the characters that matter. Restricted to the BMP:
/// .NET matches UTF-16 units, so it sees astral letters as surrogates where the scanners (and Oniguruma) see letters.</summary>
public class SplitPatternTests
{
    // llama.cpp's spelling of the case-insensitive contractions ([sS] ...), which is what foldLongS: false implements.
    const string Llama3LlamaCpp = @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const string Qwen2LlamaCpp = @"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    static readonly string Alphabet =
        "aAbsStTrReEvVmMlLdDxyz0123456789'' ''   \t\n\r\n\u00A0\u2028\u3000!?.,-_$#()\"" +
        "éÉßñ中文字ひらがなカタカナ한국어ДЖж\u0301\u0308٣٤½²ⅫΣ€—…\u200D\uFE0F\u00AD\u000B\u000C\u0085";

    static IEnumerable<string> RandomTexts(int seed, int count)
    {
        var rng = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            var chars = new char[rng.Next(0, 40)];
            for (int j = 0; j < chars.Length; j++) chars[j] = Alphabet[rng.Next(Alphabet.Length)];
            yield return new string(chars);
        }
    }

    static List<string> Scan(SplitPattern pattern, string text)
    {
        var pieces = new List<string>();
        for (int pos = 0; pos < text.Length;)
        {
            int length = SplitPatterns.MatchLength(pattern, text, pos, foldLongS: false);
            Assert.True(length > 0);
            pieces.Add(text.Substring(pos, length));
            pos += length;
        }
        return pieces;
    }

    [Theory]
    [InlineData("Gpt2")]
    [InlineData("Llama3")]
    [InlineData("Qwen2")]
    public void Scanners_match_the_regexes_on_random_text(string name)
    {
        var pattern = Enum.Parse<SplitPattern>(name);
        var regex = new Regex(pattern switch
        {
            SplitPattern.Gpt2 => SplitPatterns.Known[0].Regex,
            SplitPattern.Llama3 => Llama3LlamaCpp,
            _ => Qwen2LlamaCpp,
        }, RegexOptions.CultureInvariant);
        foreach (var text in RandomTexts((int)pattern + 1, 20000))
        {
            var expected = regex.Matches(text).Select(m => m.Value).ToList();
            Assert.Equal(text, string.Concat(expected)); // the regex tiles the text
            Assert.Equal(expected, Scan(pattern, text));
        }
    }

    [Fact]
    public void Known_cases()
    {
        Assert.Equal(["Hello", "'s", " world", "   ", " ", "123", "4", "!!\n"], Scan(SplitPattern.Llama3, "Hello's world    1234!!\n"));
        Assert.Equal(["Hello", "'s", " world", "   ", " 1234", "!!", "\n"], Scan(SplitPattern.Gpt2, "Hello's world    1234!!\n"));
        Assert.Equal(["I", "'VE", " ", "1", "2", "\n\n", "\tx"], Scan(SplitPattern.Qwen2, "I'VE 12\n\n\tx"));
        Assert.Equal(["'", "VE"], Scan(SplitPattern.Gpt2, "'VE")); // GPT-2's contractions are case-sensitive
        Assert.Equal(["a", "🦙", "b"], Scan(SplitPattern.Gpt2, "a🦙b"));
        Assert.Equal(["🦙b"], Scan(SplitPattern.Llama3, "🦙b")); // one code point of "other" before letters
        Assert.Equal(["𝐀𝐁"], Scan(SplitPattern.Llama3, "𝐀𝐁")); // astral letters are letters
    }

    [Fact]
    public void Oniguruma_folds_long_s_in_case_insensitive_contractions()
    {
        Assert.Equal(2, SplitPatterns.MatchLength(SplitPattern.Llama3, "'\u017F", 0, foldLongS: true));
        Assert.Equal(2, SplitPatterns.MatchLength(SplitPattern.Llama3, "'\u017F", 0, foldLongS: false)); // "'ſ" as letter run
        Assert.Equal(["'\u017F", "x"], ScanFolding("'\u017Fx"));
        Assert.Equal(["'\u017Fx"], Scan(SplitPattern.Llama3, "'\u017Fx"));

        static List<string> ScanFolding(string text)
        {
            var pieces = new List<string>();
            for (int pos = 0; pos < text.Length;)
            {
                int length = SplitPatterns.MatchLength(SplitPattern.Llama3, text, pos, foldLongS: true);
                pieces.Add(text.Substring(pos, length));
                pos += length;
            }
            return pieces;
        }
    }
}
