using System.Globalization;

namespace Hone.Formats;

public enum SettingKind { Text, Path, Integer, Unsigned, Real, Boolean, Choice, List }

/// <summary>
/// One setting of an options record, declared once: its recipe key, command-line flag and aliases, the name
/// LLaMA-Factory gives it, a description, its kind and limits, and where it lives in the record. Command-line options,
/// recipe keys, parsing and range checks are all derived from these; the record itself stays plain.
/// Values arrive as text (a flag's argument, a recipe scalar) or a list (a recipe list; a flag gives a comma list).
/// </summary>
public sealed class SettingSpec<TOptions> where TOptions : class
{
    public required string Key { get; init; }
    /// <summary>The command-line flag when it is not "--" + the key with dashes.</summary>
    public string? FlagName { get; init; }
    public string Flag => FlagName ?? "--" + Key.Replace('_', '-');
    public IReadOnlyList<string> FlagAliases { get; init; } = [];
    /// <summary>LLaMA-Factory's (or transformers') key for the same setting, when it has one with the same meaning.</summary>
    public string? LlamaFactoryKey { get; init; }
    /// <summary>LLaMA-Factory values that mean a Hone value ("pt" → "cpt", "all" → "all-linear"), applied to values
    /// given under <see cref="LlamaFactoryKey"/>.</summary>
    public IReadOnlyDictionary<string, string> LlamaFactoryValues { get; init; } = new Dictionary<string, string>();
    public required string Description { get; init; }
    public required SettingKind Kind { get; init; }
    /// <summary>Choice: the accepted values (compared without case, '-' and '_').</summary>
    public IReadOnlyList<string> Choices { get; init; } = [];
    /// <summary>Integer, Unsigned and Real: inclusive bounds unless the Exclusive flags say otherwise.</summary>
    public double Min { get; init; } = double.NegativeInfinity;
    public double Max { get; init; } = double.PositiveInfinity;
    public bool MinExclusive { get; init; }
    public bool MaxExclusive { get; init; }
    /// <summary>Why the bounds are what they are, shown with a range error ("the largest rank the kernels fuse").</summary>
    public string? LimitReason { get; init; }
    /// <summary>Whether null is a valid value (an optional path, an unset tri-state).</summary>
    public bool Nullable { get; init; }
    public required Func<TOptions, object?> Get { get; init; }
    public required Func<TOptions, object?, TOptions> Set { get; init; }

    /// <summary>The bounds as text: "1 to 256", "at least 0", "in (0, 1]".</summary>
    public string? RangeText => Limits.Text(Min, Max, MinExclusive, MaxExclusive);

    /// <summary>Read a value for this setting from text (a list from a comma list); errors say what was expected and
    /// found, without the setting's name (the caller adds the flag or the recipe line).</summary>
    public object? Parse(string? text) => Parse(text, null);

    public object? Parse(string? text, IReadOnlyList<string>? list)
    {
        if (list != null)
        {
            if (Kind != SettingKind.List) throw new FormatException($"expected a single value, found a list [{string.Join(", ", list)}]");
            var items = list.Select(i => i.Trim()).ToList();
            if (items.Any(i => i.Length == 0)) throw new FormatException("a list item is empty");
            return items;
        }
        if (text == null || (Nullable && text is "null" or "~"))
        {
            if (Nullable) return null;
            throw new FormatException($"a value is required ({Expected})");
        }
        text = text.Trim();
        switch (Kind)
        {
            case SettingKind.Text:
            case SettingKind.Path:
                if (text.Length == 0) throw new FormatException($"a value is required ({Expected})");
                return text;
            case SettingKind.Boolean:
                return text.ToLowerInvariant() switch
                {
                    "true" or "yes" or "on" or "1" => true,
                    "false" or "no" or "off" or "0" => false,
                    _ => throw new FormatException($"expected true or false, found '{text}'"),
                };
            case SettingKind.Integer:
                if (!long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l))
                    throw new FormatException($"expected a whole number, found '{text}'");
                CheckRange(l);
                return l;
            case SettingKind.Unsigned:
                if (!ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out ulong u))
                    throw new FormatException($"expected a whole number from 0 to {ulong.MaxValue}, found '{text}'");
                CheckRange(u);
                return u;
            case SettingKind.Real:
                if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) || !double.IsFinite(d))
                    throw new FormatException($"expected a finite number, found '{text}'");
                CheckRange(d);
                return d;
            case SettingKind.Choice:
                string key = Canonical(text);
                foreach (var c in Choices) if (Canonical(c) == key) return c;
                throw new FormatException($"expected one of {string.Join(", ", Choices)}, found '{text}'{Spelling.Suggestion(text, Choices)}");
            case SettingKind.List:
                var items = text.Split(',', StringSplitOptions.TrimEntries);
                if (items.Any(i => i.Length == 0)) throw new FormatException($"expected a comma-separated list, found '{text}'");
                return items.ToList();
            default: throw new InvalidOperationException(Kind.ToString());
        }
    }

    /// <summary>Check a value already in a record (one built in code, or after a recipe and flags were applied).</summary>
    public void Check(TOptions options)
    {
        object? value = Get(options);
        if (value == null) { if (!Nullable) throw new ArgumentException($"{Key} ({Flag}): a value is required"); return; }
        try
        {
            switch (value)
            {
                case string s when Kind == SettingKind.Choice && !Choices.Contains(s):
                    throw new FormatException($"expected one of {string.Join(", ", Choices)}, found '{s}'");
                case int i: CheckRange(i); break;
                case long l: CheckRange(l); break;
                case ulong u: CheckRange(u); break;
                case float f: if (!float.IsFinite(f)) throw new FormatException($"expected a finite number, found {f}"); CheckRange(f); break;
                case double d: if (!double.IsFinite(d)) throw new FormatException($"expected a finite number, found {d}"); CheckRange(d); break;
            }
        }
        catch (FormatException e) { throw new ArgumentException($"{Key} ({Flag}): {e.Message}"); }
    }

    void CheckRange(double value)
    {
        if (Limits.Violation(value, Min, Max, MinExclusive, MaxExclusive, LimitReason) is string message) throw new FormatException(message);
    }

    string Expected => Kind switch
    {
        SettingKind.Path => "a path",
        SettingKind.Choice => "one of " + string.Join(", ", Choices),
        SettingKind.List => "a list",
        _ => Kind.ToString().ToLowerInvariant(),
    };

    static string Canonical(string s) => s.Replace("-", "").Replace("_", "").ToLowerInvariant();

    /// <summary>The value of <paramref name="options"/> for help texts: "8", "cosine", "all-linear", "off".</summary>
    public string? Show(TOptions options) => Get(options) switch
    {
        null or "" => null,
        bool b => b ? "on" : "off",
        double d => ((float)d).ToString(CultureInfo.InvariantCulture),  // float settings read back through double
        IEnumerable<string> list => list.Any() ? string.Join(",", list) : null,
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture).ToLowerInvariant(),
        var v => v.ToString()?.ToLowerInvariant(),
    };
}
