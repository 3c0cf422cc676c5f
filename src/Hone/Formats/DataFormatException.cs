namespace Hone.Formats;

/// <summary>A record that cannot be used, with where it is; line 0 means the file as a whole (no line is named).</summary>
public sealed class DataFormatException(string file, long line, string message)
    : Exception(line > 0 ? $"{file}:{line}: {message}" : $"{file}: {message}")
{
    public string File { get; } = file;
    public long Line { get; } = line;
}
