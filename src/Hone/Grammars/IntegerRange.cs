using System.Globalization;

namespace Hone.Grammars;

/// <summary>GBNF for the decimal integers in a range, written as JSON writes them (no leading zeros, no "-0"), by the
/// usual split of a range into runs of digit classes.</summary>
internal static class IntegerRange
{
    /// <summary>Longest numbers written when a side is unbounded (as the integer rule: 15 digits stay exact in a double).</summary>
    const int MaxDigits = 15;

    /// <summary>Alternatives matching every integer in [lo, hi] (either side may be open) and nothing else.</summary>
    public static string Gbnf(long? lo, long? hi)
    {
        var alternatives = new List<string>();
        // Negative numbers: "-" then the magnitudes [max(1, -hi), -lo].
        if (lo is null || lo < 0)
        {
            long from = hi is long h && h < 0 ? -h : 1;
            long? to = lo is long l ? -l : null;
            foreach (var a in NonNegative(from, to)) alternatives.Add($"\"-\" {a}");
        }
        if (hi is null || hi >= 0)
        {
            long from = lo is long l && l > 0 ? l : 0;
            alternatives.AddRange(NonNegative(from, hi));
        }
        return string.Join(" | ", alternatives.Select(a => $"({a})"));
    }

    /// <summary>[from, to] for from ≥ 0 (to null: unbounded, up to <see cref="MaxDigits"/> digits).</summary>
    static IEnumerable<string> NonNegative(long from, long? to)
    {
        if (to is long t && from > t) yield break;
        int fromDigits = Digits(from);
        int toDigits = to is long t2 ? Digits(t2) : Math.Max(MaxDigits, fromDigits);
        for (int length = fromDigits; length <= toDigits; length++)
        {
            long low = length == fromDigits ? from : Pow10(length - 1);
            long high = to is long t3 && length == toDigits ? t3 : Pow10(length) - 1;
            if (length == 1 && low == 0 && high == 0) { yield return "\"0\""; continue; }
            foreach (var a in SameLength(low.ToString(CultureInfo.InvariantCulture), high.ToString(CultureInfo.InvariantCulture)))
                yield return a;
        }
    }

    /// <summary>Numbers of equal length between lo and hi, as sequences of digit classes.</summary>
    static IEnumerable<string> SameLength(string lo, string hi)
    {
        if (lo == hi) { yield return $"\"{lo}\""; yield break; }
        int k = 0;
        while (lo[k] == hi[k]) k++;
        string prefix = k > 0 ? $"\"{lo[..k]}\" " : "";
        int rest = lo.Length - k - 1;
        char a = lo[k], b = hi[k];
        bool lowRestZero = lo[(k + 1)..].All(c => c == '0'), highRestNine = hi[(k + 1)..].All(c => c == '9');
        if (lowRestZero && highRestNine) { yield return prefix + Class(a, b) + Any(rest); yield break; }
        // lo's digit with the rest ≥ lo's rest; the digits between with any rest; hi's digit with the rest ≤ hi's rest.
        if (lowRestZero) { yield return prefix + Class(a, a) + Any(rest); }
        else foreach (var tail in SameLength(lo[(k + 1)..], new string('9', rest))) yield return $"{prefix}\"{a}\" {tail}";
        char firstMiddle = (char)(a + 1), lastMiddle = highRestNine ? b : (char)(b - 1);
        if (firstMiddle <= lastMiddle) yield return prefix + Class(firstMiddle, lastMiddle) + Any(rest);
        if (!highRestNine)
            foreach (var tail in SameLength(new string('0', rest), hi[(k + 1)..])) yield return $"{prefix}\"{b}\" {tail}";
    }

    static string Class(char a, char b) => a == b ? $"\"{a}\"" : $"[{a}-{b}]";
    static string Any(int count) => count == 0 ? "" : count == 1 ? " [0-9]" : $" [0-9]{{{count}}}";
    static int Digits(long n) => n.ToString(CultureInfo.InvariantCulture).Length;
    static long Pow10(int n) { long p = 1; for (int i = 0; i < n; i++) p *= 10; return p; }
}
