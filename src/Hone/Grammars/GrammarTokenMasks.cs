namespace Hone.Grammars;

/// <summary>
/// The tokens a grammar allows in each of its states, for one vocabulary, as XGrammar does: each stack's top few frames
/// (<see cref="CutDepth"/>) decide most tokens whatever lies below — always allowed or always rejected — so those
/// answers are computed once per distinct top, by one walk over the sorted vocabulary (stepping the automaton once per
/// distinct prefix, skipping whole subtrees the grammar rejects); only the few tokens that reach below the top (a
/// quote that closes a string and goes on into what follows) are checked against the real stack. A state's mask is
/// then kept, so a state met again costs a lookup. Held by the grammar per vocabulary; thread-safe through the
/// grammar's lock.
/// </summary>
internal sealed class GrammarTokenMasks
{
    /// <summary>Memory the cached masks may take; past it the cache starts over.</summary>
    public const long CacheBytes = 64L << 20;

    /// <summary>Frames of a stack a classification keeps: the repetition loop and the rule around it, so that string
    /// content, digits and whitespace are decided once for every place they occur.</summary>
    public const int CutDepth = 3;

    readonly Grammar _grammar;
    readonly TokenVocabulary _vocabulary;
    readonly bool[] _excluded;            // [id] special tokens no literal of the grammar spells
    readonly Dictionary<int, ulong[]> _cache = new();
    readonly Dictionary<int, Classification> _classes = new();
    readonly int _cacheLimit;

    /// <summary>Allowed tokens as a bit mask when many (Dense), else as ids (Sparse); Uncertain as ids.</summary>
    /// <param name="CommonPrefix">[k] bytes Uncertain[k] shares with Uncertain[k - 1]</param>
    sealed record Classification(ulong[]? Dense, int[] Sparse, int[] Uncertain, int[] CommonPrefix);

    public GrammarTokenMasks(Grammar grammar, TokenVocabulary vocabulary)
    {
        _grammar = grammar;
        _vocabulary = vocabulary;
        _excluded = new bool[vocabulary.Count];
        for (int id = 0; id < vocabulary.Count; id++)
            if (vocabulary.Special[id])
            {
                string? text = vocabulary.SpecialText[id];
                _excluded[id] = text == null || !grammar.Literals.Any(l => l.Contains(text, StringComparison.Ordinal));
            }
        _cacheLimit = (int)Math.Max(16, CacheBytes / (vocabulary.MaskWords * 8L));
    }

    public TokenVocabulary Vocabulary => _vocabulary;

    /// <summary>Masks computed (cache misses), for the benchmark's account of cold states.</summary>
    public int Computed { get; private set; }

    /// <summary>The mask of a state: bit id set when token id can come next (end tokens not included). Caller holds
    /// the grammar's lock.</summary>
    public ulong[] Mask(int state)
    {
        if (_cache.TryGetValue(state, out var mask)) return mask;
        if (_cache.Count + _classes.Count >= _cacheLimit) { _cache.Clear(); _classes.Clear(); }
        mask = new ulong[_vocabulary.MaskWords];
        foreach (int node in _grammar.StateNodes(state))
        {
            int cut = _grammar.CutStack(node, CutDepth, out int budget);
            if (!_classes.TryGetValue(cut, out var c))
            {
                c = Classify(_grammar.SingleStackState(cut));
                _classes[cut] = c;
            }
            if (budget >= _vocabulary.LongestToken)
            {
                if (c.Dense != null) for (int w = 0; w < mask.Length; w++) mask[w] |= c.Dense[w];
                else foreach (int id in c.Sparse) mask[id >> 6] |= 1UL << (id & 63);
            }
            else
            {
                // Cut as the unbounded loop: its tokens fit this level when no longer than the budget (each item takes
                // at least a byte); longer ones are tried on the real stack.
                var fits = _vocabulary.ShortTokens(budget);
                int single = _grammar.SingleStackState(node);
                if (c.Dense != null)
                    for (int w = 0; w < mask.Length; w++)
                    {
                        mask[w] |= c.Dense[w] & fits[w];
                        for (ulong rest = c.Dense[w] & ~fits[w] & ~mask[w]; rest != 0; rest &= rest - 1)
                        {
                            int id = w * 64 + System.Numerics.BitOperations.TrailingZeroCount(rest);
                            if (Fits(single, _vocabulary.Bytes[id])) mask[w] |= 1UL << (id & 63);
                        }
                    }
                else
                    foreach (int id in c.Sparse)
                        if ((fits[id >> 6] & (1UL << (id & 63))) != 0 || Fits(single, _vocabulary.Bytes[id])) mask[id >> 6] |= 1UL << (id & 63);
            }
            if (c.Uncertain.Length > 0) CheckUncertain(_grammar.SingleStackState(node), c, mask);
        }
        _cache[state] = mask;
        Computed++;
        return mask;
    }

    /// <summary>The uncertain tokens of a classification, tried from the real stack; they are in trie order, so each
    /// steps only past the prefix it shares with the one before, and a rejected prefix rejects all that share it.</summary>
    void CheckUncertain(int state, Classification c, ulong[] mask)
    {
        var uncertain = c.Uncertain;
        var bytes = _vocabulary.Bytes;
        _depthState[0] = state;
        int valid = 0;
        for (int k = 0; k < uncertain.Length; k++)
        {
            var token = bytes[uncertain[k]];
            if (token.Length >= _depthState.Length) Array.Resize(ref _depthState, Math.Max(token.Length + 1, _depthState.Length * 2));
            int depth = Math.Min(c.CommonPrefix[k], valid);
            int s = _depthState[depth];
            while (depth < token.Length)
            {
                s = _grammar.Step(s, token[depth]);
                if (s == Grammar.Dead) break;
                _depthState[++depth] = s;
            }
            valid = depth;
            if (depth == token.Length) { mask[uncertain[k] >> 6] |= 1UL << (uncertain[k] & 63); continue; }
            while (k + 1 < uncertain.Length && c.CommonPrefix[k + 1] > depth) k++;
        }
    }

    int[] _depthState = new int[64]; // [depth] state after the first depth bytes of the current token

    bool Fits(int state, byte[] token) => _grammar.Run(state, token) != Grammar.Dead;

    /// <summary>From a cut stack: the tokens allowed whatever lies below the cut, and those that reach below it before
    /// their last byte (uncertain); the rest are rejected everywhere. A walk down the vocabulary's trie that leaves every
    /// subtree the grammar rejects at its first byte.</summary>
    Classification Classify(int state)
    {
        var allowed = new List<int>();
        var uncertain = new List<int>();
        Walk(0, state, false, allowed, uncertain);
        ulong[]? dense = null;
        if (allowed.Count > _vocabulary.MaskWords)
        {
            dense = new ulong[_vocabulary.MaskWords];
            foreach (int id in allowed) dense[id >> 6] |= 1UL << (id & 63);
        }
        var common = new int[uncertain.Count];
        for (int k = 1; k < uncertain.Count; k++)
            common[k] = _vocabulary.Bytes[uncertain[k - 1]].AsSpan().CommonPrefixLength(_vocabulary.Bytes[uncertain[k]]);
        return new Classification(dense, dense == null ? allowed.ToArray() : [], uncertain.ToArray(), common);
    }

    void Walk(int node, int state, bool escaped, List<int> allowed, List<int> uncertain)
    {
        var v = _vocabulary;
        int[] firstChild = v.FirstChild, nextSibling = v.NextSibling, rangeStart = v.RangeStart;
        byte[] edge = v.EdgeByte;
        var bytes = _grammar.NextBytes(state);
        var row = _grammar.Row(state);
        for (int child = firstChild[node]; child >= 0; child = nextSibling[child])
        {
            byte b = edge[child];
            int next;
            if ((bytes[b >> 6] & (1UL << (b & 63))) == 0) next = Grammar.Dead;
            else
            {
                next = row[b];
                if (next == Grammar.Unknown) next = _grammar.Step(state, b);
            }
            if (next == Grammar.Dead)
            {
                // Rejected along the known stack; where a path went below the cut earlier, the real stack decides.
                if (escaped) AddRange(uncertain, rangeStart[child], v.RangeEnd[child]);
                continue;
            }
            int exact = v.ExactCount[child];
            if (exact > 0) AddRange(allowed, rangeStart[child], rangeStart[child] + exact);
            if (firstChild[child] >= 0) Walk(child, next, escaped || _grammar.Escapes(next), allowed, uncertain);
        }
    }

    void AddRange(List<int> ids, int from, int to)
    {
        var sorted = _vocabulary.Sorted;
        for (int i = from; i < to; i++)
            if (!_excluded[sorted[i]]) ids.Add(sorted[i]);
    }
}
