using System.Text.Json.Nodes;
using Hone.ToolCalls;
using Xunit;

namespace Hone.Tests.ToolCalls;

public class ToolDefinitionTests
{
    [Fact]
    public void Reads_openai_tools()
    {
        var tools = ToolDefinition.ParseList(JsonNode.Parse("""
            [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}},
             {"type": "function", "function": {"name": "no-args_2"}}]
            """));
        Assert.Equal(["get_weather", "no-args_2"], tools.Select(t => t.Name));
        Assert.Equal("d", tools[0].Description);
        Assert.Equal("string", tools[0].Parameters["properties"]!["city"]!["type"]!.GetValue<string>());
        Assert.Equal("""{"type":"object","properties":{}}""", tools[1].Parameters.ToJsonString());
        Assert.Equal("""{"type":"function","function":{"name":"get_weather","description":"d","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}""", tools[0].ToJson().ToJsonString());
    }

    [Theory]
    [InlineData("""{"type": "function"}""", "tools: must be a list of tools, not an object")]
    [InlineData("""[{"type": "function", "function": {"name": "a"}}, 3]""", "tools[1]: must be an object, not the number 3")]
    [InlineData("""[{"type": "retrieval", "function": {"name": "a"}}]""", "tools[0].type: must be \"function\"")]
    [InlineData("""[{"type": "function"}]""", "tools[0].function: must be an object, not null")]
    [InlineData("""[{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "a b"}}]""", "tools[1].function.name: 'a b' is not a function name")]
    [InlineData("""[{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "a"}}]""", "tools[1].function.name: 'a' is defined twice")]
    [InlineData("""[{"type": "function", "function": {"name": "a", "description": 5}}]""", "tools[0].function.description: must be a string, not the number 5")]
    [InlineData("""[{"type": "function", "function": {"name": "a", "parameters": {"type": "array"}}}]""", "tools[0].function.parameters.type: must be \"object\"")]
    [InlineData("""[{"type": "function", "function": {"name": "a", "parameters": "x"}}]""", "tools[0].function.parameters: must be a JSON schema object")]
    public void Refuses_bad_tools_naming_the_field(string json, string message)
    {
        var error = Assert.Throws<ToolFormatException>(() => ToolDefinition.ParseList(JsonNode.Parse(json)));
        Assert.StartsWith(message, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void Prepares_openai_messages_for_the_templates()
    {
        var messages = JsonNode.Parse("""
            [{"role": "user", "content": "q"},
             {"role": "assistant", "content": null, "tool_calls": [{"id": "call_abcdefghijklmnopqrstuvwx", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
             {"role": "tool", "tool_call_id": "call_abcdefghijklmnopqrstuvwx", "content": "r"},
             {"role": "assistant", "content": null, "tool_calls": null}]
            """)!.AsArray();
        var hermes = ToolCallFormat.All.Single(f => f.Name == "hermes").PrepareMessages(messages);
        Assert.Equal("""{"a":1}""", hermes[1]!["tool_calls"]![0]!["function"]!["arguments"]!.ToJsonString());
        Assert.Equal("call_abcdefghijklmnopqrstuvwx", hermes[1]!["tool_calls"]![0]!["id"]!.GetValue<string>());
        Assert.False(hermes[3]!.AsObject().ContainsKey("tool_calls"));
        Assert.Equal("", hermes[3]!["content"]!.GetValue<string>());
        Assert.Equal("{\"a\": 1}", messages[1]!["tool_calls"]![0]!["function"]!["arguments"]!.GetValue<string>()); // the input is not changed

        var mistral = ToolCallFormat.All.Single(f => f.Name == "mistral").PrepareMessages(messages);
        string id = mistral[1]!["tool_calls"]![0]!["id"]!.GetValue<string>();
        Assert.True(ToolCallIds.IsNineAlphanumerics(id));
        Assert.Equal(id, mistral[2]!["tool_call_id"]!.GetValue<string>());

        messages[1]!["tool_calls"]![0]!["function"]!["arguments"] = "{not json";
        var error = Assert.Throws<ToolFormatException>(() => ToolCallFormat.All[0].PrepareMessages(messages));
        Assert.StartsWith("messages[1].tool_calls[0].function.arguments: is not JSON", error.Message);
    }
}
