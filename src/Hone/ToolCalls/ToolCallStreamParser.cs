namespace Hone.ToolCalls;

/// <summary>
/// Parses an assistant turn while it is generated: <see cref="Feed"/> each piece of text, then <see cref="Finish"/>.
/// Content is passed on as soon as no later text can make it part of a call; text that could still be the start of a
/// call opener (and whitespace that is dropped when a call follows) is held back. Each call is passed on whole once it
/// is closed and well-formed (its first delta with index, id and name, then its arguments), so a call that turns out
/// malformed is never half-sent: it goes out as content. The deltas, concatenated, are exactly <see cref="ToolCallFormat.Parse"/>
/// of the whole text.
/// </summary>
public sealed class ToolCallStreamParser
{
    readonly ToolCallFormat format;
    readonly Random random;
    string pending = "";
    ScanState state = new(AtTurnStart: true, AfterCall: false);
    int callCount;
    bool finished;

    internal ToolCallStreamParser(ToolCallFormat format, Random random)
    {
        this.format = format;
        this.random = random;
    }

    /// <summary>The deltas that <paramref name="text"/> (the next generated piece) settles; often none.</summary>
    public IReadOnlyList<ToolCallStreamDelta> Feed(string text)
    {
        if (finished) throw new InvalidOperationException("the turn is finished");
        pending += text;
        return Scan(final: false);
    }

    /// <summary>The end of the turn: everything held back, as content or calls.</summary>
    public IReadOnlyList<ToolCallStreamDelta> Finish()
    {
        if (finished) throw new InvalidOperationException("the turn is finished");
        var deltas = Scan(final: true);
        finished = true;
        return deltas;
    }

    List<ToolCallStreamDelta> Scan(bool final)
    {
        var deltas = new List<ToolCallStreamDelta>();
        int position = 0;
        while (format.Next(pending, position, state, final) is { } piece)
        {
            if (piece.End <= position) throw new InvalidOperationException($"{format.Name} scanner did not advance at {position}");
            if (piece.Content is { Length: > 0 } content) deltas.Add(new ToolCallStreamDelta(content, null));
            foreach (var call in piece.Calls ?? [])
            {
                int index = callCount++;
                deltas.Add(new ToolCallStreamDelta(null, new ToolCallDelta(index, format.ResolveId(call.Id, random), call.Name, "")));
                deltas.Add(new ToolCallStreamDelta(null, new ToolCallDelta(index, null, null, call.Arguments)));
            }
            state = new ScanState(AtTurnStart: false, AfterCall: piece.Calls is { Count: > 0 } || (piece.Content == null && state.AfterCall));
            position = piece.End;
        }
        pending = pending[position..];
        return deltas;
    }
}
