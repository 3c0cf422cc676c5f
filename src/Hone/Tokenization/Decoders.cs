using System.Buffers;
using System.Text;

namespace Hone.Tokenization;

/// <summary>The decoders we implement (Hugging Face names).</summary>
enum DecoderKind : byte
{
    /// <summary>Every character back to its byte through the GPT-2 alphabet, all tokens fused into one UTF-8 string.</summary>
    ByteLevel,
    /// <summary><c>&lt;0xNN&gt;</c> tokens back to bytes; a run of them that is not valid UTF-8 becomes one U+FFFD per byte.</summary>
    ByteFallback,
    /// <summary>All tokens into one.</summary>
    Fuse,
    /// <summary>Up to <c>Start</c> leading and <c>Stop</c> trailing copies of a character off every token.</summary>
    Strip,
    /// <summary>A literal string replaced in every token.</summary>
    Replace,
    /// <summary>The replacement character back to a space, dropped in the first token unless the prepend scheme is never.</summary>
    Metaspace,
}

readonly record struct DecoderStep(DecoderKind Kind, string A = "", string B = "", int Start = 0, int Stop = 0,
    PrependScheme Scheme = PrependScheme.Always)
{
    public static readonly DecoderStep[] SentencePieceChain =
    [
        new(DecoderKind.Replace, "\u2581", " "), new(DecoderKind.ByteFallback), new(DecoderKind.Fuse), new(DecoderKind.Strip, " ", Start: 1),
    ];

    /// <summary>Runs the chain over token strings as Hugging Face's decoders do and joins the result.
    /// <paramref name="incompleteTail"/> says the text ends in a UTF-8 sequence cut short by the last token, which more
    /// tokens may complete (its bytes show as U+FFFD for now).</summary>
    public static string Run(IReadOnlyList<DecoderStep> chain, List<string> tokens, out bool incompleteTail)
    {
        incompleteTail = false;
        foreach (var step in chain)
        {
            switch (step.Kind)
            {
                case DecoderKind.ByteLevel:
                    tokens = [ByteLevel(tokens, out bool cut)];
                    incompleteTail = cut;
                    break;
                case DecoderKind.ByteFallback:
                    tokens = ByteFallback(tokens, out incompleteTail);
                    break;
                case DecoderKind.Fuse:
                    tokens = [string.Concat(tokens)];
                    break;
                case DecoderKind.Strip:
                    for (int i = 0; i < tokens.Count; i++) tokens[i] = Strip(tokens[i], step.A[0], step.Start, step.Stop);
                    break;
                case DecoderKind.Replace:
                    for (int i = 0; i < tokens.Count; i++) tokens[i] = tokens[i].Replace(step.A, step.B, StringComparison.Ordinal);
                    break;
                case DecoderKind.Metaspace:
                    for (int i = 0; i < tokens.Count; i++)
                        tokens[i] = i == 0 && step.Scheme != PrependScheme.Never
                            ? tokens[i].Replace(step.A, "", StringComparison.Ordinal)
                            : tokens[i].Replace(step.A, " ", StringComparison.Ordinal);
                    break;
            }
        }
        return string.Concat(tokens);
    }

    /// <summary>The bytes one token adds to the text in the middle of a sequence: the chain applied to the piece alone,
    /// without what only the start of a text gets (a stripped or dropped leading space). Null for a chain Hone cannot
    /// decode piece by piece (none: pieces are joined with spaces).</summary>
    public static byte[] PieceBytes(IReadOnlyList<DecoderStep> chain, string piece)
    {
        string text = piece;
        foreach (var step in chain)
        {
            switch (step.Kind)
            {
                case DecoderKind.ByteLevel:
                    bool mapped = true;
                    foreach (char c in text) mapped &= ByteLevelAlphabet.ByteOf(c) >= 0;
                    if (!mapped) return Encoding.UTF8.GetBytes(text);
                    var bytes = new byte[text.Length];
                    for (int i = 0; i < text.Length; i++) bytes[i] = (byte)ByteLevelAlphabet.ByteOf(text[i]);
                    return bytes;
                case DecoderKind.ByteFallback:
                    if (Vocabulary.IsByteTokenText(text)) return [Convert.ToByte(text.Substring(3, 2), 16)];
                    break;
                case DecoderKind.Replace:
                    text = text.Replace(step.A, step.B, StringComparison.Ordinal);
                    break;
                case DecoderKind.Metaspace:
                    text = text.Replace(step.A, " ", StringComparison.Ordinal);
                    break;
            }
        }
        return Encoding.UTF8.GetBytes(text);
    }

    static string ByteLevel(List<string> tokens, out bool incompleteTail)
    {
        var bytes = new ArrayBufferWriter<byte>();
        Span<byte> buffer = stackalloc byte[4];
        foreach (var token in tokens)
        {
            bool mapped = true;
            foreach (char c in token) mapped &= ByteLevelAlphabet.ByteOf(c) >= 0;
            if (mapped)
            {
                var span = bytes.GetSpan(token.Length);
                for (int i = 0; i < token.Length; i++) span[i] = (byte)ByteLevelAlphabet.ByteOf(token[i]);
                bytes.Advance(token.Length);
            }
            else
            {
                // A token outside the alphabet (an added token such as "<|日本|>") is kept as its own UTF-8.
                bytes.Write(Encoding.UTF8.GetBytes(token));
            }
        }
        incompleteTail = EndsIncomplete(bytes.WrittenSpan);
        return Encoding.UTF8.GetString(bytes.WrittenSpan); // invalid sequences → U+FFFD per maximal subpart, as Rust's from_utf8_lossy
    }

    static List<string> ByteFallback(List<string> tokens, out bool incompleteTail)
    {
        var result = new List<string>(tokens.Count);
        var run = new List<byte>();
        incompleteTail = false;
        void Flush(bool atEnd, ref bool incomplete)
        {
            if (run.Count == 0) return;
            var bytes = run.ToArray();
            if (IsValidUtf8(bytes)) result.Add(Encoding.UTF8.GetString(bytes));
            else
            {
                for (int i = 0; i < bytes.Length; i++) result.Add("\uFFFD");
                if (atEnd && IsValidUtf8UpToCutTail(bytes)) incomplete = true;
            }
            run.Clear();
        }
        foreach (var token in tokens)
        {
            if (Vocabulary.IsByteTokenText(token)) { run.Add(Convert.ToByte(token.Substring(3, 2), 16)); continue; }
            Flush(false, ref incompleteTail);
            result.Add(token);
        }
        Flush(true, ref incompleteTail);
        return result;
    }

    static string Strip(string token, char content, int start, int stop)
    {
        int from = 0, to = token.Length;
        while (from < start && from < to && token[from] == content) from++;
        for (int i = 0; i < stop && to > from && token[to - 1] == content; i++) to--;
        return token[from..to];
    }

    static bool IsValidUtf8(ReadOnlySpan<byte> bytes) => System.Text.Unicode.Utf8.IsValid(bytes);

    /// <summary>The bytes are valid UTF-8 except that the last sequence is cut short.</summary>
    static bool IsValidUtf8UpToCutTail(ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            var status = Rune.DecodeFromUtf8(bytes, out _, out int consumed);
            if (status == System.Buffers.OperationStatus.NeedMoreData) return true;
            if (status != System.Buffers.OperationStatus.Done) return false;
            bytes = bytes[consumed..];
        }
        return false;
    }

    /// <summary>The last UTF-8 sequence is cut short (whatever comes before it).</summary>
    static bool EndsIncomplete(ReadOnlySpan<byte> bytes)
    {
        // A sequence is at most 4 bytes: look at the last lead byte within the final 3.
        for (int back = 1; back <= Math.Min(3, bytes.Length); back++)
        {
            byte b = bytes[^back];
            if ((b & 0xC0) == 0x80) continue; // continuation byte
            return Rune.DecodeFromUtf8(bytes[^back..], out _, out _) == System.Buffers.OperationStatus.NeedMoreData;
        }
        return false;
    }
}
