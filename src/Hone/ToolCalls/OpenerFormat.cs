namespace Hone.ToolCalls;

/// <summary>
/// A family whose calls start with an opener anywhere in the turn (Hermes' <c>&lt;tool_call&gt;</c>, Mistral's
/// <c>[TOOL_CALLS]</c>): text before, between and after calls is content; whitespace beside a call is dropped (templates
/// put a newline there); an opener not followed by well-formed calls is content.
/// </summary>
internal abstract class OpenerFormat : ToolCallFormat
{
    protected abstract string Opener { get; }

    public override IReadOnlyList<string> Triggers => [Opener];

    /// <summary>Reads the calls after the opener, from <paramref name="start"/>; End is where they end.</summary>
    protected abstract (ReadStatus Status, int End, IReadOnlyList<RawCall> Calls) ReadCalls(string text, int start, bool final);

    internal override Piece? Next(string text, int position, ScanState state, bool final)
    {
        int j = JsonText.SkipSpace(text, position);
        if (string.CompareOrdinal(text, j, Opener, 0, Opener.Length) == 0 && j + Opener.Length <= text.Length)
        {
            var (status, end, calls) = ReadCalls(text, j + Opener.Length, final);
            if (status == ReadStatus.Complete) return new Piece(end, null, calls);
            if (status == ReadStatus.Incomplete && !final) return null;
            int after = j + Opener.Length; // not a call: the opener is text, and reading goes on after it
            return new Piece(after, text[(state.AfterCall ? j : position)..after], null);
        }
        if (j == text.Length)
        {
            if (!final || j == position) return null; // whitespace may yet precede an opener
            return new Piece(j, state.AfterCall ? null : text[position..j], null);
        }
        if (!final && IsOpenerStartAtEnd(text, j)) return null;
        int start = state.AfterCall ? j : position;
        int next = text.IndexOf(Opener, j + 1, StringComparison.Ordinal);
        int limit = next >= 0 ? next : final ? text.Length : text.Length - OpenerPrefixAtEnd(text, j + 1);
        if (next >= 0 || !final)
            while (limit > j + 1 && JsonText.IsSpace(text[limit - 1])) limit--; // dropped if a call follows, so it waits
        return new Piece(limit, text[start..limit], null);
    }

    bool IsOpenerStartAtEnd(string text, int j) =>
        text.Length - j < Opener.Length && string.CompareOrdinal(text, j, Opener, 0, text.Length - j) == 0;

    /// <summary>The length of the longest end of <paramref name="text"/> (from <paramref name="from"/>) that begins the opener.</summary>
    int OpenerPrefixAtEnd(string text, int from)
    {
        for (int length = Math.Min(Opener.Length - 1, text.Length - from); length > 0; length--)
            if (string.CompareOrdinal(text, text.Length - length, Opener, 0, length) == 0) return length;
        return 0;
    }
}
