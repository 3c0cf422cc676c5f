using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Batching;
using Hone.Clients;
using Hone.Tests.Infrastructure;
using Json.Schema;
using Microsoft.Extensions.AI;
using Xunit;
using Xunit.Abstractions;

namespace Hone.Tests.Clients;

/// <summary>Structured output and tools through the in-process IChatClient: ResponseFormat, Tools and ToolMode become
/// grammars, calls come back as FunctionCallContent, and Microsoft.Extensions.AI's FunctionInvokingChatClient runs a
/// tool loop over a model fine-tuned here to use the tool.</summary>
public class HoneChatClientToolTests(ITestOutputHelper output)
{
    static BatchEngine Open(string model) =>
        BatchEngine.Open(model, [], new EngineOptions { Parallel = 2, StepTokens = 256, Threads = 2 });

    static AIFunction StatusFunction(Func<int, string> lookUp) =>
        AIFunctionFactory.Create((int order) => lookUp(order), "get_order_status", "Look up where an order is.");

    static AIFunction CancelFunction() =>
        AIFunctionFactory.Create((int order, string reason) => $"order {order} cancelled ({reason})", "cancel_order", "Cancel an order.");

    [Fact]
    public async Task Response_format_json_schema_output_validates()
    {
        using var client = new HoneChatClient(Open(TinyToolModel.Path), ownsEngine: true);
        const string schemaText = """
            {"type": "object", "properties": {"order": {"type": "integer", "minimum": 1, "maximum": 99}, "late": {"type": "boolean"}},
             "required": ["order", "late"]}
            """;
        var validator = JsonSchema.FromText(schemaText);
        var format = ChatResponseFormat.ForJsonSchema(JsonDocument.Parse(schemaText).RootElement, "order");
        for (int seed = 1; seed <= 4; seed++)
        {
            var options = new ChatOptions { Temperature = 1, TopK = 0, TopP = 1, Seed = seed, MaxOutputTokens = 300, ResponseFormat = format };
            var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Is order 7 late?")], options);
            Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
            Assert.True(validator.Evaluate(JsonDocument.Parse(response.Text).RootElement).IsValid, response.Text);
            var streamed = new List<ChatResponseUpdate>();
            await foreach (var u in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Is order 7 late?")], options)) streamed.Add(u);
            Assert.Equal(response.Text, streamed.ToChatResponse().Text);
        }
        // Any JSON object.
        var json = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Order?")],
            new ChatOptions { Temperature = 1, Seed = 3, MaxOutputTokens = 300, ResponseFormat = ChatResponseFormat.Json });
        Assert.StartsWith("{", json.Text);
        if (json.FinishReason == ChatFinishReason.Stop) Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(json.Text).RootElement.ValueKind);
    }

    [Fact]
    public async Task Required_tool_modes_give_function_calls_streamed_and_not()
    {
        using var client = new HoneChatClient(Open(TinyToolModel.Path), ownsEngine: true);
        ChatMessage[] question = [new(ChatRole.User, "Where is order 7?")];
        for (int seed = 1; seed <= 3; seed++)
        {
            var options = new ChatOptions
            {
                Temperature = 1, TopK = 0, TopP = 1, Seed = seed, MaxOutputTokens = 300, Tools = [StatusFunction(o => ""), CancelFunction()],
                ToolMode = ChatToolMode.RequireSpecific("cancel_order"), AllowMultipleToolCalls = false,
            };
            var response = await client.GetResponseAsync(question, options);
            Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
            var call = Assert.Single(response.Messages.Single().Contents.OfType<FunctionCallContent>());
            Assert.Equal("cancel_order", call.Name);
            Assert.StartsWith("call_", call.CallId);
            Assert.Null(call.Exception);
            Assert.IsType<long>(((JsonElement)call.Arguments!["order"]!).GetInt64()); // {"type": "integer"}: any integer the grammar writes (at most 16 digits)
            Assert.Equal(JsonValueKind.String, ((JsonElement)call.Arguments["reason"]!).ValueKind); // the AIFunction's schema: any string
            Assert.Equal(2, call.Arguments.Count); // no property the schema does not list

            var updates = new List<ChatResponseUpdate>();
            var any = options.Clone();
            any.ToolMode = ChatToolMode.RequireAny;
            await foreach (var u in client.GetStreamingResponseAsync(question, any)) updates.Add(u);
            Assert.Equal(ChatFinishReason.ToolCalls, updates[^1].FinishReason);
            var calls = updates.SelectMany(u => u.Contents.OfType<FunctionCallContent>()).ToList();
            Assert.NotEmpty(calls);
            Assert.All(calls, c => Assert.Contains(c.Name, new[] { "get_order_status", "cancel_order" }));
            Assert.All(calls, c => Assert.IsType<long>(((JsonElement)c.Arguments!["order"]!).GetInt64()));
        }
    }

    [Fact]
    public async Task Tools_on_a_template_that_cannot_render_them_are_refused_and_tool_mode_none_is_free()
    {
        using var client = new HoneChatClient(Open(TinyChatModel.Path), ownsEngine: true);
        ChatMessage[] question = [new(ChatRole.User, "Where is order 7?")];
        var e = await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync(question, new ChatOptions { Tools = [CancelFunction()], MaxOutputTokens = 4 }));
        Assert.Contains("cannot render tools", e.Message);
        var free = await client.GetResponseAsync(question, new ChatOptions { Tools = [CancelFunction()], ToolMode = ChatToolMode.None, MaxOutputTokens = 4, Temperature = 0 });
        Assert.Empty(free.Messages.Single().Contents.OfType<FunctionCallContent>());

        using var tools = new HoneChatClient(Open(TinyToolModel.Path), ownsEngine: true);
        var unknown = await Assert.ThrowsAsync<ArgumentException>(() => tools.GetResponseAsync(question,
            new ChatOptions { Tools = [CancelFunction()], ToolMode = ChatToolMode.RequireSpecific("refund") }));
        Assert.Contains("'refund'", unknown.Message);
        var badSchema = await Assert.ThrowsAsync<ArgumentException>(() => tools.GetResponseAsync(question,
            new ChatOptions { ResponseFormat = ChatResponseFormat.ForJsonSchema(JsonDocument.Parse("""{"type": "object", "not": {}}""").RootElement) }));
        Assert.Contains("keyword 'not'", badSchema.Message);
    }

    /// <summary>A tiny model learns, from three conversations in the tool template, to call get_order_status for the
    /// question and then to answer with what the tool returned; FunctionInvokingChatClient runs the loop.</summary>
    [Fact]
    public async Task Function_invoking_client_completes_a_tool_loop_with_a_fine_tuned_model()
    {
        using var dir = new TempDirectory();
        var baseModel = TinyToolModel.Build(Path.Combine(dir.Path, "base"), hidden: 64, seed: 11);
        var invoked = new List<int>();
        var statuses = TinyToolModel.Orders.ToDictionary(o => o.Order, o => o.Status);
        var function = StatusFunction(order =>
        {
            lock (invoked) invoked.Add(order);
            return $"order {order}: {(statuses.TryGetValue(order, out var s) ? s : "unknown")}";
        });

        // The training records show the tool exactly as HoneChatClient will (from the AIFunction's schema).
        var tool = new JsonObject
        {
            ["type"] = "function",
            ["function"] = new JsonObject { ["name"] = function.Name, ["description"] = function.Description, ["parameters"] = JsonNode.Parse(function.JsonSchema.GetRawText()) },
        };
        var data = dir.File("tools.jsonl");
        File.WriteAllLines(data, TinyToolModel.Orders.Select(o =>
        {
            var record = TinyToolModel.Conversation(o.Order, o.Status);
            record["tools"] = new JsonArray(tool.DeepClone());
            return record.ToJsonString();
        }));
        var run = Path.Combine(dir.Path, "run");
        var r = HoneCli.Run("train", baseModel, "--data", data, "--method", "full", "--out", run, "--max-steps", "150", "--lr", "1e-2",
            "--batch-size", "3", "--seq-len", "320", "--save-every", "0", "--eval-every", "0", "--val-split", "0", "--threads", "2", "--seed", "1");
        Assert.True(r.ExitCode == 0, r.ToString());
        output.WriteLine(r.Stdout.Split('\n').LastOrDefault(l => l.Contains("loss")) ?? r.Stdout);

        using var hone = new HoneChatClient(Open(run), ownsEngine: true);
        using var client = new ChatClientBuilder(hone).UseFunctionInvocation().Build();
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 80, Tools = [function] };
        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Where is order 42?")], options);
        output.WriteLine(string.Join("\n", response.Messages.Select(m => $"{m.Role}: {string.Join(" | ", m.Contents.Select(Describe))}")));

        Assert.Equal([42], invoked);
        // The loop: the model's call, the tool's result, the model's answer.
        var call = Assert.Single(response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.Equal("get_order_status", call.Name);
        var result = Assert.Single(response.Messages.SelectMany(m => m.Contents).OfType<FunctionResultContent>());
        Assert.Equal(call.CallId, result.CallId);
        Assert.Contains("delayed by the storm", response.Messages[^1].Text);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);

        static string Describe(AIContent c) => c switch
        {
            FunctionCallContent f => $"call {f.Name}({JsonSerializer.Serialize(f.Arguments)}) [{f.CallId}]",
            FunctionResultContent f => $"result [{f.CallId}] {f.Result}",
            TextContent t => t.Text,
            _ => c.GetType().Name,
        };
    }
}
