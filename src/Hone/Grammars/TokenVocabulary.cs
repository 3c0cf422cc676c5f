using System.Runtime.CompilerServices;
using Hone.Tokenization;

namespace Hone.Grammars;

/// <summary>
/// A tokenizer's tokens as the bytes they add to the output, sorted so that tokens sharing a prefix sit together: a
/// mask walks them as a trie, stepping the grammar once per distinct prefix and skipping every token under a prefix
/// the grammar rejects. Built once per tokenizer (<see cref="For"/>).
/// </summary>
public sealed class TokenVocabulary
{
    static readonly ConditionalWeakTable<Tokenizer, TokenVocabulary> Cache = new();

    internal readonly byte[][] Bytes;      // [id] → bytes
    internal readonly bool[] Special;      // [id] special or control: matched only where a grammar literal spells it
    internal readonly string[] SpecialText;// [id] the token's text when special (else null)
    internal readonly int[] Sorted;        // ids with bytes, ordered by their bytes
    internal readonly int[] CommonPrefix;  // [i] bytes Sorted[i] shares with Sorted[i - 1]
    // The sorted tokens as a trie (node 0 = the empty prefix). A node's tokens are Sorted[RangeStart..RangeEnd): the first
    // ExactCount of them are exactly its prefix, the rest go on below. Children are linked in byte order.
    internal readonly int[] FirstChild, NextSibling, RangeStart, RangeEnd, ExactCount;
    internal readonly byte[] EdgeByte;
    readonly int[] _endIds;

    TokenVocabulary(Tokenizer tokenizer)
    {
        int v = tokenizer.VocabSize;
        Count = v;
        Bytes = new byte[v][];
        Special = new bool[v];
        SpecialText = new string[v];
        var ends = tokenizer.EndOfTurnIds.ToHashSet();
        if (tokenizer.EosId is int eos) ends.Add(eos);
        _endIds = ends.Where(id => id >= 0 && id < v).Order().ToArray();
        var withBytes = new List<int>(v);
        for (int id = 0; id < v; id++)
        {
            var type = tokenizer.GetTokenType(id);
            bool special = tokenizer.IsSpecial(id) || type is TokenType.Control or TokenType.Unknown || ends.Contains(id);
            Special[id] = special;
            if (special) SpecialText[id] = tokenizer.TokenText(id);
            Bytes[id] = ends.Contains(id) ? [] : tokenizer.TokenBytes(id);
            if (Bytes[id].Length > 0) withBytes.Add(id);
        }
        Sorted = withBytes.ToArray();
        Array.Sort(Sorted, (a, b) => Bytes[a].AsSpan().SequenceCompareTo(Bytes[b]));
        CommonPrefix = new int[Sorted.Length];
        for (int i = 1; i < Sorted.Length; i++)
            CommonPrefix[i] = Bytes[Sorted[i - 1]].AsSpan().CommonPrefixLength(Bytes[Sorted[i]]);
        (FirstChild, NextSibling, RangeStart, RangeEnd, ExactCount, EdgeByte) = BuildTrie();
    }

    (int[], int[], int[], int[], int[], byte[]) BuildTrie()
    {
        var firstChild = new List<int> { -1 };
        var nextSibling = new List<int> { -1 };
        var lastChild = new List<int> { -1 };
        var rangeStart = new List<int> { 0 };
        var rangeEnd = new List<int> { Sorted.Length };
        var exact = new List<int> { 0 };
        var edge = new List<byte> { 0 };
        var path = new List<int> { 0 }; // path[d] = node of the current token's first d bytes
        for (int i = 0; i < Sorted.Length; i++)
        {
            var token = Bytes[Sorted[i]];
            int keep = Math.Min(CommonPrefix[i], path.Count - 1);
            path.RemoveRange(keep + 1, path.Count - keep - 1);
            for (int d = 1; d <= keep; d++) rangeEnd[path[d]] = i + 1;
            for (int d = keep; d < token.Length; d++)
            {
                int parent = path[d];
                int node = firstChild.Count;
                firstChild.Add(-1); nextSibling.Add(-1); lastChild.Add(-1);
                rangeStart.Add(i); rangeEnd.Add(i + 1); exact.Add(0); edge.Add(token[d]);
                if (lastChild[parent] < 0) firstChild[parent] = node; else nextSibling[lastChild[parent]] = node;
                lastChild[parent] = node;
                path.Add(node);
            }
            exact[path[token.Length]]++;
        }
        return (firstChild.ToArray(), nextSibling.ToArray(), rangeStart.ToArray(), rangeEnd.ToArray(), exact.ToArray(), edge.ToArray());
    }

    /// <summary>The most bytes any token has.</summary>
    internal int LongestToken => _longest ??= Bytes.Max(b => b.Length);
    int? _longest;

    /// <summary>Tokens of 1..<paramref name="length"/> bytes, as a mask (kept per length).</summary>
    internal ulong[] ShortTokens(int length)
    {
        lock (_short)
        {
            if (_short.TryGetValue(length, out var known)) return known;
            var mask = new ulong[MaskWords];
            for (int id = 0; id < Count; id++)
                if (Bytes[id].Length is > 0 and var l && l <= length) mask[id >> 6] |= 1UL << (id & 63);
            _short[length] = mask;
            return mask;
        }
    }

    readonly Dictionary<int, ulong[]> _short = new();

    /// <summary>The vocabulary of a tokenizer (built on first use, then shared).</summary>
    public static TokenVocabulary For(Tokenizer tokenizer) => Cache.GetValue(tokenizer, t => new TokenVocabulary(t));

    /// <summary>Token ids 0..Count-1.</summary>
    public int Count { get; }

    /// <summary>Words of a token mask: one bit per id.</summary>
    public int MaskWords => (Count + 63) / 64;

    /// <summary>EOS and the end-of-turn tokens: allowed exactly when the grammar has matched a whole root.</summary>
    public ReadOnlySpan<int> EndIds => _endIds;

    public bool IsEnd(int id) => Array.BinarySearch(_endIds, id) >= 0;

    /// <summary>The bytes token <paramref name="id"/> adds to the output (empty for EOS / end of turn).</summary>
    public ReadOnlySpan<byte> TokenBytes(int id) => Bytes[id];
}
