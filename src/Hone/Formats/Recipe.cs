namespace Hone.Formats;

/// <summary>One setting of a recipe file: its key (nested keys joined with '_'), a scalar (null for YAML null) or a
/// list of scalars, and the 1-based line it is on.</summary>
public sealed record RecipeEntry(string Key, string? Text, IReadOnlyList<string>? List, int Line)
{
    public bool IsNull => Text == null && List == null;
    public override string ToString() => List != null ? $"[{string.Join(", ", List)}]" : Text ?? "null";
}

/// <summary>A recipe file as read by a reader of its syntax (YAML in Hone.Recipes): entries in file order. Binding them
/// to an options record, with its keys, limits and error messages, is the options' own business.</summary>
public sealed record Recipe(string Path, IReadOnlyList<RecipeEntry> Entries)
{
    /// <summary>An error in this recipe at a line: "path:line: message".</summary>
    public DataFormatException Error(int line, string message) => new(Path, line, message);
}
