using System.Text;
using System.Text.Json.Nodes;
using Hone.ToolCalls;
using Xunit;

namespace Hone.Tests.ToolCalls;

/// <summary>
/// The GBNF rules each format writes for its calls. Until the grammar engine (Hone.Grammars) is merged, the rules go to a
/// sink whose JSON-schema rules are a generic JSON grammar, and a small backtracking recognizer here checks that the
/// calls' text as the template writes it is accepted, and that other tools' names and extra calls are not.
/// </summary>
public class ToolCallGrammarTests
{
    static readonly IReadOnlyList<ToolDefinition> Tools = ToolDefinition.ParseList(JsonNode.Parse("""
        [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
         {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]
        """));

    static readonly ToolCall[] Calls =
    [
        new("abcdefghi", "get_weather", """{"city": "Saint-Étienne \"42\"", "days": [1, 2.5e3, -4], "flags": {"a": true, "b": null}}"""),
        new("ABCDEF123", "search", """{"query": "tides\nBrest"}"""),
    ];

    const string GenericJson = """
        json-value ::= json-object | json-array | json-string | json-number | "true" | "false" | "null"
        json-object ::= "{" json-ws ( json-string json-ws ":" json-ws json-value json-ws ( "," json-ws json-string json-ws ":" json-ws json-value json-ws )* )? "}"
        json-array ::= "[" json-ws ( json-value json-ws ( "," json-ws json-value json-ws )* )? "]"
        json-string ::= "\"" ( [^"\\] | "\\" ["\\/bfnrt] )* "\""
        json-number ::= "-"? [0-9]+ ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?
        json-ws ::= [ \t\n]*
        """;

    static (string Grammar, List<string> SchemaHints) Build(ToolCallFormat format, IReadOnlyList<ToolDefinition> tools, bool parallel)
    {
        var rules = new StringBuilder();
        var hints = new List<string>();
        var sink = new GbnfRuleSink((hint, schema) => { hints.Add(hint); return "json-object"; }, (name, body) => rules.Append($"{name} ::= {body}\n"));
        string root = format.AddCallRules(sink, tools, parallel);
        return ($"root ::= {root}\n{rules}{GenericJson}", hints);
    }

    [Theory]
    [InlineData("hermes")]
    [InlineData("mistral")]
    [InlineData("llama3-json")]
    public void The_calls_the_template_writes_are_accepted_and_others_refused(string name)
    {
        var format = ToolCallFormat.All.Single(f => f.Name == name);
        var (grammar, hints) = Build(format, Tools, parallel: true);
        Assert.Equal(["get_weather-arguments", "search-arguments"], hints);
        var recognizer = new GbnfRecognizer(grammar);
        foreach (var call in Calls) Assert.True(recognizer.Accepts(format.WriteCalls([call])), $"{format.WriteCalls([call])}\nnot accepted by\n{grammar}");
        if (format.SupportsParallelCalls) Assert.True(recognizer.Accepts(format.WriteCalls(Calls)), format.WriteCalls(Calls));
        var unknown = new ToolCall("abcdefghi", "delete_everything", "{}");
        Assert.False(recognizer.Accepts(format.WriteCalls([unknown])));
        Assert.False(recognizer.Accepts("Some text " + format.WriteCalls([Calls[0]]))); // the rule starts at the trigger
        Assert.StartsWith(format.Triggers[0], format.WriteCalls([Calls[0]]));

        var (single, _) = Build(format, Tools, parallel: false);
        var one = new GbnfRecognizer(single);
        Assert.True(one.Accepts(format.WriteCalls([Calls[0]])));
        if (format.SupportsParallelCalls) Assert.False(one.Accepts(format.WriteCalls(Calls)));
    }

    [Fact]
    public void A_named_function_is_the_only_call_allowed()
    {
        var hermes = ToolCallFormat.All.Single(f => f.Name == "hermes");
        var recognizer = new GbnfRecognizer(Build(hermes, [Tools[1]], parallel: false).Grammar);
        Assert.True(recognizer.Accepts(hermes.WriteCalls([Calls[1]])));
        Assert.False(recognizer.Accepts(hermes.WriteCalls([Calls[0]])));
    }

    [Theory]
    [InlineData("hermes")]
    [InlineData("mistral")]
    [InlineData("llama3-json")]
    public void With_the_grammar_engine_the_calls_follow_the_tools_schemas(string name)
    {
        var format = ToolCallFormat.All.Single(f => f.Name == name);
        var builder = new Hone.Grammars.GbnfBuilder(new Hone.Grammars.JsonSchemaOptions(AdditionalPropertiesDefault: false));
        var text = builder.Build(format.AddCallRules(builder, Tools, parallel: true));
        var grammar = Hone.Grammars.Grammar.ParseGbnf(text, name);
        ToolCall[] calls = [new("abcdefghi", "get_weather", """{"city": "Saint-Étienne \"42\""}"""), new("ABCDEF123", "search", """{"query": "tides\nBrest"}""")];
        foreach (var call in calls) Assert.True(grammar.Matches(format.WriteCalls([call])), $"{format.WriteCalls([call])}\nnot matched by\n{text}");
        if (format.SupportsParallelCalls) Assert.True(grammar.Matches(format.WriteCalls(calls)));
        Assert.False(grammar.Matches(format.WriteCalls([new("abcdefghi", "get_weather", """{"city": "Oslo", "extra": 1}""")]))); // strict arguments
        Assert.False(grammar.Matches(format.WriteCalls([new("abcdefghi", "get_weather", """{"city": 5}""")])));
        Assert.False(grammar.Matches(format.WriteCalls([new("abcdefghi", "delete_everything", "{}")])));
    }

    [Fact]
    public void Literals_escape_what_gbnf_escapes()
    {
        Assert.Equal("\"a\\\"b\\\\c\\nd\\te\\x01é\"", GbnfRuleSink.Literal("a\"b\\c\nd\te\u0001é"));
        Assert.True(new GbnfRecognizer("root ::= " + GbnfRuleSink.Literal("a\"b\\c\nd\te\u0001é")).Accepts("a\"b\\c\nd\te\u0001é"));
    }

    /// <summary>A backtracking recognizer for the GBNF subset these rules use: literals, classes, rule references,
    /// groups, alternation and * + ?. For tests only: it tries every way, so it is exponential on hostile grammars.</summary>
    sealed class GbnfRecognizer
    {
        abstract record Node;
        sealed record Literal(string Text) : Node;
        sealed record CharClass(List<(char From, char To)> Ranges, bool Negated) : Node;
        sealed record RuleReference(string Name) : Node;
        sealed record Sequence(List<Node> Items) : Node;
        sealed record Choice(List<Node> Options) : Node;
        sealed record Repeat(Node Item, int Min, bool Many) : Node;

        readonly Dictionary<string, Node> rules = new();

        public GbnfRecognizer(string grammar)
        {
            foreach (var line in grammar.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                int at = line.IndexOf("::=", StringComparison.Ordinal);
                Assert.True(at > 0, $"not a rule: {line}");
                string name = line[..at].Trim();
                Assert.Matches("^[a-zA-Z0-9-]+$", name);
                Assert.False(rules.ContainsKey(name), $"rule {name} defined twice");
                int position = at + 3;
                try { rules[name] = ParseChoice(line, ref position); }
                catch (IndexOutOfRangeException) { Assert.Fail($"unterminated literal or class in: {line}"); }
                Skip(line, ref position);
                Assert.True(position == line.Length, $"unparsed: {line[position..]}");
            }
            foreach (var reference in rules.Values.SelectMany(References)) Assert.True(rules.ContainsKey(reference), $"undefined rule {reference}");
        }

        IEnumerable<string> References(Node node) => node switch
        {
            RuleReference r => [r.Name],
            Sequence s => s.Items.SelectMany(References),
            Choice c => c.Options.SelectMany(References),
            Repeat r => References(r.Item),
            _ => [],
        };

        static void Skip(string s, ref int i) { while (i < s.Length && s[i] == ' ') i++; }

        Node ParseChoice(string s, ref int i)
        {
            var options = new List<Node> { ParseSequence(s, ref i) };
            while (true)
            {
                Skip(s, ref i);
                if (i < s.Length && s[i] == '|') { i++; options.Add(ParseSequence(s, ref i)); }
                else return options.Count == 1 ? options[0] : new Choice(options);
            }
        }

        Node ParseSequence(string s, ref int i)
        {
            var items = new List<Node>();
            while (true)
            {
                Skip(s, ref i);
                if (i >= s.Length || s[i] is '|' or ')') return new Sequence(items);
                Node item;
                if (s[i] == '"') item = new Literal(ReadQuoted(s, ref i, '"'));
                else if (s[i] == '[') item = ReadClass(s, ref i);
                else if (s[i] == '(') { i++; item = ParseChoice(s, ref i); Skip(s, ref i); Assert.Equal(')', s[i]); i++; }
                else
                {
                    int start = i;
                    while (i < s.Length && (char.IsAsciiLetterOrDigit(s[i]) || s[i] == '-')) i++;
                    if (i == start) Assert.Fail($"unexpected '{s[i]}' in {s}");
                    item = new RuleReference(s[start..i]);
                }
                if (i < s.Length && s[i] is '*' or '+' or '?') { item = new Repeat(item, s[i] == '+' ? 1 : 0, s[i] != '?'); i++; }
                items.Add(item);
            }
        }

        static char ReadEscaped(string s, ref int i)
        {
            char c = s[i++];
            if (c != '\\') return c;
            c = s[i++];
            switch (c)
            {
                case 'n': return '\n';
                case 'r': return '\r';
                case 't': return '\t';
                case 'x': i += 2; return (char)Convert.ToInt32(s.Substring(i - 2, 2), 16);
                default: return c;
            }
        }

        static string ReadQuoted(string s, ref int i, char end)
        {
            i++;
            var sb = new StringBuilder();
            while (s[i] != end) sb.Append(ReadEscaped(s, ref i));
            i++;
            return sb.ToString();
        }

        static CharClass ReadClass(string s, ref int i)
        {
            i++;
            bool negated = s[i] == '^';
            if (negated) i++;
            var ranges = new List<(char, char)>();
            while (s[i] != ']')
            {
                char from = ReadEscaped(s, ref i), to = from;
                if (s[i] == '-' && s[i + 1] != ']') { i++; to = ReadEscaped(s, ref i); }
                ranges.Add((from, to));
            }
            i++;
            return new CharClass(ranges, negated);
        }

        public bool Accepts(string text) => Match(rules["root"], text, 0).Any(end => end == text.Length);

        IEnumerable<int> Match(Node node, string text, int at)
        {
            switch (node)
            {
                case Literal l:
                    if (string.CompareOrdinal(text, at, l.Text, 0, l.Text.Length) == 0 && at + l.Text.Length <= text.Length) yield return at + l.Text.Length;
                    break;
                case CharClass c:
                    if (at < text.Length && c.Ranges.Any(r => text[at] >= r.From && text[at] <= r.To) != c.Negated) yield return at + 1;
                    break;
                case RuleReference r:
                    foreach (var end in Match(rules[r.Name], text, at)) yield return end;
                    break;
                case Choice c:
                    foreach (var option in c.Options) foreach (var end in Match(option, text, at)) yield return end;
                    break;
                case Sequence s:
                    foreach (var end in MatchSequence(s.Items, 0, text, at)) yield return end;
                    break;
                case Repeat r:
                    foreach (var end in MatchRepeat(r, 0, text, at)) yield return end;
                    break;
            }
        }

        IEnumerable<int> MatchSequence(List<Node> items, int index, string text, int at)
        {
            if (index == items.Count) { yield return at; yield break; }
            foreach (var middle in Match(items[index], text, at))
                foreach (var end in MatchSequence(items, index + 1, text, middle)) yield return end;
        }

        IEnumerable<int> MatchRepeat(Repeat r, int count, string text, int at)
        {
            if (count < (r.Many ? int.MaxValue : 1))
                foreach (var middle in Match(r.Item, text, at))
                    if (middle > at)
                        foreach (var end in MatchRepeat(r, count + 1, text, middle)) yield return end;
            if (count >= r.Min) yield return at;
        }
    }
}
