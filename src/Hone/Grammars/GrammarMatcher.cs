namespace Hone.Grammars;

/// <summary>
/// One sequence's place in a grammar: which tokens may come next (a mask over the vocabulary, end tokens included
/// exactly when the grammar is satisfied) and advancing by the token chosen. Cheap to create; the grammar's tables
/// and masks are shared.
/// </summary>
public sealed class GrammarMatcher
{
    readonly Grammar _grammar;
    readonly GrammarTokenMasks _masks;
    readonly TokenVocabulary _vocabulary;
    int _state = Grammar.Start;

    public GrammarMatcher(Grammar grammar, TokenVocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(grammar);
        ArgumentNullException.ThrowIfNull(vocabulary);
        _grammar = grammar;
        _vocabulary = vocabulary;
        _masks = grammar.MasksFor(vocabulary);
    }

    public Grammar Grammar => _grammar;
    public TokenVocabulary Vocabulary => _vocabulary;

    /// <summary>The output so far is a whole match: an end token may come now.</summary>
    public bool IsAccepting { get { lock (_grammar.Sync) return _grammar.Accepts(_state); } }

    /// <summary>The output is a whole match and nothing can extend it: generation should end.</summary>
    public bool IsComplete { get { lock (_grammar.Sync) return _grammar.IsComplete(_state); } }

    /// <summary>Writes the allowed tokens: bit id of <paramref name="words"/> (at least
    /// <see cref="TokenVocabulary.MaskWords"/> long) set when token id may come next.</summary>
    public void FillAllowed(Span<ulong> words)
    {
        if (words.Length < _vocabulary.MaskWords) throw new ArgumentException($"the mask needs {_vocabulary.MaskWords} words", nameof(words));
        bool accepts;
        lock (_grammar.Sync)
        {
            _masks.Mask(_state).CopyTo(words);
            accepts = _grammar.Accepts(_state);
        }
        if (accepts)
            foreach (int id in _vocabulary.EndIds) words[id >> 6] |= 1UL << (id & 63);
    }

    /// <summary>Advances by a token; false (nothing changes) when the grammar does not allow it here. An end token is
    /// allowed when the output is a whole match.</summary>
    public bool Accept(int token)
    {
        if ((uint)token >= (uint)_vocabulary.Count) return false;
        if (_vocabulary.IsEnd(token)) return IsAccepting;
        return AcceptBytes(_vocabulary.TokenBytes(token));
    }

    /// <summary>Advances by raw bytes (text a lazy grammar starts from); false, with nothing changed, when they do not fit.</summary>
    public bool AcceptBytes(ReadOnlySpan<byte> bytes)
    {
        lock (_grammar.Sync)
        {
            int s = _grammar.Run(_state, bytes);
            if (s == Grammar.Dead) return false;
            _state = s;
            return true;
        }
    }

    /// <summary>Whether these bytes could be accepted now (nothing changes).</summary>
    public bool WouldAccept(ReadOnlySpan<byte> bytes)
    {
        lock (_grammar.Sync) return _grammar.Run(_state, bytes) != Grammar.Dead;
    }

    /// <summary>Back to the start of the grammar.</summary>
    public void Reset() => _state = Grammar.Start;

    /// <summary>Masks computed so far for this grammar and vocabulary (the rest were cache hits).</summary>
    public int MasksComputed { get { lock (_grammar.Sync) return _masks.Computed; } }
}
