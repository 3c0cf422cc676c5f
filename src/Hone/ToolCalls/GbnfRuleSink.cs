using System.Text;
using System.Text.Json.Nodes;

namespace Hone.ToolCalls;

/// <summary>
/// Where tool-call rules go: a GBNF grammar builder's two operations (add a JSON schema's rules, returning the rule to
/// reference; add a rule in GBNF syntax). Grammars sit below tool calls, so a builder is handed over as
/// <c>new GbnfRuleSink(builder.AddJsonSchema, builder.AddRule)</c>.
/// </summary>
public sealed class GbnfRuleSink(Func<string, JsonNode, string> addJsonSchema, Action<string, string> addRule)
{
    public string AddJsonSchema(string nameHint, JsonNode schema) => addJsonSchema(nameHint, schema);

    public void AddRule(string name, string body) => addRule(name, body);

    /// <summary>A quoted GBNF literal for <paramref name="text"/> (llama.cpp's escapes: \" \\ \n \r \t, \xHH for other controls).</summary>
    public static string Literal(string text)
    {
        var sb = new StringBuilder(text.Length + 2).Append('"');
        foreach (char c in text)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c < ' ') sb.Append($"\\x{(int)c:X2}");
                    else sb.Append(c);
                    break;
            }
        }
        return sb.Append('"').ToString();
    }
}
