namespace Hone.ToolCalls;

/// <summary>One call the model made, as OpenAI returns it: an id (never empty), the function's name, and its arguments
/// as JSON text exactly as the model wrote them.</summary>
public sealed record ToolCall(string Id, string Name, string Arguments);

/// <summary>An assistant turn parsed back: its text (null when the turn is only tool calls) and its calls in order.</summary>
public sealed record ParsedTurn(string? Content, IReadOnlyList<ToolCall> Calls);

/// <summary>A piece of a streamed turn, shaped as OpenAI's chunk deltas: text, or part of a call. A call arrives as a first
/// delta with its index, id and name (arguments empty), then argument fragments with the index only.</summary>
public sealed record ToolCallStreamDelta(string? Content, ToolCallDelta? Call);

/// <summary>Part of a streamed call: <see cref="Id"/> and <see cref="Name"/> on its first delta only.</summary>
public sealed record ToolCallDelta(int Index, string? Id, string? Name, string Arguments);

/// <summary>Call ids for calls whose template carries none (OpenAI style) or whose id the model got wrong.</summary>
public static class ToolCallIds
{
    const string Alphanumerics = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    /// <summary><c>call_</c> and 24 random letters and digits, as OpenAI's ids look.</summary>
    public static string NewOpenAiId(Random random) => "call_" + Random(random, 24);

    /// <summary>9 random letters and digits, as Mistral's template demands.</summary>
    public static string NewNineCharacterId(Random random) => Random(random, 9);

    public static bool IsNineAlphanumerics(string? id) => id is { Length: 9 } && id.All(char.IsAsciiLetterOrDigit);

    static string Random(Random random, int length)
    {
        Span<char> chars = stackalloc char[length];
        for (int i = 0; i < length; i++) chars[i] = Alphanumerics[random.Next(Alphanumerics.Length)];
        return new string(chars);
    }
}
