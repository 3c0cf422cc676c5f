using System.Text.Json.Nodes;
using Hone.Batching;
using Hone.Grammars;
using Hone.Tests.Infrastructure;
using Hone.Tokenization.Templates;
using Hone.ToolCalls;
using Xunit;

namespace Hone.Tests.Batching;

/// <summary>The grammars a chat turn gets for each tool choice, checked against the calls the real templates write
/// (Grammar.Matches on the text; the template is the judge of the format).</summary>
public class ChatConstraintsTests
{
    static readonly IReadOnlyList<ToolDefinition> Tools = ToolDefinition.ParseList(TinyToolModel.Tools());

    static string Calls(ToolCallFormat format, params (string Name, string Arguments)[] calls) =>
        format.WriteCalls(calls.Select((c, i) => new ToolCall($"abcdefgh{i}", c.Name, c.Arguments)).ToList());

    public static TheoryData<string> Templates => new()
    {
        "tiny", "Qwen-Qwen2.5-7B-Instruct.jinja", "meta-llama-Llama-3.1-8B-Instruct.jinja", "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    };

    static ToolCallFormat Format(string template) => ToolCallFormat.Detect(template == "tiny"
        ? ChatTemplate.Parse(TinyToolModel.Template, "tiny")
        : ChatTemplate.Parse(File.ReadAllText(SharedData.Require(Path.Combine("chat-templates", "llama.cpp", template))), template))!;

    [SkippableTheory]
    [MemberData(nameof(Templates))]
    public void Each_tool_choice_gets_the_grammar_it_promises(string template)
    {
        var format = Format(template);
        Assert.NotNull(format);
        string status = Calls(format, ("get_order_status", """{"order": 7}""")), cancel = Calls(format, ("cancel_order", """{"order": 7, "reason": "late"}"""));

        var required = ChatConstraints.ForTools(format, Tools, ToolChoice.Required, parallel: true);
        Assert.False(required.Grammar!.IsLazy);
        Assert.Same(format, required.Format);
        Assert.True(required.Grammar.Grammar.Matches(status), status);
        Assert.True(required.Grammar.Grammar.Matches(cancel), cancel);
        Assert.False(required.Grammar.Grammar.Matches(Calls(format, ("get_order_status", """{"order": 7000}"""))), "maximum 999");
        Assert.False(required.Grammar.Grammar.Matches(Calls(format, ("cancel_order", """{"order": 7, "reason": "bored"}"""))), "enum");
        Assert.False(required.Grammar.Grammar.Matches("Order 7 is on its way."));
        if (format.SupportsParallelCalls)
        {
            string both = Calls(format, ("get_order_status", """{"order": 7}"""), ("cancel_order", """{"order": 7, "reason": "late"}"""));
            Assert.True(required.Grammar.Grammar.Matches(both), both);
            Assert.False(ChatConstraints.ForTools(format, Tools, ToolChoice.Required, parallel: false).Grammar!.Grammar.Matches(both), "parallel_tool_calls false: one call");
        }

        var named = ChatConstraints.ForTools(format, Tools, new ToolChoice(ToolChoiceMode.Named, "cancel_order"), parallel: true);
        Assert.True(named.Grammar!.Grammar.Matches(cancel));
        Assert.False(named.Grammar.Grammar.Matches(status), "only the named function");
        Assert.Throws<ArgumentException>(() => ChatConstraints.ForTools(format, Tools, new ToolChoice(ToolChoiceMode.Named, "refund"), parallel: true));

        var auto = ChatConstraints.ForTools(format, Tools, ToolChoice.Auto, parallel: true);
        Assert.True(auto.Grammar!.IsLazy);
        Assert.Equal(format.Triggers, auto.Grammar.Triggers);
        Assert.Equal(format.TriggersAtTurnStartOnly, auto.Grammar.TriggerAtStartOnly);
        Assert.True(auto.Grammar.Grammar.Matches(status)); // the root starts with the trigger

        // auto with a JSON answer: calls or that JSON, from the first token.
        var either = ChatConstraints.ForTools(format, Tools, ToolChoice.Auto, parallel: true, JsonNode.Parse("""{"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}"""));
        Assert.False(either.Grammar!.IsLazy);
        Assert.True(either.Grammar.Grammar.Matches(status));
        Assert.True(either.Grammar.Grammar.Matches("""{"answer": "on its way"}"""));
        Assert.False(either.Grammar.Grammar.Matches("on its way"));

        var none = ChatConstraints.ForTools(format, Tools, ToolChoice.None, parallel: true);
        Assert.Null(none.Grammar);
        Assert.Null(none.Format);
    }

    [Fact]
    public void Schemas_are_cached_and_bad_keywords_named()
    {
        var a = ChatConstraints.ForJsonSchema(ChatConstraints.AnyObjectSchema());
        var b = ChatConstraints.ForJsonSchema(ChatConstraints.AnyObjectSchema());
        Assert.Same(a.Grammar, b.Grammar); // one compiled grammar (and one set of token masks) for the same schema
        Assert.True(a.Grammar.Matches("""{"x": [1, {"y": null}]}"""));
        Assert.False(a.Grammar.Matches("[1]"));
        var e = Assert.Throws<GrammarException>(() => ChatConstraints.ForJsonSchema(JsonNode.Parse("""{"type": "object", "dependentRequired": {}}""")!));
        Assert.Contains("keyword 'dependentRequired'", e.Message);
        var bad = ToolDefinition.ParseList(JsonNode.Parse("""[{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"not": {}}}}}}]"""));
        Assert.Throws<GrammarException>(() => ChatConstraints.ForTools(Format("tiny"), bad, ToolChoice.Auto, parallel: true));
    }
}
