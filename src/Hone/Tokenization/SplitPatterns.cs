using System.Runtime.CompilerServices;

namespace Hone.Tokenization;

/// <summary>The split regexes of the supported byte-level BPE families. Each is implemented as a scanner that returns
/// the length of the regex match starting at a position (the regexes match every character, so the pieces tile the text).</summary>
enum SplitPattern : byte
{
    /// <summary>GPT-2 (also inside ByteLevel with use_regex).</summary>
    Gpt2,
    /// <summary>Llama 3: case-insensitive contractions, numbers in groups of up to three digits.</summary>
    Llama3,
    /// <summary>Qwen2: as Llama 3 but one digit per piece.</summary>
    Qwen2,
}

static class SplitPatterns
{
    /// <summary>The exact regex strings, as tokenizer.json carries them (JSON-unescaped), that the scanners implement.</summary>
    public static readonly (string Regex, SplitPattern Pattern)[] Known =
    [
        (@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", SplitPattern.Gpt2),
        (@"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+", SplitPattern.Llama3),
        (@"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+", SplitPattern.Qwen2),
    ];

    /// <summary>Length (in UTF-16 units, at least 1) of the match at <paramref name="pos"/>.</summary>
    /// <param name="foldLongS">Oniguruma's case-insensitive <c>'s</c> also matches <c>'ſ</c> (U+017F folds to s); llama.cpp's
    /// rewrite of the Llama 3 regex uses <c>[sS]</c> and does not.</param>
    public static int MatchLength(SplitPattern pattern, ReadOnlySpan<char> s, int pos, bool foldLongS) => pattern switch
    {
        SplitPattern.Gpt2 => Gpt2(s, pos),
        SplitPattern.Llama3 => Llama3(s, pos, 3, foldLongS),
        _ => Llama3(s, pos, 1, foldLongS),
    };

    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    static int Gpt2(ReadOnlySpan<char> s, int pos)
    {
        char c = s[pos];
        if (c == '\'')
        {
            int k = Contraction(s, pos, caseInsensitive: false, foldLongS: false);
            if (k > 0) return k;
        }
        if (c == ' ' && pos + 1 < s.Length)
        {
            var next = CharClass.Of(CharClass.CodePointAt(s, pos + 1, out _));
            if (next != CharKind.Space) return 1 + Run(s, pos + 1, next);
        }
        var kind = CharClass.Of(CharClass.CodePointAt(s, pos, out _));
        if (kind != CharKind.Space) return Run(s, pos, kind);
        return Whitespace(s, pos);
    }

    // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxDigits}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    static int Llama3(ReadOnlySpan<char> s, int pos, int maxDigits, bool foldLongS)
    {
        int n = s.Length;
        char c = s[pos];
        if (c == '\'')
        {
            int k = Contraction(s, pos, caseInsensitive: true, foldLongS);
            if (k > 0) return k;
        }
        int cp = CharClass.CodePointAt(s, pos, out int length);
        var kind = CharClass.Of(cp);
        if (kind == CharKind.Letter) return Run(s, pos, CharKind.Letter);
        if (kind != CharKind.Number && c != '\r' && c != '\n' && pos + length < n
            && CharClass.Of(CharClass.CodePointAt(s, pos + length, out _)) == CharKind.Letter)
            return length + Run(s, pos + length, CharKind.Letter);
        if (kind == CharKind.Number)
        {
            int p = pos;
            for (int digits = 0; digits < maxDigits && p < n; digits++)
            {
                int d = CharClass.CodePointAt(s, p, out int dl);
                if (CharClass.Of(d) != CharKind.Number) break;
                p += dl;
            }
            return p - pos;
        }
        int other = -1;
        if (kind == CharKind.Other) other = pos;
        else if (c == ' ' && pos + 1 < n && CharClass.Of(CharClass.CodePointAt(s, pos + 1, out _)) == CharKind.Other) other = pos + 1;
        if (other >= 0)
        {
            int p = other + Run(s, other, CharKind.Other);
            while (p < n && s[p] is '\r' or '\n') p++;
            return p - pos;
        }
        // \s*[\r\n]+ : the whitespace run up to and including its last line break.
        int end = pos;
        while (end < n && CharClass.IsWhiteSpace(s[end])) end++;
        for (int q = end - 1; q >= pos; q--)
            if (s[q] is '\r' or '\n') return q + 1 - pos;
        return Whitespace(s, pos);
    }

    /// <summary><c>\s+(?!\S)|\s+</c>: a whitespace run, less its last character when a non-space follows it (that
    /// character then starts the next piece).</summary>
    static int Whitespace(ReadOnlySpan<char> s, int pos)
    {
        int end = pos;
        while (end < s.Length && CharClass.IsWhiteSpace(s[end])) end++; // every White_Space character is in the BMP
        int run = end - pos;
        if (end == s.Length || run == 1) return run;
        return run - 1;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static int Run(ReadOnlySpan<char> s, int pos, CharKind kind)
    {
        int p = pos;
        while (p < s.Length)
        {
            int cp = CharClass.CodePointAt(s, p, out int length);
            if (CharClass.Of(cp) != kind) break;
            p += length;
        }
        return p - pos;
    }

    static int Contraction(ReadOnlySpan<char> s, int pos, bool caseInsensitive, bool foldLongS)
    {
        if (pos + 1 >= s.Length) return 0;
        char a = Fold(s[pos + 1], caseInsensitive, foldLongS);
        if (a is 's' or 't' or 'm' or 'd') return 2;
        if (pos + 2 >= s.Length) return 0;
        char b = Fold(s[pos + 2], caseInsensitive, foldLongS);
        return (a, b) is ('r', 'e') or ('v', 'e') or ('l', 'l') ? 3 : 0;
    }

    static char Fold(char c, bool caseInsensitive, bool foldLongS)
    {
        if (!caseInsensitive) return c;
        if (c is >= 'A' and <= 'Z') return (char)(c + 32);
        return foldLongS && c == '\u017F' ? 's' : c;
    }
}
