using System.Text;
using System.Text.Json.Nodes;

namespace Hone.Evaluation;

/// <summary>
/// Task text templates: {name} is replaced by a field's text, {{ and }} are literal braces. Deliberately this small
/// (no expressions): what a task sends to the model should be readable in the task file.
/// </summary>
public static class PromptTemplate
{
    public static string Render(string template, Func<string, string> lookup)
    {
        var sb = new StringBuilder(template.Length + 64);
        for (int i = 0; i < template.Length; i++)
        {
            char c = template[i];
            if (c == '{' && i + 1 < template.Length && template[i + 1] == '{') { sb.Append('{'); i++; continue; }
            if (c == '}' && i + 1 < template.Length && template[i + 1] == '}') { sb.Append('}'); i++; continue; }
            if (c == '}') throw new FormatException($"template {Quote(template)}: a lone '}}' (write }}}} for a literal brace)");
            if (c != '{') { sb.Append(c); continue; }
            int end = template.IndexOf('}', i + 1);
            if (end < 0) throw new FormatException($"template {Quote(template)}: '{{' without a closing '}}' (write {{{{ for a literal brace)");
            string name = template[(i + 1)..end];
            if (name.Length == 0 || name.Any(ch => !(char.IsLetterOrDigit(ch) || ch == '_')))
                throw new FormatException($"template {Quote(template)}: bad field name {Quote(name)}");
            sb.Append(lookup(name));
            i = end;
        }
        return sb.ToString();
    }

    /// <summary>The field names a template uses (validates it as well).</summary>
    public static IReadOnlyList<string> Fields(string template)
    {
        var names = new List<string>();
        Render(template, n => { names.Add(n); return ""; });
        return names;
    }

    /// <summary>A record field as template text: strings as they are, numbers and booleans as JSON, arrays and objects
    /// as compact JSON. A missing or null field is an error naming it.</summary>
    public static string FieldText(JsonObject record, string field) => record[field] switch
    {
        null => throw new FormatException($"the record has no field \"{field}\" (fields: {string.Join(", ", record.Select(p => p.Key))})"),
        JsonValue v when v.TryGetValue(out string? s) => s,
        var other => other.ToJsonString(),
    };

    static string Quote(string s) => "\"" + (s.Length > 60 ? s[..57] + "..." : s).Replace("\n", "\\n") + "\"";
}
