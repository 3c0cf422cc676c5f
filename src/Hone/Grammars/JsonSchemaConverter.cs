using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Hone.Grammars;

/// <summary>One JSON Schema (with its $defs) turned into GBNF rules of a <see cref="GbnfBuilder"/>.</summary>
internal sealed class JsonSchemaConverter
{
    static readonly HashSet<string> Annotations = new(StringComparer.Ordinal)
    {
        "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly", "$defs", "definitions",
    };

    static readonly HashSet<string> Enforced = new(StringComparer.Ordinal)
    {
        "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems", "enum", "const",
        "anyOf", "oneOf", "$ref", "minLength", "maxLength", "format", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    };

    /// <summary>The most items or characters a counted repetition may ask for (each is a rule).</summary>
    const int MaxCount = 1000;

    readonly GbnfBuilder _builder;
    readonly JsonNode _root;
    readonly Dictionary<string, string> _references = new(StringComparer.Ordinal);

    public JsonSchemaConverter(GbnfBuilder builder, JsonNode root)
    {
        _builder = builder;
        _root = root;
    }

    string Space => _builder.Primitive("space");

    public string Convert(string nameHint)
    {
        string name = _builder.FreshName(nameHint);
        _builder.AddRule(name, Body(_root, "#", name));
        return name;
    }

    static GrammarException Error(string path, string message) => new($"JSON Schema at {path}: {message}");

    /// <summary>A rule for a sub-schema (a reference when the body is a single rule name).</summary>
    string Rule(JsonNode? schema, string path, string hint)
    {
        string body = Body(schema, path, hint);
        if (IsName(body)) return body;
        string name = _builder.FreshName(hint);
        _builder.AddRule(name, body);
        return name;
    }

    static bool IsName(string body) => body.Length > 0 && body.All(c => char.IsAsciiLetterOrDigit(c) || c == '-');

    /// <summary>GBNF (alternatives) matching a JSON value valid under <paramref name="schema"/>, then whitespace.</summary>
    string Body(JsonNode? schema, string path, string hint)
    {
        switch (schema)
        {
            case null: throw Error(path, "a schema is null (use {} for any value)");
            case JsonValue v when v.GetValueKind() == JsonValueKind.True: return _builder.Primitive("json-value");
            case JsonValue v when v.GetValueKind() == JsonValueKind.False: throw Error(path, "the schema 'false' matches nothing");
            case not JsonObject: throw Error(path, "a schema must be an object or a boolean");
        }
        var o = (JsonObject)schema;
        foreach (var (key, _) in o)
            if (!Annotations.Contains(key) && !Enforced.Contains(key))
                throw Error(path, $"keyword '{key}' is not supported, so it cannot be enforced (supported: {string.Join(", ", Enforced)})");

        if (o["$ref"] is JsonNode reference)
        {
            if (o.Count(p => !Annotations.Contains(p.Key)) > 1)
                throw Error(path, "'$ref' next to other keywords is not supported (put them in the referenced schema)");
            return Reference(reference, path);
        }
        if (o["const"] is var constant && o.ContainsKey("const"))
            return $"{GbnfBuilder.Literal(JsonText(constant))} {Space}";
        if (o["enum"] is JsonNode enumNode)
        {
            if (enumNode is not JsonArray values || values.Count == 0) throw Error(path + "/enum", "must be a non-empty array");
            return $"{Alternatives(values.Select(JsonText).Distinct().ToList(), hint)} {Space}";
        }
        foreach (var combinator in (string[])["anyOf", "oneOf"])
            if (o[combinator] is JsonNode alternativesNode)
            {
                if (alternativesNode is not JsonArray alternatives || alternatives.Count == 0) throw Error($"{path}/{combinator}", "must be a non-empty array");
                if (o.Any(p => p.Key != combinator && !Annotations.Contains(p.Key) && p.Key != "type"))
                    throw Error(path, $"'{combinator}' next to other constraints is not supported (move them into each alternative)");
                return string.Join(" | ", alternatives.Select((a, i) => Rule(a, $"{path}/{combinator}/{i}", $"{hint}-{i}")));
            }

        var types = Types(o, path);
        if (types.Count == 1) return TypeBody(o, types[0], path, hint);
        return string.Join(" | ", types.Select(t => { string body = TypeBody(o, t, path, $"{hint}-{t}"); return IsName(body) ? body : $"({body})"; }));
    }

    List<string> Types(JsonObject o, string path)
    {
        switch (o["type"])
        {
            case null:
                if (o.ContainsKey("properties") || o.ContainsKey("additionalProperties")) return ["object"];
                if (o.ContainsKey("items") || o.ContainsKey("prefixItems")) return ["array"];
                if (o.ContainsKey("minLength") || o.ContainsKey("maxLength") || o.ContainsKey("pattern") || o.ContainsKey("format")) return ["string"];
                if (o.ContainsKey("minimum") || o.ContainsKey("maximum")) throw Error(path, "'minimum'/'maximum' without a type: say \"type\": \"integer\"");
                return ["any"];
            case JsonValue v when v.TryGetValue(out string? single): return [CheckType(single, path)];
            case JsonArray list when list.Count > 0:
                return list.Select(t => t is JsonValue tv && tv.TryGetValue(out string? s) ? CheckType(s, path) : throw Error(path + "/type", "must hold type names")).Distinct().ToList();
            default: throw Error(path + "/type", "must be a type name or a non-empty list of them");
        }
    }

    static string CheckType(string type, string path) => type is "object" or "array" or "string" or "number" or "integer" or "boolean" or "null"
        ? type : throw Error(path + "/type", $"unknown type '{type}'");

    string TypeBody(JsonObject o, string type, string path, string hint)
    {
        // Keywords that do not apply to this type are ignored, as JSON Schema does (they constrain other types).
        switch (type)
        {
            case "any": return _builder.Primitive("json-value");
            case "boolean": return _builder.Primitive("json-boolean");
            case "null": return _builder.Primitive("json-null");
            case "string": return StringBody(o, path, hint);
            case "integer": return IntegerBody(o, path, hint);
            case "number":
                foreach (var bound in (string[])["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"])
                    if (o.ContainsKey(bound) && !(o["type"] is JsonArray list && list.Any(t => t?.GetValue<string>() == "integer")))
                        throw Error(path, $"'{bound}' on a number (not an integer) cannot be enforced; use \"type\": \"integer\" or leave it out");
                return _builder.Primitive("json-number");
            case "array": return ArrayBody(o, path, hint);
            default: return ObjectBody(o, path, hint);
        }
    }

    string Reference(JsonNode reference, string path)
    {
        if (reference is not JsonValue rv || !rv.TryGetValue(out string? target)) throw Error(path + "/$ref", "must be a string");
        if (_references.TryGetValue(target, out var known)) return known;
        if (!target.StartsWith('#')) throw Error(path + "/$ref", $"'{target}': only references inside the schema (#/...) are supported");
        JsonNode? node = _root;
        foreach (var raw in target[1..].Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            string part = Uri.UnescapeDataString(raw).Replace("~1", "/").Replace("~0", "~");
            node = node switch
            {
                JsonObject obj when obj.TryGetPropertyValue(part, out var child) => child,
                JsonArray arr when int.TryParse(part, out int index) && index >= 0 && index < arr.Count => arr[index],
                _ => throw Error(path + "/$ref", $"'{target}' points at nothing"),
            };
        }
        string name = _builder.FreshName("ref" + (target.Length > 1 ? "-" + target[(target.LastIndexOf('/') + 1)..] : "-root"));
        _references[target] = name; // before the body, so recursion refers to the rule
        _builder.AddRule(name, Body(node, target, name));
        return name;
    }

    /// <summary>One of several literal texts, written as their trie (shared prefixes once), so a matcher holds one stack
    /// until the texts part instead of one per text: "product 001" … "product 199" is one stack through "product ".</summary>
    string Alternatives(List<string> texts, string hint)
    {
        if (texts.Count == 1) return GbnfBuilder.Literal(texts[0]);
        // Characters as runes, so a branch never splits a surrogate pair.
        var runes = texts.Select(t => t.EnumerateRunes().ToArray()).ToList();
        string Text(Rune[] r, int from, int to) => string.Concat(r[from..to].Select(x => x.ToString()));
        string Node(List<Rune[]> group, int depth)
        {
            var alternatives = new List<string>();
            if (group.Any(t => t.Length == depth)) alternatives.Add("\"\"");
            foreach (var branch in group.Where(t => t.Length > depth).GroupBy(t => t[depth].Value).OrderBy(g => g.Key))
            {
                var members = branch.ToList();
                // Follow the branch while every member goes on with the same character.
                int end = depth + 1;
                while (members.All(t => t.Length > end) && members.All(t => t[end] == members[0][end])) end++;
                string literal = GbnfBuilder.Literal(Text(members[0], depth, end));
                alternatives.Add(members.Count == 1 && members[0].Length == end ? literal : $"{literal} {Node(members, end)}");
            }
            if (alternatives.Count == 1) return alternatives[0];
            string name = _builder.FreshName($"{hint}-enum");
            _builder.AddRule(name, string.Join(" | ", alternatives));
            return name;
        }
        return Node(runes, 0);
    }

    static string JsonText(JsonNode? value) => value == null ? "null" : JsonPython(value);

    /// <summary>JSON as Python's json.dumps writes it (", " and ": " separators), the spelling templates render.</summary>
    static string JsonPython(JsonNode value)
    {
        switch (value)
        {
            case JsonObject obj:
                return "{" + string.Join(", ", obj.Select(p => JsonString(p.Key) + ": " + JsonText(p.Value))) + "}";
            case JsonArray arr:
                return "[" + string.Join(", ", arr.Select(JsonText)) + "]";
            case JsonValue v when v.GetValueKind() == JsonValueKind.String:
                return JsonString(v.GetValue<string>());
            default:
                return value.ToJsonString(Compact);
        }
    }

    /// <summary>A JSON string as Python's json.dumps(ensure_ascii=False) writes it: only quote, backslash and control
    /// characters escaped; every other character, emoji included, as itself.</summary>
    static string JsonString(string text)
    {
        var s = new StringBuilder("\"");
        foreach (var rune in text.EnumerateRunes()) s.Append(JsonEscapeChar(rune.Value));
        return s.Append('"').ToString();
    }

    static readonly JsonSerializerOptions Compact = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    // ---- objects -----------------------------------------------------------------------------------------------

    string ObjectBody(JsonObject o, string path, string hint)
    {
        var properties = new List<(string Name, string Rule, bool Required)>();
        var required = new HashSet<string>(StringComparer.Ordinal);
        if (o["required"] is JsonNode requiredNode)
        {
            if (requiredNode is not JsonArray list) throw Error(path + "/required", "must be an array of property names");
            foreach (var r in list)
                required.Add(r is JsonValue rv && rv.TryGetValue(out string? s) ? s : throw Error(path + "/required", "must hold property names"));
        }
        if (o["properties"] is JsonNode propertiesNode)
        {
            if (propertiesNode is not JsonObject props) throw Error(path + "/properties", "must be an object");
            foreach (var (name, sub) in props)
                properties.Add((name, Rule(sub, $"{path}/properties/{name}", $"{hint}-{name}"), required.Contains(name)));
        }
        foreach (var name in required)
            if (!properties.Any(p => p.Name == name))
                throw Error(path + "/required", $"'{name}' is required but not among the properties (Hone writes only properties it has schemas for)");

        string? additional = null;
        var additionalNode = o["additionalProperties"];
        bool allowAdditional = o.ContainsKey("additionalProperties")
            ? additionalNode is not JsonValue av || av.GetValueKind() != JsonValueKind.False
            : _builder.Options.AdditionalPropertiesDefault;
        if (allowAdditional)
        {
            bool anyValue = additionalNode == null || additionalNode.GetValueKind() == JsonValueKind.True;
            string valueRule = anyValue
                ? _builder.Primitive("json-value")
                : Rule(additionalNode, path + "/additionalProperties", $"{hint}-additional-value");
            string keyRule = NotOneOfKey(properties.Select(p => p.Name).ToList(), hint);
            additional = _builder.FreshName($"{hint}-additional-kv");
            _builder.AddRule(additional, $"{keyRule} \":\" {Space} {valueRule}");
        }

        string space = Space;
        // after(i, written): the properties from i on, when a property was written before them (so a comma leads).
        var rules = new Dictionary<(int, bool), string>();
        string After(int i, bool written)
        {
            if (rules.TryGetValue((i, written), out var known)) return known;
            string body;
            string comma = written ? $"\",\" {space} " : "";
            if (i == properties.Count)
            {
                body = additional == null ? "" : written
                    ? $"(\",\" {space} {additional})*"
                    : $"({additional} (\",\" {space} {additional})*)?";
            }
            else
            {
                var (name, rule, isRequired) = properties[i];
                string present = $"{comma}{GbnfBuilder.Literal(JsonString(name))} {space} \":\" {space} {rule} {After(i + 1, true)}";
                body = isRequired ? present : $"{present} | {After(i + 1, written)}";
                if (body.Trim().Length == 0) body = "";
            }
            string ruleName = _builder.FreshName($"{hint}-after-{i}{(written ? "-w" : "")}");
            _builder.AddRule(ruleName, body.Trim().Length == 0 ? "\"\"" : body);
            rules[(i, written)] = ruleName;
            return ruleName;
        }
        return $"\"{{\" {space} {After(0, false)} \"}}\" {space}";
    }

    /// <summary>A JSON string key that is none of <paramref name="names"/> (so extra properties never repeat a declared
    /// one): a walk down the names' trie that leaves it, or stops where no name ends.</summary>
    string NotOneOfKey(List<string> names, string hint)
    {
        if (names.Count == 0) return _builder.Primitive("json-string");
        string chars = _builder.Primitive("json-char");
        var root = new TrieNode();
        foreach (var name in names)
        {
            var node = root;
            foreach (var rune in name.EnumerateRunes()) node = node.Children.TryGetValue(rune.Value, out var child) ? child : node.Children[rune.Value] = new TrieNode();
            node.IsWord = true;
        }
        string Visit(TrieNode node)
        {
            var alternatives = new List<string>();
            if (!node.IsWord) alternatives.Add("\"\\\"\"");
            // A character that leaves the trie: any JSON string character except the children's (written plainly).
            var excluded = node.Children.Keys.Where(c => c >= 0x20 && c != '"' && c != '\\').ToList();
            string leave = excluded.Count == 0 ? chars
                : $"([^\"\\\\\\x7F\\x00-\\x1F{string.Concat(excluded.Select(ClassChar))}] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{{4}}))";
            alternatives.Add($"{leave} {chars}* \"\\\"\"");
            foreach (var (c, child) in node.Children) alternatives.Add($"{GbnfBuilder.Literal(JsonEscapeChar(c))} {Visit(child)}");
            string name = _builder.FreshName($"{hint}-key");
            _builder.AddRule(name, string.Join(" | ", alternatives));
            return name;
        }
        string rest = Visit(root);
        string key = _builder.FreshName($"{hint}-additional-key");
        _builder.AddRule(key, $"\"\\\"\" {rest} {Space}");
        return key;
    }

    sealed class TrieNode
    {
        public readonly SortedDictionary<int, TrieNode> Children = new();
        public bool IsWord;
    }

    /// <summary>A code point as it may appear inside a GBNF class.</summary>
    static string ClassChar(int c) => c switch
    {
        '\\' => "\\\\", ']' => "\\]", '[' => "\\[", '-' => "\\-", '^' => "\\^", '"' => "\\\"",
        _ => c < 0x20 || c == 0x7F ? $"\\x{c:X2}" : char.ConvertFromUtf32(c),
    };

    /// <summary>How a character is written inside a JSON string (the canonical escape for those that need one).</summary>
    internal static string JsonEscapeChar(int c) => c switch
    {
        '"' => "\\\"", '\\' => "\\\\", '\n' => "\\n", '\r' => "\\r", '\t' => "\\t", '\b' => "\\b", '\f' => "\\f",
        _ => c < 0x20 ? $"\\u{c:x4}" : char.ConvertFromUtf32(c),
    };

    // ---- arrays ------------------------------------------------------------------------------------------------

    string ArrayBody(JsonObject o, string path, string hint)
    {
        int min = Count(o, "minItems", path) ?? 0;
        int? max = Count(o, "maxItems", path);
        if (max < min) throw Error(path, $"maxItems {max} is below minItems {min}");
        string space = Space;
        var prefix = new List<string>();
        if (o["prefixItems"] is JsonNode prefixNode)
        {
            if (prefixNode is not JsonArray list) throw Error(path + "/prefixItems", "must be an array of schemas");
            for (int i = 0; i < list.Count; i++) prefix.Add(Rule(list[i], $"{path}/prefixItems/{i}", $"{hint}-{i}"));
        }
        string? item;
        var itemsNode = o["items"];
        if (!o.ContainsKey("items")) item = prefix.Count > 0 ? null : _builder.Primitive("json-value");
        else if (itemsNode is JsonValue iv && iv.GetValueKind() == JsonValueKind.False) item = null;
        else item = Rule(itemsNode, path + "/items", $"{hint}-item");
        // The items in order: the prefix's schemas one by one, then `item` repeated.
        var elements = new List<string>();
        int fixedCount = prefix.Count;
        int upper = max ?? int.MaxValue;
        if (item == null) upper = Math.Min(upper, fixedCount);
        if (min > upper) throw Error(path, $"minItems {min} cannot be met: only {upper} items are allowed");
        if (upper != int.MaxValue && upper > MaxCount + fixedCount) throw Error(path, $"maxItems {upper} is over the limit of {MaxCount}");
        if (min > MaxCount) throw Error(path, $"minItems {min} is over the limit of {MaxCount}");
        string ItemAt(int i) => i < fixedCount ? prefix[i] : item!;
        // tail(i): items from index i on, index i being optional when i ≥ min.
        var memo = new Dictionary<int, string>();
        string Tail(int i)
        {
            if (i >= upper) return "\"\"";
            if (i >= fixedCount && upper == int.MaxValue && i >= min)
            {
                // Any number more: a loop.
                string comma = i == 0 ? "" : $"\",\" {space} ";
                string loop = _builder.FreshName($"{hint}-more");
                _builder.AddRule(loop, i == 0 ? $"({item} (\",\" {space} {item})*)?" : $"(\",\" {space} {item})*");
                _ = comma;
                return loop;
            }
            if (memo.TryGetValue(i, out var known)) return known;
            string lead = i == 0 ? "" : $"\",\" {space} ";
            string present = $"{lead}{ItemAt(i)} {Tail(i + 1)}";
            string body = i >= min ? $"{present} | \"\"" : present;
            string name = _builder.FreshName($"{hint}-items-{i}");
            _builder.AddRule(name, body);
            memo[i] = name;
            return name;
        }
        return $"\"[\" {space} {Tail(0)} \"]\" {space}";
    }

    static int? Count(JsonObject o, string key, string path)
    {
        if (!o.ContainsKey(key)) return null;
        if (o[key] is JsonValue v && v.TryGetValue(out double d) && d >= 0 && d == Math.Floor(d) && d <= int.MaxValue) return (int)d;
        throw Error($"{path}/{key}", "must be a non-negative integer");
    }

    // ---- strings -----------------------------------------------------------------------------------------------

    string StringBody(JsonObject o, string path, string hint)
    {
        string space = Space;
        int constraints = (o.ContainsKey("format") ? 1 : 0) + (o.ContainsKey("pattern") ? 1 : 0) + (o.ContainsKey("minLength") || o.ContainsKey("maxLength") ? 1 : 0);
        if (constraints > 1) throw Error(path, "only one of 'format', 'pattern' and 'minLength'/'maxLength' can be enforced on one string");
        if (o["format"] is JsonNode formatNode)
        {
            string format = formatNode is JsonValue fv && fv.TryGetValue(out string? f) ? f : throw Error(path + "/format", "must be a string");
            return $"\"\\\"\" {Format(format, path)} \"\\\"\" {space}";
        }
        if (o["pattern"] is JsonNode patternNode)
        {
            string pattern = patternNode is JsonValue pv && pv.TryGetValue(out string? p) ? p : throw Error(path + "/pattern", "must be a string");
            string content = new RegexToGbnf(_builder, pattern, path + "/pattern", hint).Convert();
            return $"\"\\\"\" {content} \"\\\"\" {space}";
        }
        int? min = Count(o, "minLength", path), max = Count(o, "maxLength", path);
        if (min == null && max == null) return _builder.Primitive("json-string");
        int lo = min ?? 0;
        if (max < lo) throw Error(path, $"maxLength {max} is below minLength {lo}");
        if (lo > MaxCount || max > MaxCount) throw Error(path, $"string lengths over {MaxCount} are not enforced");
        string chars = _builder.Primitive("json-char");
        string repeat = max == null ? $"{{{lo},}}" : $"{{{lo},{max}}}";
        return $"\"\\\"\" {chars}{repeat} \"\\\"\" {space}";
    }

    string Format(string format, string path)
    {
        switch (format)
        {
            case "date": return DateRule();
            case "time": return TimeRule();
            case "date-time": return Named("format-date-time", $"{DateRule()} \"T\" {TimeRule()}");
            case "uuid":
                return Named("format-uuid", "[0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{12}");
            case "email":
                return Named("format-email",
                    "[a-zA-Z0-9_%+-]{1,32} (\".\" [a-zA-Z0-9_%+-]{1,32}){0,3} \"@\" [a-zA-Z0-9] [a-zA-Z0-9-]{0,20} [a-zA-Z0-9]? (\".\" [a-zA-Z0-9] [a-zA-Z0-9-]{0,20} [a-zA-Z0-9]?){0,3} \".\" [a-zA-Z]{2,8}");
            default: throw Error(path + "/format", $"format '{format}' is not enforced (supported: date, time, date-time, uuid, email)");
        }
    }

    string Named(string name, string body)
    {
        if (!_builder.HasRule(name)) _builder.AddRule(name, body);
        return name;
    }

    /// <summary>RFC 3339 full-date with each month's days, 29 February only in leap years; years 0001–9999 (the year
    /// 0000 is valid RFC 3339, but common validators cannot represent it).</summary>
    string DateRule()
    {
        Named("format-year", "[1-9] [0-9]{3} | \"0\" [1-9] [0-9]{2} | \"00\" [1-9] [0-9] | \"000\" [1-9]");
        return Named("format-date",
        "format-year \"-\" (\"0\" [13578] | \"1\" [02]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01])" +
        " | format-year \"-\" (\"0\" [469] | \"11\") \"-\" (\"0\" [1-9] | [12] [0-9] | \"30\")" +
        " | format-year \"-02-\" (\"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8])" +
        " | ([0-9]{2} (\"0\" [48] | [2468] [048] | [13579] [26]) | (\"0\" [48] | [2468] [048] | [13579] [26]) \"00\") \"-02-29\"");
    }

    /// <summary>RFC 3339 full-time (seconds 00–59, optional fraction, Z or an offset).</summary>
    string TimeRule() => Named("format-time",
        "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{1,9})? (\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])");

    // ---- integers ----------------------------------------------------------------------------------------------

    string IntegerBody(JsonObject o, string path, string hint)
    {
        long? lo = Bound(o, "minimum", path, ceiling: true), hi = Bound(o, "maximum", path, ceiling: false);
        long? xlo = Bound(o, "exclusiveMinimum", path, ceiling: false), xhi = Bound(o, "exclusiveMaximum", path, ceiling: true);
        if (xlo is long a) lo = lo is long l ? Math.Max(l, a + 1) : a + 1;
        if (xhi is long b) hi = hi is long h ? Math.Min(h, b - 1) : b - 1;
        if (lo == null && hi == null) return _builder.Primitive("json-integer");
        if (lo > hi) throw Error(path, $"no integer lies between the minimum {lo} and the maximum {hi}");
        string body = IntegerRange.Gbnf(lo, hi);
        string name = _builder.FreshName($"{hint}-int");
        _builder.AddRule(name, body);
        return $"{name} {Space}";
    }

    /// <summary>A bound as an integer (a fractional bound rounds toward the inside of the range).</summary>
    static long? Bound(JsonObject o, string key, string path, bool ceiling)
    {
        if (!o.ContainsKey(key)) return null;
        if (o[key] is not JsonValue v || !v.TryGetValue(out double d) || !double.IsFinite(d)) throw Error($"{path}/{key}", "must be a number");
        double rounded = ceiling ? Math.Ceiling(d) : Math.Floor(d);
        const double limit = 999_999_999_999_999; // 15 digits, as the integer rule writes
        if (Math.Abs(rounded) > limit) throw Error($"{path}/{key}", $"{d.ToString(CultureInfo.InvariantCulture)} is beyond the ±{limit:0} integers Hone writes");
        return (long)rounded;
    }
}
