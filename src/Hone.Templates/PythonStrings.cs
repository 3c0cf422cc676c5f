using System.Globalization;
using System.Text;

namespace Hone.Tokenization.Templates;

/// <summary>
/// Python str operations. Python indexes strings by code point, .NET by UTF-16 unit: every index, length and slice here is in
/// code points, with a fast path when the string has no surrogate pairs.
/// </summary>
internal static class PythonStrings
{
    static bool HasSurrogates(string s) => s.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') >= 0;

    /// <summary>Code points as strings (a surrogate pair stays together; a lone surrogate is its own element, as in Python).</summary>
    static List<string> Elements(string s)
    {
        var result = new List<string>(s.Length);
        for (var i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { result.Add(s.Substring(i, 2)); i++; }
            else result.Add(s[i].ToString());
        }
        return result;
    }

    public static long Length(string s)
    {
        if (!HasSurrogates(s)) return s.Length;
        long count = 0;
        for (var i = 0; i < s.Length; i++, count++)
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) i++;
        return count;
    }

    public static IEnumerable<object?> Characters(string s) => HasSurrogates(s) ? Elements(s) : s.Select(c => (object?)c.ToString());

    public static string CharacterAt(string s, int index) => HasSurrogates(s) ? Elements(s)[index] : s[index].ToString();

    public static string Slice(string s, int start, int step, int count)
    {
        if (count <= 0) return "";
        if (!HasSurrogates(s) && step == 1) return s.Substring(start, count);
        var elements = HasSurrogates(s) ? Elements(s) : null;
        var result = new StringBuilder(count);
        for (var i = 0; i < count; i++)
        {
            var at = start + i * step;
            if (elements != null) result.Append(elements[at]);
            else result.Append(s[at]);
        }
        return result.ToString();
    }

    public static string Reverse(string s)
    {
        if (!HasSurrogates(s))
        {
            var characters = s.ToCharArray();
            Array.Reverse(characters);
            return new string(characters);
        }
        var elements = Elements(s);
        elements.Reverse();
        return string.Concat(elements);
    }

    /// <summary>Ordinal comparison by code point (UTF-16 order differs for characters above U+FFFF versus U+E000-U+FFFF).</summary>
    public static int CompareCodePoints(string a, string b)
    {
        var length = Math.Min(a.Length, b.Length);
        for (var i = 0; i < length; i++)
        {
            char x = a[i], y = b[i];
            if (x == y) continue;
            bool xs = char.IsSurrogate(x), ys = char.IsSurrogate(y);
            if (xs != ys) return xs ? 1 : -1; // a surrogate pair is above every BMP character
            return x.CompareTo(y);
        }
        return a.Length.CompareTo(b.Length);
    }

    static int CodePointIndex(string s, int utf16Index)
    {
        if (!HasSurrogates(s)) return utf16Index;
        var count = 0;
        for (var i = 0; i < utf16Index; i++, count++)
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) i++;
        return count;
    }

    static int Utf16Index(string s, int codePointIndex)
    {
        if (!HasSurrogates(s)) return codePointIndex;
        var i = 0;
        for (var count = 0; count < codePointIndex && i < s.Length; count++)
            i += char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) ? 2 : 1;
        return i;
    }

    // --------------------------------------------------------------------------------------------------------- whitespace

    public static bool IsSpace(Rune r) => Rune.IsWhiteSpace(r) || r.Value is >= 0x1c and <= 0x1f;

    public static string Strip(string s, string? characters, bool left, bool right)
    {
        if (characters == null && !HasSurrogates(s))
        {
            // The common case (trim of message content): no rune decoding needed.
            int first = 0, last = s.Length;
            if (left) while (first < last && Lexer.IsWhitespace(s[first])) first++;
            if (right) while (last > first && Lexer.IsWhitespace(s[last - 1])) last--;
            return first == 0 && last == s.Length ? s : s[first..last];
        }
        var set = characters?.EnumerateRunes().ToHashSet();
        Func<Rune, bool> strip = set == null ? IsSpace : set.Contains;
        var runes = s.EnumerateRunes().ToList();
        int start = 0, end = runes.Count;
        if (left) while (start < end && strip(runes[start])) start++;
        if (right) while (end > start && strip(runes[end - 1])) end--;
        if (start == 0 && end == runes.Count) return s;
        var result = new StringBuilder();
        for (var i = start; i < end; i++) result.Append(runes[i].ToString());
        return result.ToString();
    }

    public static List<object?> Split(string s, string? separator, long maxSplit)
    {
        var result = new List<object?>();
        if (maxSplit < 0) maxSplit = long.MaxValue;
        if (separator == null)
        {
            var runes = s.EnumerateRunes().ToList();
            var i = 0;
            while (true)
            {
                while (i < runes.Count && IsSpace(runes[i])) i++;
                if (i >= runes.Count) break;
                if (result.Count == maxSplit)
                {
                    result.Add(Join(runes, i, runes.Count)); // the unsplit rest keeps its trailing whitespace
                    break;
                }
                var start = i;
                while (i < runes.Count && !IsSpace(runes[i])) i++;
                result.Add(Join(runes, start, i));
                if (result.Count > RenderBudget.MaxItems) RenderBudget.RequireItems(result.Count, "a split result");
            }
            return result;
        }
        if (separator.Length == 0) throw new TemplateException(TemplateErrorKind.Value, "empty separator");
        var position = 0;
        while (result.Count < maxSplit)
        {
            var found = s.IndexOf(separator, position, StringComparison.Ordinal);
            if (found < 0) break;
            result.Add(s[position..found]);
            if (result.Count > RenderBudget.MaxItems) RenderBudget.RequireItems(result.Count, "a split result");
            position = found + separator.Length;
        }
        result.Add(s[position..]);
        return result;
    }

    public static List<object?> RightSplit(string s, string? separator, long maxSplit)
    {
        if (maxSplit < 0) return Split(s, separator, maxSplit);
        var reversed = Split(Reverse(s), separator == null ? null : Reverse(separator), maxSplit);
        reversed.Reverse();
        return reversed.Select(part => (object?)Reverse((string)part!)).ToList();
    }

    static string Join(List<Rune> runes, int start, int end)
    {
        var builder = new StringBuilder();
        for (var i = start; i < end; i++) builder.Append(runes[i].ToString());
        return builder.ToString();
    }

    public static List<object?> SplitLines(string s, bool keepEnds)
    {
        var result = new List<object?>();
        var start = 0;
        for (var i = 0; i < s.Length; i++)
        {
            var c = s[i];
            if (c is not ('\n' or '\r' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028' or '\u2029')) continue;
            var end = i;
            if (c == '\r' && i + 1 < s.Length && s[i + 1] == '\n') i++;
            result.Add(keepEnds ? s[start..(i + 1)] : s[start..end]);
            if (result.Count > RenderBudget.MaxItems) RenderBudget.RequireItems(result.Count, "a splitlines result");
            start = i + 1;
        }
        if (start < s.Length) result.Add(s[start..]);
        return result;
    }

    // ---------------------------------------------------------------------------------------------------------------- case

    public static string Upper(string s) => s.ToUpperInvariant();
    public static string Lower(string s) => s.ToLowerInvariant();

    static bool IsCased(Rune r) => Rune.IsUpper(r) || Rune.IsLower(r) || Rune.GetUnicodeCategory(r) == UnicodeCategory.TitlecaseLetter;

    /// <summary>Python's str.title(): a cased character after an uncased one starts a word ("they're" gives "They'Re").</summary>
    public static string Title(string s)
    {
        var result = new StringBuilder(s.Length);
        var previousCased = false;
        foreach (var r in s.EnumerateRunes())
        {
            result.Append((previousCased ? Rune.ToLowerInvariant(r) : Rune.ToUpperInvariant(r)).ToString());
            previousCased = IsCased(r);
        }
        return result.ToString();
    }

    public static string Capitalize(string s)
    {
        if (s.Length == 0) return s;
        var first = Rune.GetRuneAt(s, 0);
        return Rune.ToUpperInvariant(first).ToString() + s[first.Utf16SequenceLength..].ToLowerInvariant();
    }

    public static string SwapCase(string s)
    {
        var result = new StringBuilder(s.Length);
        foreach (var r in s.EnumerateRunes())
            result.Append((Rune.IsUpper(r) ? Rune.ToLowerInvariant(r) : Rune.IsLower(r) ? Rune.ToUpperInvariant(r) : r).ToString());
        return result.ToString();
    }

    // ---------------------------------------------------------------------------------------------------------- predicates

    public static bool All(string s, Func<Rune, bool> predicate) => s.Length > 0 && s.EnumerateRunes().All(predicate);
    public static bool IsDecimal(Rune r) => Rune.GetUnicodeCategory(r) == UnicodeCategory.DecimalDigitNumber;
    public static bool IsDigit(Rune r) => IsDecimal(r) || (Rune.GetNumericValue(r) is >= 0 and <= 9 && Rune.GetUnicodeCategory(r) == UnicodeCategory.OtherNumber);
    public static bool IsNumeric(Rune r) => Rune.GetNumericValue(r) != -1;
    public static bool IsAlpha(Rune r) => Rune.IsLetter(r);
    public static bool IsAlphanumeric(Rune r) => IsAlpha(r) || IsNumeric(r);

    public static bool IsLower(string s) =>
        s.EnumerateRunes().Any(IsCased) && !s.EnumerateRunes().Any(r => Rune.IsUpper(r) || Rune.GetUnicodeCategory(r) == UnicodeCategory.TitlecaseLetter);

    public static bool IsUpper(string s) =>
        s.EnumerateRunes().Any(IsCased) && !s.EnumerateRunes().Any(r => Rune.IsLower(r) || Rune.GetUnicodeCategory(r) == UnicodeCategory.TitlecaseLetter);

    /// <summary>Python's re <c>\w</c> (letters, digits, underscore): what Jinja's wordcount counts runs of.</summary>
    public static bool IsWordCharacter(Rune r) => r.Value == '_' || IsAlphanumeric(r);

    // -------------------------------------------------------------------------------------------------------- searching

    /// <summary>CPython's ADJUST_INDICES for find/count/startswith: code point bounds, negative from the end, end clamped.</summary>
    static (long Start, long End) Bounds(string s, object? start, object? end)
    {
        static long? Integer(object? value) => value is null or UndefinedValue ? null
            : PythonOps.TryGetInteger(value, out var integer) ? integer
            : throw PythonOps.TypeError("slice indices must be integers or None or have an __index__ method");
        var length = Length(s);
        var from = Integer(start) ?? 0;
        var to = Integer(end) ?? length;
        if (to > length) to = length;
        else if (to < 0) to = Math.Max(0, to + length);
        if (from < 0) from = Math.Max(0, from + length);
        return (from, to);
    }

    public static long Find(string s, string part, object? start, object? end, bool fromRight)
    {
        var (from, to) = Bounds(s, start, end);
        if (to - from < Length(part)) return -1;
        int first = Utf16Index(s, (int)from), last = Utf16Index(s, (int)to);
        var found = part.Length == 0 ? (fromRight ? last : first)
            : fromRight ? s.LastIndexOf(part, last - 1, last - first, StringComparison.Ordinal)
            : s.IndexOf(part, first, last - first, StringComparison.Ordinal);
        return found < 0 ? -1 : CodePointIndex(s, found);
    }

    public static long Count(string s, string part, object? start, object? end)
    {
        var (from, to) = Bounds(s, start, end);
        if (to - from < Length(part)) return 0;
        if (part.Length == 0) return to - from + 1;
        int first = Utf16Index(s, (int)from), last = Utf16Index(s, (int)to);
        long count = 0;
        for (var at = s.IndexOf(part, first, last - first, StringComparison.Ordinal); at >= 0;)
        {
            count++;
            var next = at + part.Length;
            at = next <= last - part.Length ? s.IndexOf(part, next, last - next, StringComparison.Ordinal) : -1;
        }
        return count;
    }

    public static bool StartsOrEndsWith(string s, object? affix, object? start, object? end, bool atEnd, string method)
    {
        var (from, to) = Bounds(s, start, end);
        if (from > to) return false;
        var window = s[Utf16Index(s, (int)from)..Utf16Index(s, (int)to)];
        IEnumerable<object?> candidates = affix is TupleValue tuple ? tuple.Items : [affix];
        foreach (var candidate in candidates)
        {
            if (!PythonOps.TryGetText(candidate, out var text))
                throw PythonOps.TypeError(affix is TupleValue
                    ? $"tuple for {method} must only contain str, not {PythonOps.TypeName(candidate)}"
                    : $"{method} first arg must be str or a tuple of str, not {PythonOps.TypeName(candidate)}");
            if (atEnd ? window.EndsWith(text, StringComparison.Ordinal) : window.StartsWith(text, StringComparison.Ordinal)) return true;
        }
        return false;
    }

    public static string Replace(string s, string old, string replacement, long count)
    {
        if (count < 0) count = long.MaxValue;
        if (count == 0) return s;
        var result = new StringBuilder();
        if (old.Length == 0)
        {
            RenderBudget.RequireLength(s.Length + Math.Min(count, s.Length + 1L) * replacement.Length, "a replace result"); // before splitting s into code points
            var inserted = 0L;
            foreach (var element in Elements(s))
            {
                if (inserted++ < count) result.Append(replacement);
                result.Append(element);
                RenderBudget.CheckBuilder(result, "a replace result");
            }
            if (inserted < count) result.Append(replacement);
            return result.ToString();
        }
        var position = 0;
        for (long done = 0; done < count; done++)
        {
            var found = s.IndexOf(old, position, StringComparison.Ordinal);
            if (found < 0) break;
            result.Append(s, position, found - position).Append(replacement);
            RenderBudget.CheckBuilder(result, "a replace result");
            position = found + old.Length;
        }
        result.Append(s, position, s.Length - position);
        RenderBudget.RequireLength(result.Length, "a replace result");
        return result.ToString();
    }
}
