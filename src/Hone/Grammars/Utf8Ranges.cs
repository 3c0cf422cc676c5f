namespace Hone.Grammars;

/// <summary>Code point ranges as sequences of UTF-8 byte ranges, so a character class can be matched byte by byte
/// (the split regex engines use: each sequence is the product of its byte ranges, and the sequences are disjoint).</summary>
internal static class Utf8Ranges
{
    /// <summary>Code points [lo, hi] (surrogates left out) as byte-range sequences, each 1–4 (first, last) pairs.</summary>
    public static List<(byte Lo, byte Hi)[]> Sequences(int lo, int hi)
    {
        var result = new List<(byte, byte)[]>();
        Split(lo, hi, result);
        return result;
    }

    static void Split(int lo, int hi, List<(byte, byte)[]> result)
    {
        if (lo > hi) return;
        // Surrogates are not characters: never matched.
        if (lo <= 0xDFFF && hi >= 0xD800)
        {
            Split(lo, 0xD7FF, result);
            Split(0xE000, hi, result);
            return;
        }
        foreach (int boundary in (int[])[0x7F, 0x7FF, 0xFFFF])
            if (lo <= boundary && hi > boundary)
            {
                Split(lo, boundary, result);
                Split(boundary + 1, hi, result);
                return;
            }
        int length = Length(lo);
        for (int i = 1; i < length; i++)
        {
            int m = (1 << (6 * i)) - 1;
            if ((lo & ~m) != (hi & ~m))
            {
                if ((lo & m) != 0)
                {
                    Split(lo, lo | m, result);
                    Split((lo | m) + 1, hi, result);
                    return;
                }
                if ((hi & m) != m)
                {
                    Split(lo, (hi & ~m) - 1, result);
                    Split(hi & ~m, hi, result);
                    return;
                }
            }
        }
        Span<byte> a = stackalloc byte[4], b = stackalloc byte[4];
        Encode(lo, a);
        Encode(hi, b);
        var sequence = new (byte, byte)[length];
        for (int i = 0; i < length; i++) sequence[i] = (a[i], b[i]);
        result.Add(sequence);
    }

    static int Length(int c) => c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;

    static void Encode(int c, Span<byte> bytes)
    {
        switch (Length(c))
        {
            case 1: bytes[0] = (byte)c; break;
            case 2: bytes[0] = (byte)(0xC0 | (c >> 6)); bytes[1] = (byte)(0x80 | (c & 0x3F)); break;
            case 3: bytes[0] = (byte)(0xE0 | (c >> 12)); bytes[1] = (byte)(0x80 | ((c >> 6) & 0x3F)); bytes[2] = (byte)(0x80 | (c & 0x3F)); break;
            default:
                bytes[0] = (byte)(0xF0 | (c >> 18)); bytes[1] = (byte)(0x80 | ((c >> 12) & 0x3F));
                bytes[2] = (byte)(0x80 | ((c >> 6) & 0x3F)); bytes[3] = (byte)(0x80 | (c & 0x3F));
                break;
        }
    }
}
