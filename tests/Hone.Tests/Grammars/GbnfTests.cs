using Hone.Grammars;
using Xunit;

namespace Hone.Tests.Grammars;

public class GbnfTests
{
    [Theory]
    [InlineData("root ::= \"ab\" | \"c\"", "ab", true)]
    [InlineData("root ::= \"ab\" | \"c\"", "c", true)]
    [InlineData("root ::= \"ab\" | \"c\"", "a", false)]
    [InlineData("root ::= \"ab\" | \"c\"", "abc", false)]
    [InlineData("root ::= [a-c]+ \"!\"", "abcba!", true)]
    [InlineData("root ::= [a-c]+ \"!\"", "!", false)]
    [InlineData("root ::= [^a-c]*", "xyz", true)]
    [InlineData("root ::= [^a-c]*", "xaz", false)]
    [InlineData("root ::= x{2,3}\nx ::= \"ab\"", "abab", true)]
    [InlineData("root ::= x{2,3}\nx ::= \"ab\"", "ababab", true)]
    [InlineData("root ::= x{2,3}\nx ::= \"ab\"", "ab", false)]
    [InlineData("root ::= x{2,3}\nx ::= \"ab\"", "abababab", false)]
    [InlineData("root ::= (\"a\" | \"b\"){2,}", "abba", true)]
    [InlineData("root ::= (\"a\" | \"b\"){2,}", "a", false)]
    [InlineData("root ::= \"x\"? \"y\"", "y", true)]
    [InlineData("root ::= \"x\"? \"y\"", "xy", true)]
    [InlineData("root ::= .+", "héllo 🙂", true)]
    [InlineData("root ::= [α-ω]+", "λμ", true)]
    [InlineData("root ::= [α-ω]+", "λa", false)]
    [InlineData("root ::= \"\\u00e9\\x41\\n\"", "éA\n", true)]
    [InlineData("# a comment\nroot ::= (\n  \"a\" # inside\n  | \"b\"\n)\n", "b", true)]
    [InlineData("root ::= \"(\" root \")\" | \"\"", "((()))", true)]
    [InlineData("root ::= \"(\" root \")\" | \"\"", "(()", false)]
    public void Matches_like_a_grammar_should(string grammar, string text, bool expected) =>
        Assert.Equal(expected, Grammar.ParseGbnf(grammar).Matches(text));

    [Theory]
    [InlineData("root ::= \"a", "grammar:1:10: unterminated string literal")]
    [InlineData("root ::= a\n", "grammar:1: rule 'a' is used but never defined")]
    [InlineData("root ::= \"a\"\nroot ::= \"b\"", "grammar:2:1: rule 'root' is defined twice")]
    [InlineData("start ::= \"a\"", "there is no 'root' rule")]
    [InlineData("root ::= root \"a\" | \"b\"", "rule 'root' is left-recursive")]
    [InlineData("root ::= a\na ::= b? a \"x\" | \"y\"\nb ::= \"z\"", "rule 'a' is left-recursive")]
    [InlineData("root ::= \"a\" root", "rule 'root' can never finish")]
    [InlineData("root ::= [a-c", "unterminated character class")]
    [InlineData("root ::= \"a\"{3,2}", "the maximum is below the minimum")]
    [InlineData("root ::= <think>", "token references")]
    [InlineData("root ::= \"a\" )", "unexpected ')'")]
    [InlineData("root ::= \"\\q\"", "unknown escape '\\q'")]
    [InlineData("root ::= *", "'*' has nothing before it to repeat")]
    [InlineData("root ::= \"a\"{20000}", "over the limit")]
    [InlineData("root ::= [z-a]", "is backwards")]
    public void Broken_grammars_are_refused_with_the_line(string grammar, string message)
    {
        var e = Assert.Throws<GrammarException>(() => Grammar.ParseGbnf(grammar));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void The_json_grammar_of_llama_cpp_parses_and_matches()
    {
        // grammars/json.gbnf as llama.cpp ships it (its text is the format's documentation).
        const string json = """
            root   ::= object
            value  ::= object | array | string | number | ("true" | "false" | "null") ws

            object ::=
              "{" ws (
                        string ":" ws value
                ("," ws string ":" ws value)*
              )? "}" ws

            array  ::=
              "[" ws (
                        value
                ("," ws value)*
              )? "]" ws

            string ::=
              "\"" (
                [^"\\\x7F\x00-\x1F] |
                "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
              )* "\"" ws

            number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws

            # Optional space: by convention, applied in this grammar after literal chars when allowed
            ws ::= | " " | "\n" [ \t]{0,20}
            """;
        var grammar = Grammar.ParseGbnf(json, "json.gbnf");
        Assert.True(grammar.Matches("{\"a\": [1, 2.5e3, true, null, {\"b\": \"x\\u00e9\\n\"}]}"));
        Assert.False(grammar.Matches("{\"a\": [1, 2,]}"));
        Assert.False(grammar.Matches("{\"a\" 1}"));
    }
}

public class GrammarFuzzTests
{
    const string Json = """
        root   ::= object
        value  ::= object | array | string | number | ("true" | "false" | "null") ws
        object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
        array  ::= "[" ws ( value ("," ws value)* )? "]" ws
        string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
        number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
        ws ::= | " " | "\n" [ \t]{0,20}
        """;

    const string Schema = """
        {"type": "object", "properties": {"id": {"type": "string", "pattern": "^#W[0-9]{7}$"}, "n": {"type": "integer", "minimum": -5, "maximum": 300},
         "tags": {"type": "array", "items": {"enum": ["a", "b\"c", 1, null]}, "maxItems": 3}, "when": {"type": "string", "format": "date-time"},
         "next": {"$ref": "#"}}, "required": ["id"], "additionalProperties": {"type": "boolean"}}
        """;

    /// <summary>Damaged grammars and schemas (bytes dropped, repeated, swapped, replaced by syntax characters) are
    /// either compiled or refused with a GrammarException (or, for a schema that is no longer JSON, a JsonException) —
    /// never another exception, never a hang.</summary>
    [Fact]
    public void Damaged_grammars_and_schemas_are_compiled_or_refused_never_crash()
    {
        var random = new Random(17);
        const string syntax = "\"[]()|*+?{},:^-\\#.\n 0123456789aZ";
        string Damage(string text)
        {
            var chars = text.ToList();
            int edits = random.Next(1, 6);
            for (int e = 0; e < edits && chars.Count > 0; e++)
            {
                int at = random.Next(chars.Count);
                switch (random.Next(4))
                {
                    case 0: chars.RemoveAt(at); break;
                    case 1: chars.Insert(at, chars[random.Next(chars.Count)]); break;
                    case 2: chars[at] = syntax[random.Next(syntax.Length)]; break;
                    default: (chars[at], chars[random.Next(chars.Count)]) = (chars[random.Next(chars.Count)], chars[at]); break;
                }
            }
            return new string(chars.ToArray());
        }
        int compiled = 0, refused = 0;
        for (int i = 0; i < 1500; i++)
        {
            string grammar = Damage(Json);
            try { Grammar.ParseGbnf(grammar).Matches("{\"a\": [1, true]}"); compiled++; }
            catch (GrammarException e) { Assert.False(string.IsNullOrWhiteSpace(e.Message)); refused++; }

            string schema = Damage(Schema);
            System.Text.Json.Nodes.JsonNode? node;
            try { node = System.Text.Json.Nodes.JsonNode.Parse(schema); }
            catch (System.Text.Json.JsonException) { continue; }
            if (node == null) continue;
            try { Grammar.FromJsonSchema(node).Matches("{\"id\": \"#W1234567\"}"); compiled++; }
            catch (GrammarException e) { Assert.False(string.IsNullOrWhiteSpace(e.Message)); refused++; }
        }
        Assert.True(compiled > 100 && refused > 100, $"compiled {compiled}, refused {refused}");
    }
}
