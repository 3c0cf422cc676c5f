using System.Text;
using Hone.Tensors;

namespace Hone.Synthetic;

/// <summary>
/// The phrase templates of the generators: <c>[a|b|c]</c> picks one alternative uniformly (nested choices allowed,
/// <c>[a|]</c> is optional text), <c>{name}</c> is filled by the caller's slot function. Afterwards spacing around
/// punctuation is tidied, "a" becomes "an" before a vowel sound, and the first letter is capitalised, so tables can be
/// written without caring about those.
/// </summary>
static class TemplateText
{
    public static string Expand(string template, Xoshiro256 random, Func<string, string> slot, bool tidy = true)
    {
        var output = new StringBuilder(template.Length + 32);
        int pos = 0;
        ExpandSequence(template, ref pos, random, slot, output, topLevel: true);
        return tidy ? Tidy(output.ToString()) : output.ToString();
    }

    // Expands until the end of the template or, inside a choice, until its closing ']' or next '|' (not consumed).
    static void ExpandSequence(string t, ref int pos, Xoshiro256 random, Func<string, string> slot, StringBuilder output, bool topLevel)
    {
        while (pos < t.Length)
        {
            char c = t[pos];
            if (!topLevel && (c == '|' || c == ']')) return;
            if (c == '[')
            {
                pos++;
                ExpandChoice(t, ref pos, random, slot, output);
            }
            else if (c == '{')
            {
                int end = t.IndexOf('}', pos);
                if (end < 0) throw new FormatException($"unclosed '{{' in template: {t}");
                output.Append(slot(t[(pos + 1)..end]));
                pos = end + 1;
            }
            else if (c == ']' || c == '|') throw new FormatException($"'{c}' outside a choice in template: {t}");
            else { output.Append(c); pos++; }
        }
        if (!topLevel) throw new FormatException($"unclosed '[' in template: {t}");
    }

    // pos is just after '['. Finds the alternatives' boundaries first so only the chosen one is expanded (and only it
    // draws random numbers or fills slots).
    static void ExpandChoice(string t, ref int pos, Xoshiro256 random, Func<string, string> slot, StringBuilder output)
    {
        var starts = new List<int> { pos };
        int depth = 0, p = pos;
        for (; p < t.Length; p++)
        {
            char c = t[p];
            if (c == '[') depth++;
            else if (c == ']') { if (depth == 0) break; depth--; }
            else if (c == '|' && depth == 0) starts.Add(p + 1);
        }
        if (p >= t.Length) throw new FormatException($"unclosed '[' in template: {t}");
        int chosen = starts[random.NextInt(starts.Count)];
        int inner = chosen;
        ExpandSequence(t, ref inner, random, slot, output, topLevel: false);
        pos = p + 1;
    }

    static readonly HashSet<string> AnBeforeConsonantLetter = new(StringComparer.OrdinalIgnoreCase) { "hour", "hours", "honest", "heir" };
    static readonly string[] ABeforeVowelLetter = ["uni", "use", "usu", "one", "once", "eu", "ewe"];

    /// <summary>Collapses repeated spaces, removes spaces before , . ! ? ; :, fixes a/an, and capitalises sentences.</summary>
    public static string Tidy(string s)
    {
        var b = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c == ' ')
            {
                if (b.Length == 0 || b[^1] == ' ' || b[^1] == '\n') continue;
                if (i + 1 < s.Length && s[i + 1] is ',' or '.' or '!' or '?' or ';' or ':' or ' ' or '\n') continue;
                if (i == s.Length - 1) continue;
            }
            b.Append(c);
        }
        return CapitalizeSentences(FixArticles(b.ToString()));
    }

    /// <summary>Upper-cases the first letter of the text and of every sentence after ". ", "! " or "? " (an opening
    /// quote may come between). A template may then start a sentence with a slot such as {his}.</summary>
    static string CapitalizeSentences(string s)
    {
        var chars = s.ToCharArray();
        bool start = true;
        for (int i = 0; i < chars.Length; i++)
        {
            char c = chars[i];
            if (start && char.IsLetter(c)) { chars[i] = char.ToUpperInvariant(c); start = false; }
            else if (start && char.IsDigit(c)) start = false;
            else if (c is '.' or '!' or '?' && i + 1 < chars.Length && chars[i + 1] == ' ') start = true;
        }
        return new string(chars);
    }

    public static string Capitalize(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsLetter(s[i])) return char.IsUpper(s[i]) ? s : string.Concat(s.AsSpan(0, i), char.ToUpperInvariant(s[i]).ToString(), s.AsSpan(i + 1));
            if (char.IsDigit(s[i])) return s;
        }
        return s;
    }

    static string FixArticles(string s)
    {
        if (!s.Contains("a ", StringComparison.OrdinalIgnoreCase)) return s;
        var b = new StringBuilder(s.Length + 8);
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            bool wordStart = i == 0 || !char.IsLetter(s[i - 1]);
            if ((c == 'a' || c == 'A') && wordStart && i + 2 < s.Length && s[i + 1] == ' ' && char.IsLetter(s[i + 2]))
            {
                int end = i + 2;
                while (end < s.Length && char.IsLetter(s[end])) end++;
                if (NeedsAn(s.AsSpan(i + 2, end - i - 2)))
                {
                    b.Append(c).Append('n');
                    continue;
                }
            }
            b.Append(c);
        }
        return b.ToString();
    }

    static bool NeedsAn(ReadOnlySpan<char> word)
    {
        if (AnBeforeConsonantLetter.GetAlternateLookup<ReadOnlySpan<char>>().Contains(word)) return true;
        foreach (var prefix in ABeforeVowelLetter)
            if (word.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) return false;
        return char.ToLowerInvariant(word[0]) is 'a' or 'e' or 'i' or 'o' or 'u';
    }
}

/// <summary>Seeded choices over tables (<see cref="Xoshiro256"/>: the same on every machine).</summary>
static class Choose
{
    public static T One<T>(this Xoshiro256 random, IReadOnlyList<T> items) => items[random.NextInt(items.Count)];

    public static bool Chance(this Xoshiro256 random, double probability) => random.NextDouble() < probability;

    /// <summary>Uniform in [min, max], both included.</summary>
    public static int Between(this Xoshiro256 random, int min, int max) => min + random.NextInt(max - min + 1);

    /// <summary>k distinct items in random order.</summary>
    public static List<T> Distinct<T>(this Xoshiro256 random, IReadOnlyList<T> items, int k)
    {
        var pool = items.ToList();
        var result = new List<T>(k);
        for (int i = 0; i < k && pool.Count > 0; i++)
        {
            int j = random.NextInt(pool.Count);
            result.Add(pool[j]);
            pool[j] = pool[^1];
            pool.RemoveAt(pool.Count - 1);
        }
        return result;
    }

    /// <summary>An index drawn with the given weights.</summary>
    public static int Weighted(this Xoshiro256 random, IReadOnlyList<double> weights)
    {
        double total = 0;
        foreach (var w in weights) total += w;
        double x = random.NextDouble() * total;
        for (int i = 0; i < weights.Count; i++)
        {
            x -= weights[i];
            if (x < 0) return i;
        }
        return weights.Count - 1;
    }
}
