namespace Hone.Formats;

/// <summary>"Did you mean …?": the known names nearest a mistyped one, for unknown recipe keys, options and commands.</summary>
public static class Spelling
{
    /// <summary>The candidates at the smallest edit distance from <paramref name="word"/> (letters swapped count as one
    /// edit), when that distance is small for the word's length; empty when nothing is close. Case and leading dashes
    /// are ignored; ties come back in the candidates' order.</summary>
    public static IReadOnlyList<string> Nearest(string word, IEnumerable<string> candidates)
    {
        string w = Normalize(word);
        int limit = Math.Max(2, w.Length / 3);
        int best = int.MaxValue;
        var result = new List<string>();
        foreach (var candidate in candidates.Distinct())
        {
            string c = Normalize(candidate);
            int d = c.StartsWith(w, StringComparison.Ordinal) && w.Length >= 3 ? Math.Min(1, c.Length - w.Length) : Distance(w, c);
            if (d > limit || d > best) continue;
            if (d < best) { best = d; result.Clear(); }
            result.Add(candidate);
        }
        return result;
    }

    /// <summary>"; did you mean 'x'?" (or 'x' or 'y'), or "" when nothing is close.</summary>
    public static string Suggestion(string word, IEnumerable<string> candidates)
    {
        var near = Nearest(word, candidates);
        return near.Count == 0 ? "" : $"; did you mean {string.Join(" or ", near.Take(3).Select(n => $"'{n}'"))}?";
    }

    static string Normalize(string s) => s.TrimStart('-').ToLowerInvariant();

    /// <summary>Optimal string alignment distance: insertions, deletions, substitutions and adjacent transpositions.</summary>
    public static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
            }
        return d[a.Length, b.Length];
    }
}
