using System.Text.Json;
using System.Text.Json.Nodes;

namespace Hone.Formats;

/// <summary>Checks and messages shared by everything that reads one JSON record per line.</summary>
public static class JsonLines
{
    /// <summary>Duplicate keys are an error (Python's json would keep the last silently, a dictionary would throw a
    /// message naming nothing).</summary>
    public static readonly JsonDocumentOptions DocumentOptions = new() { AllowDuplicateProperties = false };

    /// <summary>Null when <paramref name="line"/> is valid UTF-8, else "invalid UTF-8 at byte N" (1-based).</summary>
    public static string? InvalidUtf8(ReadOnlySpan<byte> line) =>
        StrictJson.FirstInvalidUtf8(line) is int at and >= 0 ? $"invalid UTF-8 at byte {at + 1}" : null;

    /// <summary>Parse one record's bytes; invalid UTF-8, invalid JSON and duplicate keys come back as an error message
    /// (without file or line: the caller adds them).</summary>
    public static JsonNode? Parse(ReadOnlySpan<byte> line, out string? error)
    {
        error = InvalidUtf8(line);
        if (error != null) return null;
        try { return JsonNode.Parse(line, documentOptions: DocumentOptions); }
        catch (JsonException e) { error = "not valid JSON: " + Message(e); return null; }
    }

    /// <summary>System.Text.Json's message without its "LineNumber: 0 | BytePositionInLine: N." tail, with the
    /// position as a 1-based byte column instead.</summary>
    public static string Message(JsonException e)
    {
        string m = e.Message;
        int tail = m.IndexOf(" LineNumber:", StringComparison.Ordinal);
        if (tail >= 0) m = m[..tail];
        return e.BytePositionInLine is long p ? $"{m.TrimEnd('.')} (byte {p + 1})" : m;
    }
}
