namespace Hone.Tokenization;

/// <summary>
/// Turns ids into text one id at a time, as they are generated. Text is emitted only when it is final: never half a
/// UTF-8 character (byte tokens are held until their character is complete), and with SentencePiece's leading space
/// handled as a whole decode handles it (the first word loses its space, later words keep theirs). The concatenation
/// of everything emitted equals <see cref="Tokenizer.Decode(ReadOnlySpan{int}, bool, bool)"/> of all the ids, except
/// where a byte-fallback run turns out not to be UTF-8 after a valid character was already emitted from it (Hugging
/// Face then replaces the whole run; we can only replace what follows).
/// </summary>
/// <remarks>Works like Hugging Face's DecodeStream: it decodes a short window of recent ids and emits what the newest
/// id added to the window's text, so every decoder in the chain sees the context it needs.</remarks>
public sealed class StreamingDecoder
{
    readonly Tokenizer _tokenizer;
    readonly bool _skipSpecialTokens;
    readonly List<int> _window = new();
    string _prefix = ""; // decoded text of _window[.._prefixCount]
    int _prefixCount;

    internal StreamingDecoder(Tokenizer tokenizer, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
    }

    /// <summary>Adds one id; returns the text it completes (often empty while a character is still incomplete).</summary>
    public string Add(int id)
    {
        _window.Add(id);
        string text = _tokenizer.Decode(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_window), _skipSpecialTokens, out bool incomplete);
        if (incomplete || text.Length <= _prefix.Length) return "";
        string added = NewText(text);
        // Keep the ids decoded so far from the last emission as context; they are the new prefix.
        _window.RemoveRange(0, _prefixCount);
        _prefixCount = _window.Count;
        _prefix = _tokenizer.Decode(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_window), _skipSpecialTokens, out _);
        return added;
    }

    /// <summary>Emits whatever is held back (an unfinished character comes out as U+FFFD) and starts over.</summary>
    public string Flush()
    {
        string text = _tokenizer.Decode(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_window), _skipSpecialTokens, out _);
        string rest = text.Length > _prefix.Length ? NewText(text) : "";
        Reset();
        return rest;
    }

    /// <summary>Forgets everything, for a new sequence.</summary>
    public void Reset()
    {
        _window.Clear();
        _prefix = "";
        _prefixCount = 0;
    }

    string NewText(string text)
    {
        if (text.StartsWith(_prefix, StringComparison.Ordinal)) return text[_prefix.Length..];
        // Earlier text changed (an invalid byte run replaced as a whole): emit what follows the common part.
        int common = 0;
        while (common < _prefix.Length && common < text.Length && text[common] == _prefix[common]) common++;
        return text[Math.Max(common, Math.Min(_prefix.Length, text.Length))..];
    }
}
