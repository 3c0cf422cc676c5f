namespace Hone.Formats;

/// <summary>A record that cannot be used, with where it is.</summary>
public sealed class DataFormatException(string file, long line, string message)
    : Exception($"{file}:{line}: {message}")
{
    public string File { get; } = file;
    public long Line { get; } = line;
}
