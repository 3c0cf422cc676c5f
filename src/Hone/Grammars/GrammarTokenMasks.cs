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
    public const long CacheBytes = 256L << 20;

    /// <summary>Frames of a stack a classification keeps: the repetition loop and the rule around it, so that string
    /// content, digits and whitespace are decided once for every place they occur.</summary>
    public const int CutDepth = 3;

    readonly Grammar _grammar;
    readonly TokenVocabulary _vocabulary;
    readonly bool[] _excluded;            // [id] special tokens no literal of the grammar spells
    readonly Dictionary<int, ulong[]> _cache = new();
    readonly Dictionary<int, Classification> _classes = new();
    readonly int _cacheLimit;
    int[] _depthState = new int[64];      // [depth] state after the first depth bytes of the current token
    bool[] _depthEscaped = new bool[64];  // [depth] some path escaped below the cut within those bytes

    sealed record Classification(ulong[] Allowed, int[] Uncertain);

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
            int cut = _grammar.CutStack(node, CutDepth);
            if (!_classes.TryGetValue(cut, out var c))
            {
                c = Classify(_grammar.SingleStackState(cut));
                _classes[cut] = c;
            }
            for (int w = 0; w < mask.Length; w++) mask[w] |= c.Allowed[w];
            if (c.Uncertain.Length == 0) continue;
            int single = _grammar.SingleStackState(node);
            foreach (int id in c.Uncertain)
                if ((mask[id >> 6] & (1UL << (id & 63))) == 0 && Fits(single, _vocabulary.Bytes[id]))
                    mask[id >> 6] |= 1UL << (id & 63);
        }
        _cache[state] = mask;
        Computed++;
        return mask;
    }

    bool Fits(int state, byte[] token)
    {
        foreach (byte b in token)
        {
            state = _grammar.Step(state, b);
            if (state == Grammar.Dead) return false;
        }
        return true;
    }

    /// <summary>From a cut stack: the tokens allowed whatever lies below the cut, and those that reach below it before
    /// their last byte (uncertain); the rest are rejected everywhere.</summary>
    Classification Classify(int state)
    {
        var allowed = new ulong[_vocabulary.MaskWords];
        var uncertain = new List<int>();
        var sorted = _vocabulary.Sorted;
        var common = _vocabulary.CommonPrefix;
        var bytes = _vocabulary.Bytes;
        _depthState[0] = state;
        _depthEscaped[0] = false;
        int valid = 0; // _depthState[0..valid] hold the states of the current token's prefix
        for (int i = 0; i < sorted.Length; i++)
        {
            int id = sorted[i];
            var token = bytes[id];
            if (token.Length >= _depthState.Length)
            {
                int size = Math.Max(token.Length + 1, _depthState.Length * 2);
                Array.Resize(ref _depthState, size);
                Array.Resize(ref _depthEscaped, size);
            }
            int depth = Math.Min(common[i], valid);
            int s = _depthState[depth];
            while (depth < token.Length)
            {
                s = _grammar.Step(s, token[depth]);
                if (s == Grammar.Dead) break;
                _depthState[++depth] = s;
                _depthEscaped[depth] = _depthEscaped[depth - 1] || _grammar.Escapes(s);
            }
            valid = depth;
            if (depth == token.Length)
            {
                if (!_excluded[id]) allowed[id >> 6] |= 1UL << (id & 63);
                continue;
            }
            // Rejected at byte `depth` along the known stack: so is every following token with the same first depth + 1
            // bytes; where a path went below the cut before that byte, the real stack decides.
            bool below = _depthEscaped[depth];
            if (below && !_excluded[id]) uncertain.Add(id);
            while (i + 1 < sorted.Length && common[i + 1] > depth)
            {
                i++;
                if (below && !_excluded[sorted[i]]) uncertain.Add(sorted[i]);
            }
        }
        return new Classification(allowed, uncertain.ToArray());
    }
}
