using System.Text;
using System.Text.Json.Nodes;
using Hone.Grammars;
using Hone.ToolCalls;
using Xunit;

namespace Hone.Tests.ToolCalls;

/// <summary>The GBNF rules each format writes for its calls: the calls' text as the template writes it is accepted, other
/// tools' names, extra calls and arguments off the schema are not.</summary>
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

    static Grammar Build(ToolCallFormat format, IReadOnlyList<ToolDefinition> tools, bool parallel)
    {
        var builder = new GbnfBuilder(new JsonSchemaOptions(AdditionalPropertiesDefault: true));
        return Grammar.ParseGbnf(builder.Build(format.AddCallRules(builder, tools, parallel)), format.Name);
    }

    [Theory]
    [InlineData("hermes")]
    [InlineData("mistral")]
    [InlineData("llama3-json")]
    public void The_calls_the_template_writes_are_accepted_and_others_refused(string name)
    {
        var format = ToolCallFormat.All.Single(f => f.Name == name);
        var grammar = Build(format, Tools, parallel: true);
        foreach (var call in Calls) Assert.True(grammar.Matches(format.WriteCalls([call])), $"{format.WriteCalls([call])}\nnot accepted by\n{grammar.Text}");
        if (format.SupportsParallelCalls) Assert.True(grammar.Matches(format.WriteCalls(Calls)), format.WriteCalls(Calls));
        var unknown = new ToolCall("abcdefghi", "delete_everything", "{}");
        Assert.False(grammar.Matches(format.WriteCalls([unknown])));
        Assert.False(grammar.Matches("Some text " + format.WriteCalls([Calls[0]]))); // the rule starts at the trigger
        Assert.StartsWith(format.Triggers[0], format.WriteCalls([Calls[0]]));

        var one = Build(format, Tools, parallel: false);
        Assert.True(one.Matches(format.WriteCalls([Calls[0]])));
        if (format.SupportsParallelCalls) Assert.False(one.Matches(format.WriteCalls(Calls)));
    }

    [Fact]
    public void A_named_function_is_the_only_call_allowed()
    {
        var hermes = ToolCallFormat.All.Single(f => f.Name == "hermes");
        var grammar = Build(hermes, [Tools[1]], parallel: false);
        Assert.True(grammar.Matches(hermes.WriteCalls([Calls[1]])));
        Assert.False(grammar.Matches(hermes.WriteCalls([Calls[0]])));
    }

    [Theory]
    [InlineData("hermes")]
    [InlineData("mistral")]
    [InlineData("llama3-json")]
    public void With_the_grammar_engine_the_calls_follow_the_tools_schemas(string name)
    {
        var format = ToolCallFormat.All.Single(f => f.Name == name);
        var builder = new GbnfBuilder(new JsonSchemaOptions(AdditionalPropertiesDefault: false));
        var text = builder.Build(format.AddCallRules(builder, Tools, parallel: true));
        var grammar = Grammar.ParseGbnf(text, name);
        ToolCall[] calls = [new("abcdefghi", "get_weather", """{"city": "Saint-Étienne \"42\""}"""), new("ABCDEF123", "search", """{"query": "tides\nBrest"}""")];
        foreach (var call in calls) Assert.True(grammar.Matches(format.WriteCalls([call])), $"{format.WriteCalls([call])}\nnot matched by\n{text}");
        if (format.SupportsParallelCalls) Assert.True(grammar.Matches(format.WriteCalls(calls)));
        Assert.False(grammar.Matches(format.WriteCalls([new("abcdefghi", "get_weather", """{"city": "Oslo", "extra": 1}""")]))); // strict arguments
        Assert.False(grammar.Matches(format.WriteCalls([new("abcdefghi", "get_weather", """{"city": 5}""")])));
        Assert.False(grammar.Matches(format.WriteCalls([new("abcdefghi", "delete_everything", "{}")])));
    }
}
