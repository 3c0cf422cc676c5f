using System.Text;
using System.Text.Json.Nodes;

namespace Hone.Grammars;

/// <summary>How JSON Schemas become grammars.</summary>
/// <param name="AdditionalPropertiesDefault">whether an object schema without <c>additionalProperties</c> admits
/// properties it does not list. JSON Schema says yes; tool arguments and OpenAI's strict mode say no, and so does
/// Hone (as llama.cpp): a model should write the properties the schema names.</param>
/// <param name="MaxIndent">the most spaces or tabs a line break inside JSON may be followed by</param>
public sealed record JsonSchemaOptions(bool AdditionalPropertiesDefault = false, int MaxIndent = 20);

/// <summary>
/// Writes GBNF grammar text: rules added by hand (<see cref="AddRule"/>) and the rules that match JSON valid under a
/// JSON Schema (<see cref="AddJsonSchema"/>), sharing the primitive rules (strings, numbers, whitespace) between
/// schemas. <see cref="Build"/> gives the text, which <see cref="Grammar.ParseGbnf"/> compiles.
/// </summary>
public sealed class GbnfBuilder
{
    readonly JsonSchemaOptions _options;
    readonly Dictionary<string, string> _rules = new(StringComparer.Ordinal);
    readonly List<string> _order = new();

    public GbnfBuilder(JsonSchemaOptions? options = null) => _options = options ?? new JsonSchemaOptions();

    public JsonSchemaOptions Options => _options;

    /// <summary>Adds <c>name ::= body</c> (body in GBNF). Names are letters, digits and '-'; each is defined once.</summary>
    public void AddRule(string name, string body)
    {
        if (name.Length == 0 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c == '-'))
            throw new ArgumentException($"rule name '{name}' must be letters, digits and '-'", nameof(name));
        if (!_rules.TryAdd(name, body)) throw new ArgumentException($"rule '{name}' is already defined", nameof(name));
        _order.Add(name);
    }

    public bool HasRule(string name) => _rules.ContainsKey(name);

    /// <summary>A rule name not used yet, made from a hint (anything outside letters, digits and '-' becomes '-').</summary>
    public string FreshName(string hint)
    {
        var clean = new StringBuilder();
        foreach (char c in hint) clean.Append(char.IsAsciiLetterOrDigit(c) ? c : '-');
        string name = clean.Length == 0 ? "rule" : clean.ToString();
        if (name == "root" || _rules.ContainsKey(name) || _reserved.Contains(name))
            for (int n = 1; ; n++)
                if (!_rules.ContainsKey($"{name}-{n}") && !_reserved.Contains($"{name}-{n}")) { name = $"{name}-{n}"; break; }
        _reserved.Add(name);
        return name;
    }

    readonly HashSet<string> _reserved = new(StringComparer.Ordinal);

    /// <summary>A GBNF literal matching exactly <paramref name="text"/>.</summary>
    public static string Literal(string text)
    {
        var s = new StringBuilder("\"");
        foreach (var rune in text.EnumerateRunes())
        {
            switch (rune.Value)
            {
                case '"': s.Append("\\\""); break;
                case '\\': s.Append("\\\\"); break;
                case '\n': s.Append("\\n"); break;
                case '\r': s.Append("\\r"); break;
                case '\t': s.Append("\\t"); break;
                default:
                    if (rune.Value < 0x20 || rune.Value == 0x7F) s.Append($"\\x{rune.Value:X2}");
                    else s.Append(rune.ToString());
                    break;
            }
        }
        return s.Append('"').ToString();
    }

    /// <summary>Adds the rules matching JSON text (a value followed by optional whitespace) valid under
    /// <paramref name="schema"/>; returns the rule to reference.
    /// <para>Enforced: <c>type</c> (one or a list), <c>properties</c>, <c>required</c>, <c>additionalProperties</c>
    /// (false or a schema; absent = <see cref="JsonSchemaOptions.AdditionalPropertiesDefault"/>), <c>items</c>,
    /// <c>prefixItems</c>, <c>minItems</c>/<c>maxItems</c>, <c>enum</c>, <c>const</c>, <c>anyOf</c>/<c>oneOf</c>,
    /// <c>$ref</c> into <c>$defs</c>/<c>definitions</c> (recursion included), <c>minLength</c>/<c>maxLength</c>,
    /// <c>format</c> date, time, date-time, uuid and email, <c>pattern</c> (a regular expression subset: literals,
    /// classes, <c>.</c>, groups, alternation, quantifiers; unanchored ends match any text), and
    /// <c>minimum</c>/<c>maximum</c>/<c>exclusiveMinimum</c>/<c>exclusiveMaximum</c> for integers. Annotations
    /// (title, description, default, examples, $schema, $id, $comment, deprecated, readOnly, writeOnly) are
    /// ignored. Any other keyword throws <see cref="GrammarException"/> naming it and where it is.</para>
    /// Properties are written in the schema's order (the order a template or a person writes them).</summary>
    public string AddJsonSchema(string nameHint, JsonNode schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        return new JsonSchemaConverter(this, schema).Convert(nameHint);
    }

    /// <summary>The grammar text, with <c>root ::= rootBody</c> first.</summary>
    public string Build(string rootBody)
    {
        var text = new StringBuilder();
        text.Append("root ::= ").Append(rootBody).Append('\n');
        foreach (var name in _order) text.Append(name).Append(" ::= ").Append(_rules[name]).Append('\n');
        return text.ToString();
    }

    // ---- shared primitive rules --------------------------------------------------------------------------------

    /// <summary>A primitive rule by name, added on first use.</summary>
    internal string Primitive(string name)
    {
        if (_rules.ContainsKey(name)) return name;
        string body = name switch
        {
            "space" => $"| \" \" | \"\\n\" [ \\t]{{0,{_options.MaxIndent}}}",
            "json-char" => "[^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})",
            "json-string" => $"\"\\\"\" {Primitive("json-char")}* \"\\\"\" {Primitive("space")}",
            "json-integer" => $"\"-\"? (\"0\" | [1-9] [0-9]{{0,15}}) {Primitive("space")}",
            "json-number" => $"\"-\"? (\"0\" | [1-9] [0-9]{{0,15}}) (\".\" [0-9]{{1,16}})? ([eE] [-+]? [0-9]{{1,2}})? {Primitive("space")}",
            "json-boolean" => $"(\"true\" | \"false\") {Primitive("space")}",
            "json-null" => $"\"null\" {Primitive("space")}",
            "json-value" => $"json-object | json-array | {Primitive("json-string")} | {Primitive("json-number")} | {Primitive("json-boolean")} | {Primitive("json-null")}",
            "json-object" => $"\"{{\" {Primitive("space")} ({Primitive("json-string")} \":\" space json-value (\",\" space json-string \":\" space json-value)*)? \"}}\" space",
            "json-array" => $"\"[\" {Primitive("space")} (json-value (\",\" space json-value)*)? \"]\" space",
            _ => throw new InvalidOperationException($"no primitive rule '{name}'"),
        };
        AddRule(name, body);
        if (name == "json-value") { Primitive("json-object"); Primitive("json-array"); }
        if (name is "json-object" or "json-array") Primitive("json-value");
        return name;
    }
}
