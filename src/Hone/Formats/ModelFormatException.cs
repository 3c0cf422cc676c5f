namespace Hone.Formats;

/// <summary>A model, tokenizer or data file that cannot be used as it is. The message names the file and, where one
/// is involved, the tensor or key, and says what was expected and what was found.</summary>
public sealed class ModelFormatException : Exception
{
    public string File { get; }
    public string? Item { get; }

    public ModelFormatException(string file, string message, string? item = null, Exception? inner = null)
        : base(Compose(file, item, message), inner)
    {
        File = file;
        Item = item;
    }

    static string Compose(string file, string? item, string message) =>
        item == null ? $"{file}: {message}" : $"{file}: {item}: {message}";
}
