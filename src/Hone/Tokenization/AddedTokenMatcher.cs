using System.Buffers;

namespace Hone.Tokenization;

/// <summary>A piece of input after added tokens were split out: either a token or a run of text.</summary>
readonly record struct Fragment(string Text, int Start, int Length, int TokenId, bool AtOrigin)
{
    public bool IsToken => TokenId >= 0;
    public ReadOnlySpan<char> Span => Text.AsSpan(Start, Length);
    public static Fragment Token(int id) => new("", 0, 0, id, false);
}

/// <summary>How added tokens are found in text.</summary>
enum AddedTokenSearch : byte
{
    /// <summary>Hugging Face: the leftmost match, the longest there (Aho-Corasick LeftmostLongest); a match that is
    /// then discarded (special tokens not parsed, single_word inside a word) still consumes its text.</summary>
    LeftmostLongest,
    /// <summary>llama.cpp: tokens in order of decreasing length, each splitting every remaining text fragment at all
    /// its occurrences.</summary>
    LongestFirst,
}

/// <summary>Finds added tokens in one text, for one set of patterns (the raw-text set or the normalized-text set).</summary>
sealed class AddedTokenMatcher
{
    readonly (string Pattern, AddedToken Token)[] _byLength; // longest first
    readonly Dictionary<char, (string Pattern, AddedToken Token)[]> _byFirstChar;
    readonly SearchValues<char> _firstChars; // vectorized skip to the next possible match
    readonly AddedTokenSearch _search;

    public AddedTokenMatcher(IEnumerable<(string Pattern, AddedToken Token)> patterns, AddedTokenSearch search)
    {
        _search = search;
        _byLength = patterns.Where(p => p.Pattern.Length > 0)
            .OrderByDescending(p => p.Pattern.Length).ThenBy(p => p.Token.Id).ToArray();
        _byFirstChar = _byLength.GroupBy(p => p.Pattern[0]).ToDictionary(g => g.Key, g => g.ToArray());
        _firstChars = SearchValues.Create(_byFirstChar.Keys.ToArray());
    }

    public bool IsEmpty => _byLength.Length == 0;

    /// <summary>Splits one text fragment; <paramref name="parseSpecial"/> false leaves special tokens as text.</summary>
    public void Split(Fragment fragment, bool parseSpecial, List<Fragment> output)
    {
        if (IsEmpty || fragment.IsToken) { output.Add(fragment); return; }
        if (_search == AddedTokenSearch.LeftmostLongest) SplitLeftmostLongest(fragment, parseSpecial, output);
        else SplitLongestFirst(fragment, parseSpecial, output);
    }

    void SplitLeftmostLongest(Fragment f, bool parseSpecial, List<Fragment> output)
    {
        string text = f.Text;
        int end = f.Start + f.Length, emitted = f.Start, i = f.Start;
        while (i < end)
        {
            int skip = text.AsSpan(i, end - i).IndexOfAny(_firstChars);
            if (skip < 0) break;
            i += skip;
            var candidates = _byFirstChar[text[i]];
            (string Pattern, AddedToken Token)? found = null;
            foreach (var c in candidates)
                if (c.Pattern.Length <= end - i && text.AsSpan(i, c.Pattern.Length).SequenceEqual(c.Pattern)) { found = c; break; }
            if (found is not { } match) { i++; continue; }
            int start = i, stop = i + match.Pattern.Length;
            i = stop;
            var token = match.Token;
            if (token.Special && !parseSpecial) continue;
            if (token.SingleWord && ((start > f.Start && EndsWithWord(text, f.Start, start)) || (stop < end && StartsWithWord(text, stop, end))))
                continue;
            if (token.LeftStrip)
                while (start > emitted && char.IsWhiteSpace(text[start - 1])) start--;
            if (token.RightStrip)
                while (stop < end && char.IsWhiteSpace(text[stop])) stop++;
            if (start > emitted) output.Add(f with { Start = emitted, Length = start - emitted, AtOrigin = f.AtOrigin && emitted == f.Start });
            output.Add(Fragment.Token(token.Id));
            emitted = stop;
            i = Math.Max(i, stop);
        }
        if (emitted < end) output.Add(f with { Start = emitted, Length = end - emitted, AtOrigin = f.AtOrigin && emitted == f.Start });
    }

    static bool EndsWithWord(string text, int from, int at)
    {
        int i = at - 1;
        if (char.IsLowSurrogate(text[i]) && i > from && char.IsHighSurrogate(text[i - 1])) i--;
        return CharClass.IsWordCharacter(CharClass.CodePointAt(text.AsSpan(0, at), i, out _));
    }

    static bool StartsWithWord(string text, int at, int end) =>
        CharClass.IsWordCharacter(CharClass.CodePointAt(text.AsSpan(0, end), at, out _));

    void SplitLongestFirst(Fragment f, bool parseSpecial, List<Fragment> output)
    {
        var fragments = new List<Fragment> { f };
        foreach (var (pattern, token) in _byLength)
        {
            if (token.Special && !parseSpecial) continue;
            var next = new List<Fragment>(fragments.Count + 2);
            foreach (var piece in fragments)
            {
                if (piece.IsToken) { next.Add(piece); continue; }
                int start = piece.Start, end = piece.Start + piece.Length;
                while (true)
                {
                    int at = piece.Text.AsSpan(start, end - start).IndexOf(pattern, StringComparison.Ordinal);
                    if (at < 0) break;
                    at += start;
                    int left = at;
                    if (token.LeftStrip) while (left > start && IsAsciiSpace(piece.Text[left - 1])) left--;
                    if (left > start) next.Add(piece with { Start = start, Length = left - start, AtOrigin = piece.AtOrigin && start == piece.Start });
                    next.Add(Fragment.Token(token.Id));
                    start = at + pattern.Length;
                    if (token.RightStrip) while (start < end && IsAsciiSpace(piece.Text[start])) start++;
                }
                if (start < end) next.Add(piece with { Start = start, Length = end - start, AtOrigin = piece.AtOrigin && start == piece.Start });
            }
            fragments = next;
        }
        output.AddRange(fragments);
    }

    static bool IsAsciiSpace(char c) => c is ' ' or (>= '\t' and <= '\r');
}
