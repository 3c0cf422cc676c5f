using System.Text;

namespace Hone.Tokenization;

/// <summary>
/// Unicode NFC. .NET's <see cref="string.Normalize()"/> needs ICU and returns its input unchanged under invariant
/// globalization (which Hone runs with), so tokenizers that normalize to NFC (Qwen2) use this instead.
/// </summary>
static class UnicodeNormalization
{
    const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7, LCount = 19, VCount = 21, TCount = 28;
    const int NCount = VCount * TCount, SCount = LCount * NCount;

    static readonly Dictionary<long, int> Composites = BuildComposites();

    static Dictionary<long, int> BuildComposites()
    {
        var data = UnicodeNormalizationData.Compositions;
        var map = new Dictionary<long, int>(data.Length / 3);
        for (int i = 0; i < data.Length; i += 3) map[((long)data[i] << 21) | (uint)data[i + 1]] = data[i + 2];
        return map;
    }

    public static string ToNfc(string text)
    {
        if (IsQuickNfc(text)) return text;
        var decomposed = new List<int>(text.Length + 8);
        foreach (var rune in text.EnumerateRunes()) Decompose(rune.Value, decomposed);
        SortCombiningMarks(decomposed);
        var composed = Compose(decomposed);
        var sb = new StringBuilder(text.Length);
        foreach (int cp in composed) sb.Append(new Rune(cp).ToString());
        return sb.ToString();
    }

    static bool IsQuickNfc(string text)
    {
        var interesting = UnicodeNormalizationData.Interesting;
        foreach (var rune in text.EnumerateRunes())
        {
            int cp = rune.Value;
            if (cp < 0x300) continue;
            if (cp is >= LBase and < 0x1200) return false; // conjoining jamo compose algorithmically
            if (interesting.BinarySearch(cp) >= 0) return false;
        }
        return true;
    }

    public static int CombiningClass(int cp)
    {
        if (cp < 0x300) return 0;
        int i = UnicodeNormalizationData.CombiningCodePoints.BinarySearch(cp);
        return i >= 0 ? UnicodeNormalizationData.CombiningClasses[i] : 0;
    }

    static void Decompose(int cp, List<int> output)
    {
        if (cp is >= SBase and < SBase + SCount)
        {
            int s = cp - SBase;
            output.Add(LBase + s / NCount);
            output.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) output.Add(TBase + s % TCount);
            return;
        }
        int i = cp < 0xC0 ? -1 : UnicodeNormalizationData.DecomposedCodePoints.BinarySearch(cp);
        if (i < 0) { output.Add(cp); return; }
        var offsets = UnicodeNormalizationData.DecompositionOffsets;
        foreach (int d in UnicodeNormalizationData.DecompositionValues[offsets[i]..offsets[i + 1]]) output.Add(d);
    }

    /// <summary>Canonical ordering: each run of non-starters stably sorted by combining class.</summary>
    static void SortCombiningMarks(List<int> cps)
    {
        for (int i = 1; i < cps.Count; i++)
        {
            int cc = CombiningClass(cps[i]);
            if (cc == 0) continue;
            int j = i;
            while (j > 0)
            {
                int prev = CombiningClass(cps[j - 1]);
                if (prev == 0 || prev <= cc) break;
                (cps[j - 1], cps[j]) = (cps[j], cps[j - 1]);
                j--;
            }
        }
    }

    static List<int> Compose(List<int> cps)
    {
        var output = new List<int>(cps.Count);
        int starter = -1, lastClass = 0;
        foreach (int cp in cps)
        {
            int cc = CombiningClass(cp);
            if (starter >= 0)
            {
                // Blocked when something between the starter and cp has class 0 or a class not below cp's.
                bool adjacent = output.Count - 1 == starter;
                if (adjacent || (lastClass != 0 && lastClass < cc))
                {
                    int composite = ComposePair(output[starter], cp);
                    if (composite >= 0)
                    {
                        output[starter] = composite;
                        continue;
                    }
                }
            }
            if (cc == 0) starter = output.Count;
            output.Add(cp);
            lastClass = cc;
        }
        return output;
    }

    static int ComposePair(int first, int second)
    {
        if (first is >= LBase and < LBase + LCount && second is >= VBase and < VBase + VCount)
            return SBase + ((first - LBase) * VCount + (second - VBase)) * TCount;
        if (first is >= SBase and < SBase + SCount && (first - SBase) % TCount == 0 && second is > TBase and < TBase + TCount)
            return first + (second - TBase);
        return Composites.TryGetValue(((long)first << 21) | (uint)second, out int c) ? c : -1;
    }
}
