using System.Text.RegularExpressions;

namespace Hone.Evaluation;

/// <summary>Text normalizations by name, applied in the order listed.</summary>
public static class TextNormalization
{
    /// <summary>Python's string.punctuation (what SQuAD removes) plus every Unicode punctuation character.</summary>
    static bool IsPunctuation(char c) => char.IsPunctuation(c) || "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".Contains(c);

    static readonly Regex Articles = new(@"\b(a|an|the)\b", RegexOptions.CultureInvariant);
    static readonly Regex Spaces = new(@"\s+", RegexOptions.CultureInvariant);

    public static readonly IReadOnlyDictionary<string, Func<string, string>> Steps = new Dictionary<string, Func<string, string>>
    {
        ["strip"] = s => s.Trim(),
        ["lowercase"] = s => s.ToLowerInvariant(),
        ["punctuation"] = s => string.Concat(s.Where(c => !IsPunctuation(c))),
        ["articles"] = s => Articles.Replace(s, " "),
        ["whitespace"] = s => Spaces.Replace(s, " ").Trim(),
    };

    /// <summary>SQuAD's normalize_answer: lowercase, drop punctuation, drop articles, collapse whitespace.</summary>
    public static readonly IReadOnlyList<string> Squad = ["lowercase", "punctuation", "articles", "whitespace"];

    public static string Apply(IReadOnlyList<string> steps, string text)
    {
        foreach (var step in steps) text = Steps[step](text);
        return text;
    }

    public static void Validate(IEnumerable<string> steps, string where)
    {
        foreach (var s in steps)
            if (!Steps.ContainsKey(s))
                throw new FormatException($"{where}: unknown normalization \"{s}\" (known: {string.Join(", ", Steps.Keys)})");
    }
}

/// <summary>How a generated answer is scored against its references (the best reference counts).</summary>
/// <param name="Normalize">normalization steps applied to the output, the references and regex captures</param>
/// <param name="Pattern">regex scorer: the pattern; with a capture group, group 1 of the first match is compared to the
/// references, without one a match alone scores 1</param>
public sealed record ScorerSpec(string Name, IReadOnlyList<string> Normalize, string? Pattern = null)
{
    public string Describe() => Name + (Normalize.Count > 0 ? $" (normalize: {string.Join(", ", Normalize)})" : "") +
                                (Pattern != null ? $" pattern {Pattern}" : "");
}

/// <summary>The scorers of generate tasks: (spec, output, references) → score in [0, 1].</summary>
public static class TextScorers
{
    static readonly TimeSpan RegexTimeout = TimeSpan.FromSeconds(2);

    public static readonly IReadOnlyDictionary<string, Func<ScorerSpec, string, IReadOnlyList<string>, double>> Table =
        new Dictionary<string, Func<ScorerSpec, string, IReadOnlyList<string>, double>>
        {
            ["exact_match"] = (s, output, refs) => Best(refs, r => N(s, output) == N(s, r) ? 1 : 0),
            ["contains"] = (s, output, refs) => Best(refs, r => N(s, output).Contains(N(s, r), StringComparison.Ordinal) ? 1 : 0),
            ["regex"] = RegexScore,
            ["f1"] = (s, output, refs) => Best(refs, r => TokenF1(N(s, output), N(s, r))),
        };

    /// <summary>The normalization a scorer uses when the task names none: SQuAD's for f1, none otherwise.</summary>
    public static IReadOnlyList<string> DefaultNormalization(string scorer) => scorer == "f1" ? TextNormalization.Squad : [];

    public static double Score(ScorerSpec spec, string output, IReadOnlyList<string> references) => Table[spec.Name](spec, output, references);

    static string N(ScorerSpec s, string text) => TextNormalization.Apply(s.Normalize, text);

    static double Best(IReadOnlyList<string> refs, Func<string, double> score) => refs.Count == 0 ? 0 : refs.Max(score);

    /// <summary>Check a pattern when a task is read, so a typo fails before the model runs.</summary>
    public static void ValidatePattern(string pattern, string where)
    {
        try { _ = new Regex(pattern, RegexOptions.CultureInvariant, RegexTimeout); }
        catch (ArgumentException e) { throw new FormatException($"{where}: bad regular expression {pattern}: {e.Message}"); }
    }

    /// <summary>The first match of the pattern: its group 1 when the pattern has groups, else the whole match; null when
    /// nothing matches (or the match runs past the timeout). The static Regex methods cache the compiled pattern.</summary>
    public static (bool Matched, string? Captured) FirstMatch(string pattern, string text)
    {
        try
        {
            var m = Regex.Match(text, pattern, RegexOptions.CultureInvariant, RegexTimeout);
            if (!m.Success) return (false, null);
            return (true, m.Groups.Count > 1 ? m.Groups[1].Value : null);
        }
        catch (RegexMatchTimeoutException) { return (false, null); }
    }

    static double RegexScore(ScorerSpec s, string output, IReadOnlyList<string> refs)
    {
        var (matched, captured) = FirstMatch(s.Pattern!, output);
        if (!matched) return 0;
        if (captured == null) return 1; // no capture group: matching is the test
        return Best(refs, r => N(s, captured) == N(s, r) ? 1 : 0);
    }

    /// <summary>SQuAD's token F1 on already-normalized texts: whitespace-split words, multiset overlap; when either side
    /// has no words the score is 1 if both are empty, else 0.</summary>
    public static double TokenF1(string prediction, string reference)
    {
        var p = prediction.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        var r = reference.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        if (p.Length == 0 || r.Length == 0) return p.Length == r.Length ? 1 : 0;
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var w in r) counts[w] = counts.GetValueOrDefault(w) + 1;
        int same = 0;
        foreach (var w in p)
            if (counts.TryGetValue(w, out int c) && c > 0) { counts[w] = c - 1; same++; }
        if (same == 0) return 0;
        double precision = (double)same / p.Length, recall = (double)same / r.Length;
        return 2 * precision * recall / (precision + recall);
    }
}
