using System.Globalization;
using System.Text;

namespace Hone.Tokenization.Templates;

/// <summary>A filter: <c>value | name(arguments)</c>.</summary>
internal delegate object? FilterFunction(object? value, CallArguments arguments);

/// <summary>
/// The filter table: Jinja 3.1's built-in filters (filters.py), with Hugging Face's <c>tojson</c>. Each keeps Jinja's argument
/// names, defaults and quirks (select/map/items return one-shot iterators, trim of None is "None", int("4.7") is 4...).
/// </summary>
internal static class Filters
{
    static readonly Dictionary<string, FilterFunction> Table = new(StringComparer.Ordinal)
    {
        ["abs"] = Abs,
        ["attr"] = Attr,
        ["batch"] = Batch,
        ["capitalize"] = (v, a) => { a.Bind("capitalize", []); return PythonStrings.Capitalize(PythonFormat.Str(v)); },
        ["center"] = Center,
        ["count"] = (v, a) => { a.Bind("count", []); return PythonOps.Length(v); },
        ["d"] = Default,
        ["default"] = Default,
        ["dictsort"] = DictSort,
        ["e"] = Escape,
        ["escape"] = Escape,
        ["first"] = First,
        ["float"] = Float,
        ["format"] = Format,
        ["indent"] = Indent,
        ["int"] = Int,
        ["items"] = Items,
        ["join"] = Join,
        ["last"] = Last,
        ["length"] = (v, a) => { a.Bind("length", []); return PythonOps.Length(v); },
        ["list"] = (v, a) => { a.Bind("list", []); return PythonOps.Materialize(PythonOps.Iterate(v), "a list"); },
        ["lower"] = (v, a) => { a.Bind("lower", []); return PythonStrings.Lower(PythonFormat.Str(v)); },
        ["map"] = Map,
        ["max"] = (v, a) => MinOrMax(v, a, "max"),
        ["min"] = (v, a) => MinOrMax(v, a, "min"),
        ["reject"] = (v, a) => SelectOrReject(v, a, select: false, byAttribute: false),
        ["rejectattr"] = (v, a) => SelectOrReject(v, a, select: false, byAttribute: true),
        ["replace"] = Replace,
        ["reverse"] = Reverse,
        ["round"] = Round,
        ["safe"] = (v, a) => { a.Bind("safe", []); return v as MarkupValue ?? new MarkupValue(PythonFormat.Str(v)); },
        ["select"] = (v, a) => SelectOrReject(v, a, select: true, byAttribute: false),
        ["selectattr"] = (v, a) => SelectOrReject(v, a, select: true, byAttribute: true),
        ["sort"] = Sort,
        ["string"] = (v, a) => { a.Bind("string", []); return v is MarkupValue ? v : PythonFormat.Str(v); },
        ["sum"] = Sum,
        ["title"] = Title,
        ["tojson"] = ToJson,
        ["trim"] = Trim,
        ["unique"] = Unique,
        ["upper"] = (v, a) => { a.Bind("upper", []); return PythonStrings.Upper(PythonFormat.Str(v)); },
        ["wordcount"] = WordCount,
    };

    /// <summary>Jinja filters that exist but that this interpreter leaves out: using one is a parse error saying so.</summary>
    static readonly HashSet<string> NotImplemented =
        ["filesizeformat", "forceescape", "groupby", "pprint", "random", "slice", "striptags", "truncate", "urlencode", "urlize", "wordwrap", "xmlattr"];

    public static FilterFunction? Find(string name) =>
        Table.GetValueOrDefault(name) ?? (NotImplemented.Contains(name)
            ? (_, _) => throw new TemplateException(TemplateErrorKind.Unsupported, $"the '{name}' filter is not supported by this template interpreter")
            : null);

    public static bool Exists(string name) => Table.ContainsKey(name) || NotImplemented.Contains(name);

    /// <summary>Applies a filter by name (map('upper'), used by map).</summary>
    public static object? Apply(string name, object? value, CallArguments arguments) =>
        (Find(name) ?? throw new TemplateException(TemplateErrorKind.Runtime, $"No filter named '{name}'."))(value, arguments);

    static bool Given(object? argument) => argument != CallArguments.Missing;
    static object? Or(object? argument, object? fallback) => Given(argument) ? argument : fallback;

    static long IntegerArgument(object? argument, long fallback, string filter)
    {
        if (!Given(argument)) return fallback;
        if (PythonOps.TryGetInteger(argument, out var integer)) return integer;
        throw PythonOps.TypeError($"'{PythonOps.TypeName(argument)}' object cannot be interpreted as an integer ({filter})");
    }

    /// <summary>Jinja's make_attrgetter: "a.b.0" looked up item-first at each step; with <paramref name="fallback"/> for undefined results.</summary>
    internal static Func<object?, object?> AttributeGetter(object? attribute, Func<object?, object?>? postprocess = null, object? fallback = null)
    {
        object?[] parts = attribute switch
        {
            null => [],
            string s => [.. s.Split('.').Select(p => p.Length > 0 && p.All(char.IsAsciiDigit) ? (object?)long.Parse(p, CultureInfo.InvariantCulture) : p)],
            _ => [attribute],
        };
        return item =>
        {
            foreach (var part in parts)
            {
                item = PythonOps.GetItem(item, part);
                if (fallback != null && item is UndefinedValue) item = fallback;
            }
            return postprocess == null ? item : postprocess(item);
        };
    }

    static object? IgnoreCase(object? value) => value is string s ? PythonStrings.Lower(s) : value;

    static object? Abs(object? value, CallArguments arguments)
    {
        arguments.Bind("abs", []);
        return value switch
        {
            long l => (object)checked(Math.Abs(l)), // the cast keeps the switch from widening every arm to double
            bool b => b ? 1L : 0L,
            double d => Math.Abs(d),
            _ => throw PythonOps.TypeError($"bad operand type for abs(): '{PythonOps.TypeName(value)}'"),
        };
    }

    static object? Attr(object? value, CallArguments arguments)
    {
        var a = arguments.Bind("attr", ["name"], 1);
        if (value is UndefinedValue undefined) throw undefined.Error();
        var name = PythonFormat.Str(a[0]);
        return value switch
        {
            NamespaceValue or LoopValue => PythonOps.GetAttribute(value, name),
            _ => Methods.TryGetAttribute(value, name, out var member) ? member : UndefinedValue.Member(value, name),
        };
    }

    static object? Batch(object? value, CallArguments arguments)
    {
        var a = arguments.Bind("batch", ["linecount", "fill_with"], 1);
        var size = IntegerArgument(a[0], 0, "batch");
        var fill = Or(a[1], null);
        if (fill != null && size > 0) RenderBudget.RequireItems(size, "a batch row");
        IEnumerable<object?> Run()
        {
            var row = new List<object?>();
            foreach (var item in PythonOps.Iterate(value))
            {
                if (row.Count == size) { yield return row; row = []; }
                row.Add(item);
            }
            if (row.Count == 0) yield break;
            if (fill != null) while (row.Count < size) row.Add(fill);
            yield return row;
        }
        return new IteratorValue("generator", Run());
    }

    static object? Center(object? value, CallArguments arguments)
    {
        var a = arguments.Bind("center", ["width"]);
        return Methods.Justify(PythonFormat.Str(value), RenderBudget.Width(IntegerArgument(a[0], 80, "center"), "a center width"), " ", "center");
    }

    static object? Default(object? value, CallArguments arguments)
    {
        var a = arguments.Bind("default", ["default_value", "boolean"]);
        return value is UndefinedValue || (PythonOps.IsTrue(Or(a[1], false)) && !PythonOps.IsTrue(value)) ? Or(a[0], "") : value;
    }

    static object? DictSort(object? value, CallArguments arguments)
    {
        var a = arguments.Bind("dictsort", ["case_sensitive", "by", "reverse"]);
        if (value is UndefinedValue undefined) throw undefined.Error();
        if (value is not DictValue dict) throw PythonOps.TypeError($"'{PythonOps.TypeName(value)}' object has no attribute 'items'");
        var position = PythonFormat.Str(Or(a[1], "key")) switch
        {
            "key" => 0,
            "value" => 1,
            _ => throw new TemplateException(TemplateErrorKind.Runtime, "You can only sort by either \"key\" or \"value\""),
        };
        var caseSensitive = PythonOps.IsTrue(Or(a[0], false));
        var pairs = dict.Items.Select(e => new TupleValue([e.Key, e.Value])).ToList();
        Func<object?, object?> key = pair =>
        {
            var sortBy = ((TupleValue)pair!)[position];
            return caseSensitive ? sortBy : IgnoreCase(sortBy);
        };
        return SortedBy(pairs.Cast<object?>(), key, PythonOps.IsTrue(Or(a[2], false)));
    }

    /// <summary>Python's sorted(key=..., reverse=...): stable, and reverse keeps equal items in their original order.</summary>
    static List<object?> SortedBy(IEnumerable<object?> items, Func<object?, object?> key, bool reverse)
    {
        var keyed = PythonOps.Materialize(items, "a sorted list").Select((item, index) => (Item: item, Key: key(item), Index: index)).ToList();
        keyed.Sort((x, y) =>
        {
            var order = PythonOps.Order(x.Key, y.Key);
            if (reverse) order = -order;
            return order != 0 ? order : x.Index.CompareTo(y.Index);
        });
        return keyed.Select(k => k.Item).ToList();
    }

    static object? Escape(object? value, CallArguments arguments)
    {
        arguments.Bind("escape", []);
        return value as MarkupValue ?? new MarkupValue(PythonFormat.EscapeHtml(PythonFormat.Str(value)));
    }

    static object? First(object? value, CallArguments arguments)
    {
        arguments.Bind("first", []);
        foreach (var item in PythonOps.Iterate(value)) return item;
        return UndefinedValue.WithHint("No first item, sequence was empty.");
    }

    static object? Last(object? value, CallArguments arguments)
    {
        arguments.Bind("last", []);
        if (value is IteratorValue iterator) throw PythonOps.TypeError($"'{iterator.TypeName}' object is not reversible");
        var items = PythonOps.ToList(value);
        return items.Count > 0 ? items[^1] : UndefinedValue.WithHint("No last item, sequence was empty.");
    }

    /// <summary>Python's float(value) for the types templates hold, or null when Python would raise TypeError/ValueError.</summary>
    static double? ParseFloat(object? value)
    {
        switch (value)
        {
            case UndefinedValue undefined: throw undefined.Error();
            case double d: return d;
            case long l: return l;
            case bool b: return b ? 1 : 0;
            case string or MarkupValue:
                PythonOps.TryGetText(value, out var text);
                text = PythonStrings.Strip(text, null, true, true).Replace("_", "");
                switch (text.ToLowerInvariant().TrimStart('+', '-'))
                {
                    case "inf" or "infinity": return text.StartsWith('-') ? double.NegativeInfinity : double.PositiveInfinity;
                    case "nan": return double.NaN;
                }
                return text.Length > 0 && text.All(c => char.IsAsciiDigit(c) || c is '.' or 'e' or 'E' or '+' or '-')
                       && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var parsed) ? parsed : null;
            default: return null;
        }
    }

    static object? Float(object? value, CallArguments arguments)
    {
        var a = arguments.Bind("float", ["default"]);
        return ParseFloat(value) ?? Or(a[0], 0.0);
    }

    static object? Int(object? value, CallArguments arguments)
    {
        var a = arguments.Bind("int", ["default", "base"]);
        var fallback = Or(a[0], 0L);
        var radix = IntegerArgument(a[1], 10, "int");
        if (value is UndefinedValue undefined) throw undefined.Error();
        if (PythonOps.TryGetInteger(value, out var integer)) return integer;
        if (PythonOps.TryGetText(value, out var text) && TryParseInteger(text, radix, out var parsed)) return parsed;
        var asFloat = ParseFloat(value);
        if (asFloat is not { } d || double.IsNaN(d)) return fallback;
        if (double.IsInfinity(d)) throw new TemplateException(TemplateErrorKind.Overflow, "cannot convert float infinity to integer");
        if (Math.Abs(d) >= 9.2e18) throw new TemplateException(TemplateErrorKind.Overflow, "integer does not fit in 64 bits");
        return (long)Math.Truncate(d);
    }

    /// <summary>Python's int(text, base): surrounding whitespace, a sign, underscores between digits, and a 0x/0o/0b prefix matching the base (or base 0).</summary>
    static bool TryParseInteger(string text, long radix, out long value)
    {
        value = 0;
        var s = PythonStrings.Strip(text, null, true, true);
        var negative = s.StartsWith('-');
        if (s.StartsWith('-') || s.StartsWith('+')) s = s[1..];
        if (s.Length >= 2 && s[0] == '0' && char.ToLowerInvariant(s[1]) is 'x' or 'o' or 'b')
        {
            var prefixRadix = char.ToLowerInvariant(s[1]) switch { 'x' => 16, 'o' => 8, _ => 2 };
            if (radix == 0 || radix == prefixRadix) { radix = prefixRadix; s = s[2..].TrimStart('_'); }
        }
        if (radix == 0) radix = 10;
        if (s.Length == 0 || s.StartsWith('_') || s.EndsWith('_') || s.Contains("__") || radix is < 2 or > 36) return false;
        try
        {
            foreach (var c in s)
            {
                if (c == '_') continue;
                var digit = char.IsAsciiDigit(c) ? c - '0' : char.IsAsciiLetter(c) ? char.ToLowerInvariant(c) - 'a' + 10 : 99;
                if (digit >= radix) return false;
                value = checked(value * radix + digit);
            }
        }
        catch (OverflowException)
        {
            throw new TemplateException(TemplateErrorKind.Overflow, "integer does not fit in 64 bits");
        }
        if (negative) value = -value;
        return true;
    }

    static object? Format(object? value, CallArguments arguments)
    {
        if (arguments.Positional.Count > 0 && arguments.Named.Count > 0)
            throw new TemplateException(TemplateErrorKind.Runtime, "can't handle positional and keyword arguments at the same time");
        object? values;
        if (arguments.Named.Count > 0)
        {
            var dict = new DictValue();
            foreach (var (key, item) in arguments.Named) dict.Set(key, item);
            values = dict;
        }
        else values = new TupleValue([.. arguments.Positional]);
        return PythonFormat.Percent(PythonFormat.Str(value), values);
    }

    static object? Indent(object? value, CallArguments arguments)
    {
        var a = arguments.Bind("indent", ["width", "first", "blank"]);
        var width = Or(a[0], 4L);
        var indentation = PythonOps.TryGetText(width, out var text) ? text : new string(' ', RenderBudget.Width(IntegerArgument(width, 4, "indent"), "an indent width"));
        var lines = PythonStrings.SplitLines(PythonFormat.Str(value) + "\n", false).Cast<string>().ToList();
        RenderBudget.RequireLength(lines.Sum(line => (long)line.Length + 1) + (long)indentation.Length * (lines.Count + 1), "an indent result");
        string result;
        if (PythonOps.IsTrue(Or(a[2], false))) result = string.Join("\n" + indentation, lines);
        else
        {
            result = lines[0];
            if (lines.Count > 1) result += "\n" + string.Join("\n", lines.Skip(1).Select(line => line.Length > 0 ? indentation + line : line));
        }
        return PythonOps.IsTrue(Or(a[1], false)) ? indentation + result : result;
    }

    static object? Items(object? value, CallArguments arguments)
    {
        arguments.Bind("items", []);
        return value switch
        {
            UndefinedValue => new IteratorValue("generator", []),
            DictValue dict => new IteratorValue("generator", dict.Items.Select(e => (object?)new TupleValue([e.Key, e.Value]))),
            _ => throw PythonOps.TypeError("Can only get item pairs from a mapping."),
        };
    }

    static object? Join(object? value, CallArguments arguments)
    {
        var a = arguments.Bind("join", ["d", "attribute"]);
        var items = PythonOps.Iterate(value);
        if (Given(a[1]) && a[1] != null) items = items.Select(AttributeGetter(a[1]));
        return JoinWithin(PythonFormat.Str(Or(a[0], "")), items.Select(PythonFormat.Str), "a join result");
    }

    /// <summary>string.Join that stops at the string cap while it gathers the parts, before it builds anything.</summary>
    internal static string JoinWithin(string separator, IEnumerable<string> items, string what)
    {
        var parts = new List<string>();
        long length = 0;
        foreach (var part in items)
        {
            length += part.Length + (parts.Count > 0 ? separator.Length : 0);
            if (length > RenderBudget.MaxStringLength) RenderBudget.RequireLength(length, what);
            parts.Add(part);
        }
        RenderBudget.RequireLength(length, what);
        return string.Join(separator, parts);
    }

    static object? Map(object? value, CallArguments arguments)
    {
        if (!PythonOps.IsTrue(value)) return new IteratorValue("generator", []);
        Func<object?, object?> function;
        if (arguments.Positional.Count == 0 && arguments.Named.Any(n => n.Key == "attribute"))
        {
            var a = arguments.Bind("map", ["attribute", "default"]);
            function = AttributeGetter(a[0], fallback: Or(a[1], null));
        }
        else
        {
            if (arguments.Positional.Count == 0) throw new TemplateException(TemplateErrorKind.Runtime, "map requires a filter argument");
            var name = PythonFormat.Str(arguments.Positional[0]);
            var rest = new CallArguments(arguments.Positional.Skip(1).ToList(), arguments.Named);
            var filter = Find(name) ?? throw new TemplateException(TemplateErrorKind.Runtime, $"No filter named '{name}'.");
            function = item => filter(item, rest);
        }
        return new IteratorValue("generator", PythonOps.Iterate(value).Select(function));
    }

    static object? MinOrMax(object? value, CallArguments arguments, string name)
    {
        var a = arguments.Bind(name, ["case_sensitive", "attribute"]);
        var items = PythonOps.Iterate(value).ToList();
        if (items.Count == 0) return UndefinedValue.WithHint("No aggregated item, sequence was empty.");
        var key = AttributeGetter(Or(a[1], null), PythonOps.IsTrue(Or(a[0], false)) ? null : IgnoreCase);
        var best = items[0];
        var bestKey = key(best);
        foreach (var item in items.Skip(1))
        {
            var itemKey = key(item);
            var order = PythonOps.Order(itemKey, bestKey);
            if (name == "max" ? order > 0 : order < 0) { best = item; bestKey = itemKey; }
        }
        return best;
    }

    static object? SelectOrReject(object? value, CallArguments arguments, bool select, bool byAttribute)
    {
        if (!PythonOps.IsTrue(value)) return new IteratorValue("generator", []);
        var positional = arguments.Positional;
        var offset = 0;
        Func<object?, object?> transform = x => x;
        if (byAttribute)
        {
            if (positional.Count == 0) throw new TemplateException(TemplateErrorKind.Runtime, "Missing parameter for attribute name");
            transform = AttributeGetter(positional[0]);
            offset = 1;
        }
        Func<object?, bool> predicate;
        if (positional.Count > offset)
        {
            var name = PythonFormat.Str(positional[offset]);
            var test = Tests.Find(name) ?? throw new TemplateException(TemplateErrorKind.Runtime, $"No test named '{name}'.");
            var rest = new CallArguments(positional.Skip(offset + 1).ToList(), arguments.Named);
            predicate = item => test(item, rest);
        }
        else predicate = PythonOps.IsTrue;
        return new IteratorValue("generator", PythonOps.Iterate(value).Where(item => predicate(transform(item)) == select));
    }

    static object? Replace(object? value, CallArguments arguments)
    {
        var a = arguments.Bind("replace", ["old", "new", "count"], 2);
        var count = Given(a[2]) && a[2] != null ? IntegerArgument(a[2], -1, "replace") : -1;
        return PythonStrings.Replace(PythonFormat.Str(value), PythonFormat.Str(a[0]), PythonFormat.Str(a[1]), count);
    }

    static object? Reverse(object? value, CallArguments arguments)
    {
        arguments.Bind("reverse", []);
        switch (value)
        {
            case string s: return PythonStrings.Reverse(s);
            case MarkupValue m: return new MarkupValue(PythonStrings.Reverse(m.Text));
            case IteratorValue:
                var drained = PythonOps.Iterate(value).ToList();
                drained.Reverse();
                return drained;
            case null or bool or long or double: throw new TemplateException(TemplateErrorKind.Runtime, "argument must be iterable");
        }
        var items = PythonOps.ToList(value).ToList();
        items.Reverse();
        var type = value switch { DictValue => "dict_reversekeyiterator", TupleValue => "reversed", RangeValue => "range_iterator", UndefinedValue => "reversed", _ => "list_reverseiterator" };
        return new IteratorValue(type, items);
    }

    static object? Round(object? value, CallArguments arguments)
    {
        var a = arguments.Bind("round", ["precision", "method"]);
        var precision = IntegerArgument(a[0], 0, "round");
        var method = PythonFormat.Str(Or(a[1], "common"));
        if (method is not ("common" or "ceil" or "floor")) throw new TemplateException(TemplateErrorKind.Runtime, "method must be common, ceil or floor");
        if (value is UndefinedValue undefined) throw PythonOps.TypeError($"type {PythonOps.TypeName(undefined)} doesn't define __round__ method");
        if (method == "common")
        {
            if (PythonOps.TryGetInteger(value, out var integer))
            {
                if (precision >= 0) return integer;
                var unit = (long)Math.Pow(10, Math.Min(18, -precision));
                var (quotient, remainder) = (Math.DivRem(integer, unit).Quotient, Math.DivRem(integer, unit).Remainder);
                if (remainder < 0) { quotient--; remainder += unit; }
                if (remainder * 2 > unit || (remainder * 2 == unit && quotient % 2 != 0)) quotient++;
                return quotient * unit;
            }
            if (value is double d) return PythonFormat.Round(d, (int)Math.Clamp(precision, -400, 400));
            throw PythonOps.TypeError($"type {PythonOps.TypeName(value)} doesn't define __round__ method");
        }
        var scale = Math.Pow(10, precision);
        var scaled = PythonOps.Binary(BinaryOperator.Multiply, value, scale);
        var rounded = method == "ceil" ? Math.Ceiling((double)scaled!) : Math.Floor((double)scaled!);
        return rounded / scale;
    }

    static object? Sort(object? value, CallArguments arguments)
    {
        var a = arguments.Bind("sort", ["reverse", "case_sensitive", "attribute"]);
        var caseSensitive = PythonOps.IsTrue(Or(a[1], false));
        object?[] attributes = Or(a[2], null) is string names ? names.Split(',') : [Or(a[2], null)];
        var getters = attributes.Select(attribute => AttributeGetter(attribute, caseSensitive ? null : IgnoreCase)).ToList();
        Func<object?, object?> key = getters.Count == 1 ? getters[0] : item => getters.Select(g => g(item)).ToList();
        return SortedBy(PythonOps.Iterate(value), key, PythonOps.IsTrue(Or(a[0], false)));
    }

    static object? Sum(object? value, CallArguments arguments)
    {
        var a = arguments.Bind("sum", ["attribute", "start"]);
        var total = Or(a[1], 0L);
        if (total is string) throw PythonOps.TypeError("sum() can't sum strings [use ''.join(seq) instead]");
        var items = PythonOps.Iterate(value);
        if (Given(a[0]) && a[0] != null) items = items.Select(AttributeGetter(a[0]));
        foreach (var item in items) total = PythonOps.Binary(BinaryOperator.Add, total, item);
        return total;
    }

    /// <summary>Jinja's title (not Python's str.title): words start after whitespace, '-', '(', '{', '[' or '&lt;'.</summary>
    static object? Title(object? value, CallArguments arguments)
    {
        arguments.Bind("title", []);
        var text = PythonFormat.Str(value);
        var result = new StringBuilder(text.Length);
        var wordStart = true;
        foreach (var r in text.EnumerateRunes())
        {
            var separator = PythonStrings.IsSpace(r) || r.Value is '-' or '(' or '{' or '[' or '<';
            if (separator) { result.Append(r.ToString()); wordStart = true; continue; }
            result.Append((wordStart ? System.Text.Rune.ToUpperInvariant(r) : System.Text.Rune.ToLowerInvariant(r)).ToString());
            wordStart = false;
        }
        return result.ToString();
    }

    /// <summary>Hugging Face's tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).</summary>
    static object? ToJson(object? value, CallArguments arguments)
    {
        var a = arguments.Bind("tojson", ["ensure_ascii", "indent", "separators", "sort_keys"]);
        var indentArgument = Or(a[1], null);
        string? indent = indentArgument switch
        {
            null => null,
            string s => s,
            MarkupValue m => m.Text,
            _ => new string(' ', RenderBudget.Width(IntegerArgument(indentArgument, 0, "tojson"), "a tojson indent")),
        };
        string itemSeparator = indent == null ? ", " : ",", keySeparator = ": ";
        if (Or(a[2], null) is { } separators)
        {
            var pair = PythonOps.ToList(separators);
            if (pair.Count != 2) throw new TemplateException(TemplateErrorKind.Value, $"too many values to unpack (expected 2)");
            itemSeparator = PythonFormat.Str(pair[0]);
            keySeparator = PythonFormat.Str(pair[1]);
        }
        return PythonFormat.Json(value, PythonOps.IsTrue(Or(a[0], false)), indent, itemSeparator, keySeparator, PythonOps.IsTrue(Or(a[3], false)));
    }

    static object? Trim(object? value, CallArguments arguments)
    {
        var a = arguments.Bind("trim", ["chars"]);
        var characters = Or(a[0], null);
        return PythonStrings.Strip(PythonFormat.Str(value), characters == null ? null : PythonFormat.Str(characters), true, true);
    }

    static object? Unique(object? value, CallArguments arguments)
    {
        var a = arguments.Bind("unique", ["case_sensitive", "attribute"]);
        var key = AttributeGetter(Or(a[1], null), PythonOps.IsTrue(Or(a[0], false)) ? null : IgnoreCase);
        IEnumerable<object?> Run()
        {
            var seen = new DictValue();
            foreach (var item in PythonOps.Iterate(value))
            {
                var k = key(item);
                if (seen.ContainsKey(k)) continue;
                seen.Set(k, null);
                yield return item;
            }
        }
        return new IteratorValue("generator", Run());
    }

    static object? WordCount(object? value, CallArguments arguments)
    {
        arguments.Bind("wordcount", []);
        long count = 0;
        var inWord = false;
        foreach (var r in PythonFormat.Str(value).EnumerateRunes())
        {
            var word = PythonStrings.IsWordCharacter(r);
            if (word && !inWord) count++;
            inWord = word;
        }
        return count;
    }
}
