using System.Text;

namespace Hone.Grammars;

/// <summary>What a sequence's output must match.</summary>
/// <param name="Grammar">the grammar</param>
/// <param name="Triggers">null: the grammar holds from the first token. Otherwise it is lazy: generation is free
/// until one of these texts appears in the output, and from the start of that text on the output must match the
/// grammar (whose root therefore begins with the trigger), as llama.cpp's lazy grammars do for tool calls.</param>
/// <param name="TriggerAtStartOnly">a trigger counts only at the start of the output (after leading whitespace), as
/// for templates whose tool-call turn is a bare JSON object: once the output starts otherwise, it stays free</param>
public sealed record GrammarSpec(Grammar Grammar, IReadOnlyList<string>? Triggers = null, bool TriggerAtStartOnly = false)
{
    public bool IsLazy => Triggers is { Count: > 0 };
}

/// <summary>
/// One sequence under a <see cref="GrammarSpec"/>: the token mask before each sample (none while a lazy grammar waits
/// for its trigger), and the token chosen after it. When the grammar is complete the sequence must end
/// (<see cref="IsComplete"/>); until then end tokens are only allowed where the grammar is satisfied.
/// </summary>
public sealed class GrammarConstraint
{
    readonly GrammarSpec _spec;
    readonly GrammarMatcher _matcher;
    readonly TokenVocabulary _vocabulary;
    readonly byte[][] _triggers;
    readonly int _longestTrigger;
    readonly List<byte> _output = new(); // free output so far, while waiting for a trigger
    bool _active;
    bool _missedStart;

    public GrammarConstraint(GrammarSpec spec, TokenVocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(spec);
        _spec = spec;
        _vocabulary = vocabulary;
        _matcher = new GrammarMatcher(spec.Grammar, vocabulary);
        _triggers = (spec.Triggers ?? []).Where(t => t.Length > 0).Select(Encoding.UTF8.GetBytes).ToArray();
        _longestTrigger = _triggers.Length == 0 ? 0 : _triggers.Max(t => t.Length);
        _active = _triggers.Length == 0;
    }

    public GrammarSpec Spec => _spec;

    /// <summary>The grammar holds now (always, unless lazy and not yet triggered).</summary>
    public bool IsActive => _active;

    /// <summary>The lazy grammar's trigger appeared but what followed it in the same token did not fit; the rest of the
    /// output is free (it will not parse as the grammar's structure).</summary>
    public bool Failed { get; private set; }

    /// <summary>The output matches the whole grammar and nothing can extend it: end the sequence now.</summary>
    public bool IsComplete => _active && _matcher.IsComplete;

    /// <summary>Writes the allowed tokens into <paramref name="words"/> and returns true, or returns false when the
    /// choice is free (a lazy grammar before its trigger).</summary>
    public bool TryFillAllowed(Span<ulong> words)
    {
        if (!_active) return false;
        _matcher.FillAllowed(words);
        return true;
    }

    /// <summary>Records the token chosen. Throws <see cref="GrammarException"/> when an active grammar does not allow
    /// it (a caller that sampled without the mask).</summary>
    public void Accept(int token)
    {
        if (_active)
        {
            if (!_matcher.Accept(token))
                throw new GrammarException($"token {token} does not fit the grammar here (it was sampled without the grammar's mask)");
            return;
        }
        if (Failed || _triggers.Length == 0 || _missedStart) return;
        var bytes = _vocabulary.TokenBytes(token);
        if (_spec.TriggerAtStartOnly)
        {
            _output.AddRange(bytes);
            var text = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_output);
            int lead = 0;
            while (lead < text.Length && text[lead] is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t') lead++;
            var rest = text[lead..];
            foreach (var trigger in _triggers)
                if (rest.Length >= trigger.Length && rest.StartsWith(trigger))
                {
                    if (_matcher.AcceptBytes(rest)) _active = true;
                    else Failed = true;
                    _output.Clear();
                    return;
                }
            // Still a possible start of a trigger? Otherwise the output has begun as free text for good.
            bool possible = false;
            foreach (var trigger in _triggers) possible |= trigger.AsSpan().StartsWith(rest);
            if (!possible) { _missedStart = true; _output.Clear(); }
            return;
        }
        int searchFrom = Math.Max(0, _output.Count - _longestTrigger + 1);
        _output.AddRange(bytes);
        var output = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_output);
        int at = -1;
        foreach (var trigger in _triggers)
        {
            int found = output[searchFrom..].IndexOf(trigger);
            if (found >= 0 && (at < 0 || searchFrom + found < at)) at = searchFrom + found;
        }
        if (at < 0) return;
        if (_matcher.AcceptBytes(output[at..])) _active = true;
        else Failed = true;
        _output.Clear();
    }
}
