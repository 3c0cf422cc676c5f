namespace Hone.Formats;

/// <summary>Where a dataset named by a user is, the same for every command: a file as given, or a folder holding
/// exactly one data file of the accepted kinds (a downloaded dataset repository). A folder with several is an error
/// listing them, as is one with none.</summary>
public static class DataPath
{
    /// <summary>The record files a dataset folder is searched for: JSONL, a JSON array, CSV. (Plain text is named as a
    /// file: a folder's .txt and .md files are mostly its README and LICENSE.)</summary>
    public static readonly IReadOnlyList<string> RecordExtensions = [".jsonl", ".json", ".csv"];

    /// <param name="extensions">the kinds a folder may hold (with the dot)</param>
    public static string Resolve(string path, IReadOnlyList<string> extensions)
    {
        if (File.Exists(path)) return path;
        if (!Directory.Exists(path)) throw new FileNotFoundException($"{path}: no such file or folder", path);
        var candidates = Directory.GetFiles(path)
            .Where(f => extensions.Any(e => f.EndsWith(e, StringComparison.OrdinalIgnoreCase)))
            .Order(StringComparer.Ordinal).ToList();
        return candidates.Count switch
        {
            1 => candidates[0],
            0 => throw new DataFormatException(path, 0, $"the folder holds no data file ({string.Join(", ", extensions)})"),
            _ => throw new DataFormatException(path, 0, $"the folder holds {candidates.Count} data files; name one: {string.Join(", ", candidates.Select(Path.GetFileName))}"),
        };
    }
}
