namespace Hone.Formats;

/// <summary>
/// A structured configuration file (mergekit's YAML configs: mappings, lists of mappings, scalars) as a syntax-free
/// tree with the 1-based line of every node, read by a reader of its syntax (YAML in Hone.Recipes). Binding it to an
/// options record — its keys, their meaning and the errors — is the options' business; the helpers here give those
/// errors the file and line.
/// </summary>
public sealed class ConfigNode
{
    public string Path { get; }
    public int Line { get; }
    /// <summary>A scalar's text (null for YAML null); null for a mapping or list.</summary>
    public string? Scalar { get; }
    public bool IsNull { get; }
    public IReadOnlyList<ConfigNode>? Items { get; }
    public IReadOnlyList<(string Key, ConfigNode Value)>? Entries { get; }

    ConfigNode(string path, int line, string? scalar, bool isNull, IReadOnlyList<ConfigNode>? items, IReadOnlyList<(string, ConfigNode)>? entries)
    {
        Path = path; Line = line; Scalar = scalar; IsNull = isNull; Items = items; Entries = entries;
    }

    public static ConfigNode OfScalar(string path, int line, string? text) => new(path, line, text, text == null, null, null);
    public static ConfigNode OfList(string path, int line, IReadOnlyList<ConfigNode> items) => new(path, line, null, false, items, null);
    public static ConfigNode OfMapping(string path, int line, IReadOnlyList<(string, ConfigNode)> entries) => new(path, line, null, false, null, entries);

    public DataFormatException Error(string message) => new(Path, Line, message);

    /// <summary>This mapping's entries, after checking every key is one of <paramref name="known"/> (a misspelt key
    /// would otherwise be ignored silently).</summary>
    public IReadOnlyDictionary<string, ConfigNode> Mapping(string what, IReadOnlyCollection<string> known)
    {
        if (Entries == null) throw Error($"{what} must be a mapping (key: value lines)");
        var result = new Dictionary<string, ConfigNode>(StringComparer.Ordinal);
        foreach (var (key, value) in Entries)
        {
            if (!known.Contains(key))
                throw value.Error($"{what}: unknown key '{key}'{Spelling.Suggestion(key, known)}; known: {string.Join(", ", known)}");
            result[key] = value;
        }
        return result;
    }

    public string Text(string key)
    {
        if (Scalar == null || Items != null || Entries != null) throw Error($"{key} must be a single value");
        return Scalar;
    }

    public IReadOnlyList<ConfigNode> List(string key)
    {
        if (IsNull) return [];
        if (Items == null) throw Error($"{key} must be a list");
        return Items;
    }

    public IReadOnlyList<string> TextList(string key) => List(key).Select(i => i.Text($"an item of {key}")).ToList();

    public double Number(string key) =>
        double.TryParse(Text(key), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double v) && double.IsFinite(v)
            ? v : throw Error($"{key} must be a number, not '{Scalar}'");

    public int Integer(string key) =>
        int.TryParse(Text(key), System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int v)
            ? v : throw Error($"{key} must be a whole number, not '{Scalar}'");
}
