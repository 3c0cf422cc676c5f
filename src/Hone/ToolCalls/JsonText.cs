using System.Text.Json;

namespace Hone.ToolCalls;

/// <summary>How far a read of model output got: a whole piece, not yet all of it (more text may complete it), or not
/// what it must be (no more text can make it so).</summary>
internal enum ReadStatus { Complete, Incomplete, Invalid }

/// <summary>Finds where a JSON object or array written by a model ends, without trusting it to end.</summary>
internal static class JsonText
{
    public static bool IsSpace(char c) => c is ' ' or '\n' or '\r' or '\t';

    public static int SkipSpace(string text, int i)
    {
        while (i < text.Length && IsSpace(text[i])) i++;
        return i;
    }

    /// <summary>The end (exclusive) of the object or array that starts at <paramref name="start"/>: brackets are matched
    /// outside strings, then the whole is checked by System.Text.Json.</summary>
    public static (ReadStatus Status, int End) ContainerEnd(string text, int start)
    {
        if (start >= text.Length) return (ReadStatus.Incomplete, start);
        if (text[start] is not ('{' or '[')) return (ReadStatus.Invalid, start);
        Span<char> stack = stackalloc char[64];
        int depth = 0;
        bool inString = false;
        for (int i = start; i < text.Length; i++)
        {
            char c = text[i];
            if (inString)
            {
                if (c == '\\') i++;
                else if (c == '"') inString = false;
                else if (c < ' ') return (ReadStatus.Invalid, i);
                continue;
            }
            switch (c)
            {
                case '"': inString = true; break;
                case '{' or '[':
                    if (depth == stack.Length) return (ReadStatus.Invalid, i); // deeper than any call's arguments need
                    stack[depth++] = c == '{' ? '}' : ']';
                    break;
                case '}' or ']':
                    if (stack[--depth] != c) return (ReadStatus.Invalid, i);
                    if (depth == 0)
                    {
                        try
                        {
                            using var _ = JsonDocument.Parse(text.AsMemory(start, i + 1 - start));
                            return (ReadStatus.Complete, i + 1);
                        }
                        catch (JsonException) { return (ReadStatus.Invalid, i + 1); }
                    }
                    break;
            }
        }
        return (ReadStatus.Incomplete, text.Length);
    }

    /// <summary>Arguments as JSON text: an object's raw text, or the content of a string that holds a JSON object
    /// (some models write arguments as OpenAI transmits them); null for anything else.</summary>
    public static string? ArgumentsText(JsonElement arguments)
    {
        if (arguments.ValueKind == JsonValueKind.Object) return arguments.GetRawText();
        if (arguments.ValueKind != JsonValueKind.String) return null;
        var text = arguments.GetString()!;
        try
        {
            using var inner = JsonDocument.Parse(text);
            return inner.RootElement.ValueKind == JsonValueKind.Object ? text : null;
        }
        catch (JsonException) { return null; }
    }
}
