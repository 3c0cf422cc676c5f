namespace Hone.Grammars;

/// <summary>
/// The tokens a grammar allows in each of its states, for one vocabulary: computed the first time a state is met (one
/// walk over the sorted vocabulary, stepping the automaton once per distinct prefix and skipping whole subtrees the
/// grammar rejects) and kept, so a state met again — every character of a string, every item of an array — costs a
/// lookup. Held by the grammar per vocabulary; thread-safe through the grammar's lock.
/// </summary>
internal sealed class GrammarTokenMasks
{
    /// <summary>Memory the cached masks may take; past it the cache starts over.</summary>
    public const long CacheBytes = 256L << 20;

    readonly Grammar _grammar;
    readonly TokenVocabulary _vocabulary;
    readonly bool[] _excluded;            // [id] special tokens no literal of the grammar spells
    readonly Dictionary<int, ulong[]> _cache = new();
    readonly int _cacheLimit;
    int[] _depthState = new int[64];      // [depth] state after the first depth bytes of the current token

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
        if (_cache.Count >= _cacheLimit) _cache.Clear();
        mask = Compute(state);
        _cache[state] = mask;
        Computed++;
        return mask;
    }

    ulong[] Compute(int state)
    {
        var mask = new ulong[_vocabulary.MaskWords];
        var sorted = _vocabulary.Sorted;
        var common = _vocabulary.CommonPrefix;
        var bytes = _vocabulary.Bytes;
        _depthState[0] = state;
        int valid = 0; // _depthState[0..valid] hold the states of the current token's prefix
        for (int i = 0; i < sorted.Length; i++)
        {
            int id = sorted[i];
            var token = bytes[id];
            if (token.Length >= _depthState.Length) Array.Resize(ref _depthState, Math.Max(token.Length + 1, _depthState.Length * 2));
            int depth = Math.Min(common[i], valid);
            int s = _depthState[depth];
            while (depth < token.Length)
            {
                s = _grammar.Step(s, token[depth]);
                if (s == Grammar.Dead) break;
                _depthState[++depth] = s;
            }
            valid = depth;
            if (depth == token.Length)
            {
                if (!_excluded[id]) mask[id >> 6] |= 1UL << (id & 63);
                continue;
            }
            // Rejected at byte `depth`: so is every following token with the same first depth + 1 bytes.
            while (i + 1 < sorted.Length && common[i + 1] > depth) i++;
        }
        return mask;
    }
}
