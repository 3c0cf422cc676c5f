using System.Text;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;

namespace Hone.Formats;

/// <summary>
/// Reads a recipe file written in YAML (YamlDotNet's parser): one document whose top level maps keys to scalars,
/// lists of scalars, or nested mappings, with comments anywhere. A nested key joins its parents with '_'
/// (<c>lora: {r: 8}</c> is <c>lora_r: 8</c>). Plain <c>null</c>, <c>~</c> and an empty value are null. Anything else
/// (a list of mappings, an alias, several documents, a key given twice) is an error naming the file and line.
/// </summary>
public static class YamlRecipe
{
    /// <summary>Recipes are short text files; a larger file is not one.</summary>
    public const long MaxBytes = 1 << 20;

    public static Recipe Read(string path)
    {
        if (Directory.Exists(path)) throw new DataFormatException(path, 0, "a recipe is a YAML file, not a folder");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: recipe file not found", path);
        long length = new FileInfo(path).Length;
        if (length > MaxBytes) throw new DataFormatException(path, 0, $"{length:N0} bytes is not a recipe (at most {MaxBytes:N0})");
        string text;
        try { text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(File.ReadAllBytes(path)); }
        catch (DecoderFallbackException) { throw new DataFormatException(path, 0, "not UTF-8 text"); }
        return Parse(path, text);
    }

    /// <param name="path">names the recipe in errors</param>
    public static Recipe Parse(string path, string text)
    {
        var entries = new List<RecipeEntry>();
        var lines = new Dictionary<string, int>();
        try
        {
            var parser = new Parser(new StringReader(text));
            Next(parser);
            Expect<StreamStart>(parser, path);
            Next(parser);
            if (parser.Current is StreamEnd) return new Recipe(path, entries);
            Expect<DocumentStart>(parser, path);
            Next(parser);
            switch (parser.Current)
            {
                case MappingStart:
                    Next(parser);
                    ReadMapping(parser, path, "", entries, lines);
                    break;
                case Scalar s when s.Value.Length == 0 && s.Style == ScalarStyle.Plain:
                    Next(parser);
                    break;  // an empty document (only comments)
                case var e:
                    throw new DataFormatException(path, Line(e!), "a recipe maps keys to values (key: value lines)");
            }
            Expect<DocumentEnd>(parser, path);
            Next(parser);
            if (parser.Current is not StreamEnd) throw new DataFormatException(path, Line(parser.Current!), "a recipe holds one YAML document");
        }
        catch (YamlException e)
        {
            throw new DataFormatException(path, (int)e.Start.Line, e.Message);
        }
        return new Recipe(path, entries);
    }

    /// <summary>Entries of a mapping whose MappingStart was consumed, through its MappingEnd.</summary>
    static void ReadMapping(IParser parser, string path, string prefix, List<RecipeEntry> entries, Dictionary<string, int> lines)
    {
        while (parser.Current is not MappingEnd)
        {
            if (parser.Current is not Scalar key || key.Value.Length == 0)
                throw new DataFormatException(path, Line(parser.Current!), "a key must be a plain name");
            string name = prefix.Length == 0 ? key.Value : prefix + "_" + key.Value;
            int line = Line(key);
            Next(parser);
            switch (parser.Current)
            {
                case Scalar value:
                    Add(path, entries, lines, new RecipeEntry(name, IsNull(value) ? null : value.Value, null, line));
                    Next(parser);
                    break;
                case SequenceStart:
                    Next(parser);
                    var items = new List<string>();
                    while (parser.Current is not SequenceEnd)
                    {
                        if (parser.Current is not Scalar item || IsNull(item))
                            throw new DataFormatException(path, Line(parser.Current!), $"{name}: a list item must be a single value");
                        items.Add(item.Value);
                        Next(parser);
                    }
                    Add(path, entries, lines, new RecipeEntry(name, null, items, line));
                    Next(parser);
                    break;
                case MappingStart:
                    Next(parser);
                    ReadMapping(parser, path, name, entries, lines);
                    break;
                case AnchorAlias alias:
                    throw new DataFormatException(path, Line(alias), $"{name}: aliases (*{alias.Value}) are not supported in recipes");
                case var e:
                    throw new DataFormatException(path, Line(e!), $"{name}: unexpected {e!.GetType().Name}");
            }
        }
        Next(parser);
    }

    static void Add(string path, List<RecipeEntry> entries, Dictionary<string, int> lines, RecipeEntry entry)
    {
        if (lines.TryGetValue(entry.Key, out int first))
            throw new DataFormatException(path, entry.Line, $"'{entry.Key}' is given twice (first on line {first})");
        lines[entry.Key] = entry.Line;
        entries.Add(entry);
    }

    static bool IsNull(Scalar s) => s.Style == ScalarStyle.Plain && s.Value is "" or "~" or "null" or "Null" or "NULL";

    static int Line(ParsingEvent e) => (int)e.Start.Line;

    static void Next(IParser parser)
    {
        if (!parser.MoveNext()) throw new InvalidOperationException("the YAML parser ended before the stream did");
    }

    static void Expect<T>(IParser parser, string path) where T : ParsingEvent
    {
        if (parser.Current is not T)
            throw new DataFormatException(path, parser.Current is { } e ? Line(e) : 0, $"unexpected {parser.Current?.GetType().Name ?? "end"} where {typeof(T).Name} belongs");
    }
}

/// <summary>
/// Reads a structured configuration file written in YAML (mergekit's configs) into a <see cref="ConfigNode"/> tree with
/// each node's line: mappings, lists (of scalars or mappings) and scalars. Aliases, several documents and a key given
/// twice are errors naming the file and line.
/// </summary>
public static class YamlConfigTree
{
    public static ConfigNode Read(string path)
    {
        if (Directory.Exists(path)) throw new DataFormatException(path, 0, "a configuration is a YAML file, not a folder");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: configuration file not found", path);
        long length = new FileInfo(path).Length;
        if (length > YamlRecipe.MaxBytes) throw new DataFormatException(path, 0, $"{length:N0} bytes is not a configuration (at most {YamlRecipe.MaxBytes:N0})");
        string text;
        try { text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(File.ReadAllBytes(path)); }
        catch (DecoderFallbackException) { throw new DataFormatException(path, 0, "not UTF-8 text"); }
        return Parse(path, text);
    }

    public static ConfigNode Parse(string path, string text)
    {
        try
        {
            var parser = new Parser(new StringReader(text));
            Next(parser);
            if (parser.Current is not StreamStart) throw new DataFormatException(path, 0, "not a YAML stream");
            Next(parser);
            if (parser.Current is StreamEnd) return ConfigNode.OfMapping(path, 1, []);
            if (parser.Current is not DocumentStart) throw new DataFormatException(path, Line(parser.Current!), "a YAML document was expected");
            Next(parser);
            var root = ReadNode(parser, path, 0);
            if (parser.Current is not DocumentEnd) throw new DataFormatException(path, Line(parser.Current!), "unexpected content after the document");
            Next(parser);
            if (parser.Current is not StreamEnd) throw new DataFormatException(path, Line(parser.Current!), "a configuration holds one YAML document");
            return root;
        }
        catch (YamlException e)
        {
            throw new DataFormatException(path, (int)e.Start.Line, e.Message);
        }
    }

    const int MaxDepth = 32;

    static ConfigNode ReadNode(IParser parser, string path, int depth)
    {
        if (depth > MaxDepth) throw new DataFormatException(path, Line(parser.Current!), $"nested more than {MaxDepth} levels deep");
        var start = parser.Current!;
        switch (start)
        {
            case Scalar s:
                Next(parser);
                bool isNull = s.Style == ScalarStyle.Plain && s.Value is "" or "~" or "null" or "Null" or "NULL";
                return ConfigNode.OfScalar(path, Line(s), isNull ? null : s.Value);
            case SequenceStart:
            {
                Next(parser);
                var items = new List<ConfigNode>();
                while (parser.Current is not SequenceEnd) items.Add(ReadNode(parser, path, depth + 1));
                Next(parser);
                return ConfigNode.OfList(path, Line(start), items);
            }
            case MappingStart:
            {
                Next(parser);
                var entries = new List<(string, ConfigNode)>();
                var seen = new Dictionary<string, int>(StringComparer.Ordinal);
                while (parser.Current is not MappingEnd)
                {
                    if (parser.Current is not Scalar key || key.Value.Length == 0)
                        throw new DataFormatException(path, Line(parser.Current!), "a key must be a plain name");
                    if (seen.TryGetValue(key.Value, out int first))
                        throw new DataFormatException(path, Line(key), $"'{key.Value}' is given twice (first on line {first})");
                    seen[key.Value] = Line(key);
                    Next(parser);
                    entries.Add((key.Value, ReadNode(parser, path, depth + 1)));
                }
                Next(parser);
                return ConfigNode.OfMapping(path, Line(start), entries);
            }
            case AnchorAlias alias:
                throw new DataFormatException(path, Line(alias), $"aliases (*{alias.Value}) are not supported");
            default:
                throw new DataFormatException(path, Line(start), $"unexpected {start.GetType().Name}");
        }
    }

    static void Next(IParser parser)
    {
        if (!parser.MoveNext()) throw new InvalidOperationException("the YAML parser ended before the stream did");
    }

    static int Line(ParsingEvent e) => (int)e.Start.Line;
}
