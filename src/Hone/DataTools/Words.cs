using System.Globalization;

namespace Hone.DataTools;

/// <summary>
/// Words as the decontamination rule of GPT-3 and lm-evaluation-harness's janitor sees them: the text lowercased,
/// punctuation deleted (not turned into a break, so "don't" → "dont", "e-mail" → "email"), then split on
/// whitespace. Punctuation is every Unicode punctuation character plus the ASCII symbols of Python's
/// <c>string.punctuation</c> ($ + &lt; = &gt; ^ ` | ~); other symbols and digits stay in words.
/// </summary>
public static class Words
{
    /// <summary>Normalize <paramref name="text"/> into <paramref name="buffer"/> and list the words as spans of it.</summary>
    public static int Split(ReadOnlySpan<char> text, ref char[] buffer, List<(int Start, int Length)> words)
    {
        words.Clear();
        if (buffer.Length < text.Length) buffer = new char[Math.Max(text.Length, buffer.Length * 2)];
        var output = buffer.AsSpan(0, text.Length);
        var classes = AsciiClasses;
        int n = 0, start = 0;
        foreach (char c in text)
        {
            if (c < 0x80)
            {
                switch (classes[c])
                {
                    case Keep: output[n++] = c; continue;
                    case Upper: output[n++] = (char)(c + 32); continue;
                    case Deleted: continue;
                }
            }
            else if (!char.IsWhiteSpace(c))
            {
                if (!IsDeleted(c)) output[n++] = char.ToLowerInvariant(c);
                continue;
            }
            // Whitespace ends a word.
            if (n > start) words.Add((start, n - start));
            start = n;
        }
        if (n > start) words.Add((start, n - start));
        return words.Count;
    }

    const byte Keep = 0, Space = 1, Deleted = 2, Upper = 3;

    /// <summary>What each ASCII character does: kept, a word break, deleted (punctuation) or lowercased.</summary>
    static readonly byte[] AsciiClasses = BuildAsciiClasses();

    static byte[] BuildAsciiClasses()
    {
        var t = new byte[128];
        for (int c = 0; c < 128; c++)
            t[c] = c is ' ' or '\t' or '\n' or '\r' or '\f' or '\v' ? Space
                 : c is >= 'A' and <= 'Z' ? Upper
                 : IsDeleted((char)c) ? Deleted
                 : Keep;
        return t;
    }

    /// <summary>The words of a text as strings (for tests and reports).</summary>
    public static List<string> Of(string text)
    {
        var buffer = new char[text.Length];
        var spans = new List<(int, int)>();
        Split(text, ref buffer, spans);
        return spans.Select(s => new string(buffer, s.Item1, s.Item2)).ToList();
    }

    public static bool IsDeleted(char c)
    {
        if (c < 0x80) return c is >= '!' and <= '/' or >= ':' and <= '@' or >= '[' and <= '`' or >= '{' and <= '~';
        return CharUnicodeInfo.GetUnicodeCategory(c) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;
    }
}
