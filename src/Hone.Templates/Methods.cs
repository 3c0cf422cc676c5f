namespace Hone.Tokenization.Templates;

/// <summary>
/// Python methods of str, list, tuple and dict that templates call (<c>content.strip()</c>, <c>message.get('x')</c>...). Mutating
/// methods answer as Hugging Face's ImmutableSandboxedEnvironment does (an unsafe undefined); real Python methods this
/// interpreter does not implement fail loudly instead of being undefined.
/// </summary>
internal static class Methods
{
    static readonly HashSet<string> StringMethods =
    [
        "capitalize", "casefold", "center", "count", "endswith", "find", "format", "index", "isalnum", "isalpha", "isascii",
        "isdecimal", "isdigit", "islower", "isnumeric", "isspace", "isupper", "join", "ljust", "lower", "lstrip", "partition",
        "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip", "split",
        "splitlines", "startswith", "strip", "swapcase", "title", "upper", "zfill",
        // Real str methods left out on purpose; calling one fails with a clear message.
        "encode", "expandtabs", "format_map", "isidentifier", "isprintable", "istitle", "maketrans", "translate",
    ];
    static readonly HashSet<string> UnimplementedStringMethods = ["encode", "expandtabs", "format_map", "isidentifier", "isprintable", "istitle", "maketrans", "translate"];
    // Pattern switches rather than sets: message.role style lookups pass here first, and these compile to a few compares.
    static bool IsListMethod(string name) => name is "count" or "index" or "copy" or "pop" or "clear";
    static bool IsMutatingListMethod(string name) => name is "append" or "reverse" or "insert" or "sort" or "extend" or "remove";
    static bool IsDictMethod(string name) => name is "get" or "items" or "keys" or "values" or "copy" or "fromkeys";
    static bool IsMutatingDictMethod(string name) => name is "clear" or "pop" or "popitem" or "setdefault" or "update";

    public static bool TryGetAttribute(object? target, string name, out object? value)
    {
        value = null;
        switch (target)
        {
            case string or MarkupValue when StringMethods.Contains(name):
            case TupleValue when name is "count" or "index":
            case RangeValue when name is "count" or "index":
                value = new BoundMethodValue(target, name);
                return true;
            case List<object?> when IsMutatingListMethod(name):
                value = UndefinedValue.Unsafe(target, name);
                return true;
            case List<object?> when IsListMethod(name):
                value = new BoundMethodValue(target, name);
                return true;
            case DictValue when IsMutatingDictMethod(name):
                value = UndefinedValue.Unsafe(target, name);
                return true;
            case DictValue when IsDictMethod(name):
                value = new BoundMethodValue(target, name);
                return true;
            case RangeValue range when name is "start" or "stop" or "step":
                value = name == "start" ? range.Start : name == "stop" ? range.Stop : range.Step;
                return true;
        }
        return false;
    }

    static TemplateException Unsupported(object? receiver, string name) =>
        new(TemplateErrorKind.Unsupported, $"{PythonOps.TypeName(receiver)}.{name}() is not supported by this template interpreter");

    public static object? Call(BoundMethodValue method, CallArguments arguments) => method.Receiver switch
    {
        string s => CallString(s, method.Name, arguments),
        MarkupValue m => CallString(m.Text, method.Name, arguments),
        List<object?> list => CallSequence(list, list, method.Name, arguments),
        TupleValue tuple => CallSequence(tuple, tuple.Items, method.Name, arguments),
        DictValue dict => CallDict(dict, method.Name, arguments),
        RangeValue range => CallSequence(range, [.. range.Iterate()], method.Name, arguments),
        _ => throw Unsupported(method.Receiver, method.Name),
    };

    static string Text(object? value, string method, string what = "argument")
    {
        if (PythonOps.TryGetText(value, out var text)) return text;
        throw PythonOps.TypeError($"{method}() {what} must be str, not {PythonOps.TypeName(value)}");
    }

    static string? OptionalText(object? value, string method) =>
        value == CallArguments.Missing || value == null ? null : Text(value, method);

    static long Integer(object? value, long fallback)
    {
        if (value == CallArguments.Missing || value == null) return fallback;
        if (PythonOps.TryGetInteger(value, out var integer)) return integer;
        throw PythonOps.TypeError($"'{PythonOps.TypeName(value)}' object cannot be interpreted as an integer");
    }

    static object? Optional(object? value) => value == CallArguments.Missing ? null : value;

    static object? CallString(string s, string name, CallArguments arguments)
    {
        if (UnimplementedStringMethods.Contains(name)) throw Unsupported(s, name);
        object?[] a;
        switch (name)
        {
            case "strip" or "lstrip" or "rstrip":
                a = arguments.Bind(name, ["chars"]);
                return PythonStrings.Strip(s, OptionalText(a[0], name), name != "rstrip", name != "lstrip");
            case "split" or "rsplit":
                a = arguments.Bind(name, ["sep", "maxsplit"]);
                var separator = OptionalText(a[0], name);
                var maxSplit = Integer(a[1], -1);
                return name == "split" ? PythonStrings.Split(s, separator, maxSplit) : PythonStrings.RightSplit(s, separator, maxSplit);
            case "splitlines":
                a = arguments.Bind(name, ["keepends"]);
                return PythonStrings.SplitLines(s, PythonOps.IsTrue(Optional(a[0])));
            case "startswith" or "endswith":
                a = arguments.Bind(name, ["prefix", "start", "end"], 1);
                return PythonStrings.StartsOrEndsWith(s, a[0], Optional(a[1]), Optional(a[2]), name == "endswith", name);
            case "upper": arguments.RequireNone(name); return PythonStrings.Upper(s);
            case "lower" or "casefold": arguments.RequireNone(name); return PythonStrings.Lower(s);
            case "title": arguments.RequireNone(name); return PythonStrings.Title(s);
            case "capitalize": arguments.RequireNone(name); return PythonStrings.Capitalize(s);
            case "swapcase": arguments.RequireNone(name); return PythonStrings.SwapCase(s);
            case "replace":
                a = arguments.Bind(name, ["old", "new", "count"], 2);
                return PythonStrings.Replace(s, Text(a[0], name), Text(a[1], name), Integer(a[2], -1));
            case "find" or "rfind" or "index" or "rindex":
                a = arguments.Bind(name, ["sub", "start", "end"], 1);
                var found = PythonStrings.Find(s, Text(a[0], name), Optional(a[1]), Optional(a[2]), name[0] == 'r');
                if (found < 0 && name.EndsWith("index")) throw new TemplateException(TemplateErrorKind.Value, "substring not found");
                return found;
            case "count":
                a = arguments.Bind(name, ["sub", "start", "end"], 1);
                return PythonStrings.Count(s, Text(a[0], name), Optional(a[1]), Optional(a[2]));
            case "join":
                a = arguments.Bind(name, ["iterable"], 1);
                var parts = PythonOps.Iterate(a[0]).Select((item, i) => PythonOps.TryGetText(item, out var t) ? t
                    : throw PythonOps.TypeError($"sequence item {i}: expected str instance, {PythonOps.TypeName(item)} found"));
                return Filters.JoinWithin(s, parts, "a str.join result");
            case "format":
                return PythonFormat.Format(s, arguments);
            case "isdigit": return PythonStrings.All(s, PythonStrings.IsDigit);
            case "isdecimal": return PythonStrings.All(s, PythonStrings.IsDecimal);
            case "isnumeric": return PythonStrings.All(s, PythonStrings.IsNumeric);
            case "isalpha": return PythonStrings.All(s, PythonStrings.IsAlpha);
            case "isalnum": return PythonStrings.All(s, PythonStrings.IsAlphanumeric);
            case "isspace": return PythonStrings.All(s, PythonStrings.IsSpace);
            case "isascii": return s.All(char.IsAscii);
            case "islower": return PythonStrings.IsLower(s);
            case "isupper": return PythonStrings.IsUpper(s);
            case "removeprefix":
                a = arguments.Bind(name, ["prefix"], 1);
                var prefix = Text(a[0], name);
                return s.StartsWith(prefix, StringComparison.Ordinal) ? s[prefix.Length..] : s;
            case "removesuffix":
                a = arguments.Bind(name, ["suffix"], 1);
                var suffix = Text(a[0], name);
                return suffix.Length > 0 && s.EndsWith(suffix, StringComparison.Ordinal) ? s[..^suffix.Length] : s;
            case "center" or "ljust" or "rjust":
                a = arguments.Bind(name, ["width", "fillchar"], 1);
                var fill = a[1] == CallArguments.Missing ? " " : Text(a[1], name);
                if (PythonStrings.Length(fill) != 1) throw PythonOps.TypeError("The fill character must be exactly one character long");
                return Justify(s, RenderBudget.Width(Integer(a[0], 0), $"a {name} width"), fill, name);
            case "zfill":
                a = arguments.Bind(name, ["width"], 1);
                var width = RenderBudget.Width(Integer(a[0], 0), "a zfill width");
                var length = (int)PythonStrings.Length(s);
                if (length >= width) return s;
                var signed = s.Length > 0 && s[0] is '+' or '-';
                return (signed ? s[..1] : "") + new string('0', width - length) + (signed ? s[1..] : s);
            case "partition" or "rpartition":
                a = arguments.Bind(name, ["sep"], 1);
                var sep = Text(a[0], name);
                if (sep.Length == 0) throw new TemplateException(TemplateErrorKind.Value, "empty separator");
                var at = name == "partition" ? s.IndexOf(sep, StringComparison.Ordinal) : s.LastIndexOf(sep, StringComparison.Ordinal);
                if (at < 0) return name == "partition" ? new TupleValue([s, "", ""]) : new TupleValue(["", "", s]);
                return new TupleValue([s[..at], sep, s[(at + sep.Length)..]]);
        }
        throw Unsupported(s, name);
    }

    /// <summary>str.center/ljust/rjust, with CPython's rule for where the odd padding character goes when centering.</summary>
    public static string Justify(string s, int width, string fill, string name)
    {
        var length = (int)PythonStrings.Length(s);
        if (length >= width) return s;
        RenderBudget.RequireLength((long)s.Length + (long)(width - length) * fill.Length, $"a {name} result");
        var padding = width - length;
        var left = name switch { "ljust" => 0, "rjust" => padding, _ => padding / 2 + (padding & width & 1) };
        return string.Concat(Enumerable.Repeat(fill, left)) + s + string.Concat(Enumerable.Repeat(fill, padding - left));
    }

    static object? CallSequence(object receiver, IReadOnlyList<object?> items, string name, CallArguments arguments)
    {
        object?[] a;
        switch (name)
        {
            case "count":
                a = arguments.Bind(name, ["value"], 1);
                return (long)items.Count(item => PythonOps.AreEqual(item, a[0]));
            case "index":
                a = arguments.Bind(name, ["value", "start", "stop"], 1);
                var (first, _, _, count) = PythonOps.SliceIndices(items.Count, Optional(a[1]), Optional(a[2]), null);
                for (var i = first; i < first + count; i++) if (PythonOps.AreEqual(items[i], a[0])) return (long)i;
                throw new TemplateException(TemplateErrorKind.Value, receiver is List<object?> ? $"{PythonFormat.Repr(a[0])} is not in list" : "tuple.index(x): x not in tuple");
            case "copy":
                arguments.RequireNone(name);
                return items.ToList();
        }
        throw Unsupported(receiver, name); // list.pop and list.clear mutate but pass Jinja's sandbox; we refuse rather than mutate shared inputs
    }

    static object? CallDict(DictValue dict, string name, CallArguments arguments)
    {
        switch (name)
        {
            case "get":
                var a = arguments.Bind(name, ["key", "default"], 1);
                return dict.TryGet(a[0], out var value) ? value : Optional(a[1]);
            case "items": arguments.RequireNone(name); return new DictViewValue(dict, DictViewKind.Items);
            case "keys": arguments.RequireNone(name); return new DictViewValue(dict, DictViewKind.Keys);
            case "values": arguments.RequireNone(name); return new DictViewValue(dict, DictViewKind.Values);
            case "copy": arguments.RequireNone(name); return dict.Copy();
        }
        throw Unsupported(dict, name);
    }
}
