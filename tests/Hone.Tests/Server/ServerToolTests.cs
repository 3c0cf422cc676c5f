#pragma warning disable OPENAI001 // ChatCompletionOptions.Seed: the tests need reproducible temperature-1 samples
using System.ClientModel;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Server;
using Hone.Tests.Infrastructure;
using Hone.Tokenization;
using Json.Schema;
using OpenAI.Chat;
using Xunit;

namespace Hone.Tests.Server;

/// <summary>Structured output and tool calls through the server, read by the official OpenAI SDK and over raw HTTP,
/// with a random-weight model at temperature 1: whatever it writes, the grammar keeps calls and JSON valid (checked by
/// JsonSchema.Net, not by the grammar).</summary>
public class ServerToolTests
{
    static Task<TestServer> Start() => TestServer.StartAsync(new ServerOptions { ModelPath = TinyToolModel.Path });

    static readonly ChatMessage[] Question = [new UserChatMessage("Where is order 7?")];

    static ChatTool SdkTool(JsonObject tool) => ChatTool.CreateFunctionTool(
        tool["function"]!["name"]!.GetValue<string>(), tool["function"]!["description"]!.GetValue<string>(),
        BinaryData.FromString(tool["function"]!["parameters"]!.ToJsonString()));

    static ChatCompletionOptions ToolOptions(ChatToolChoice choice, int seed, bool parallel = true)
    {
        var options = new ChatCompletionOptions { Temperature = 1, Seed = seed, MaxOutputTokenCount = 300, ToolChoice = choice, AllowParallelToolCalls = parallel };
        options.Tools.Add(SdkTool(TinyToolModel.StatusTool()));
        options.Tools.Add(SdkTool(TinyToolModel.CancelTool()));
        return options;
    }

    /// <summary>The call names one of the tools and its arguments are valid under that tool's schema.</summary>
    static void AssertValidCall(string name, string arguments, params string[] allowed)
    {
        Assert.Contains(name, allowed);
        var tool = TinyToolModel.Tools().Single(t => t!["function"]!["name"]!.GetValue<string>() == name)!;
        var schema = JsonSchema.FromText(tool["function"]!["parameters"]!.ToJsonString());
        var evaluation = schema.Evaluate(JsonDocument.Parse(arguments).RootElement);
        Assert.True(evaluation.IsValid, $"{name}({arguments}) is not valid under its schema");
    }

    [Fact]
    public async Task Required_and_named_tool_choice_give_valid_calls_the_sdk_reads()
    {
        await using var server = await Start();
        var chat = server.Sdk().GetChatClient(server.ModelName);
        int calls = 0;
        for (int seed = 1; seed <= 4; seed++)
        {
            ChatCompletion reply = await chat.CompleteChatAsync(Question, ToolOptions(ChatToolChoice.CreateRequiredChoice(), seed));
            Assert.Equal(ChatFinishReason.ToolCalls, reply.FinishReason);
            Assert.Empty(reply.Content);
            Assert.NotEmpty(reply.ToolCalls);
            foreach (var call in reply.ToolCalls)
            {
                Assert.False(string.IsNullOrEmpty(call.Id));
                Assert.Equal(ChatToolCallKind.Function, call.Kind);
                AssertValidCall(call.FunctionName, call.FunctionArguments.ToString(), "get_order_status", "cancel_order");
                calls++;
            }
            Assert.Equal(reply.ToolCalls.Count, reply.ToolCalls.Select(c => c.Id).Distinct().Count());

            // One named function, one call (parallel_tool_calls false).
            reply = await chat.CompleteChatAsync(Question, ToolOptions(ChatToolChoice.CreateFunctionChoice("cancel_order"), seed, parallel: false));
            Assert.Equal(ChatFinishReason.ToolCalls, reply.FinishReason);
            var only = Assert.Single(reply.ToolCalls);
            AssertValidCall(only.FunctionName, only.FunctionArguments.ToString(), "cancel_order");
        }
        Assert.True(calls >= 4);
    }

    [Fact]
    public async Task Streamed_tool_calls_arrive_in_openai_chunks_the_sdk_assembles()
    {
        await using var server = await Start();
        var chat = server.Sdk().GetChatClient(server.ModelName);
        for (int seed = 1; seed <= 3; seed++)
        {
            var ids = new Dictionary<int, string>();
            var names = new Dictionary<int, string>();
            var arguments = new Dictionary<int, string>();
            ChatFinishReason? finish = null;
            await foreach (var update in chat.CompleteChatStreamingAsync(Question, ToolOptions(ChatToolChoice.CreateRequiredChoice(), seed)))
            {
                foreach (var part in update.ToolCallUpdates)
                {
                    if (part.ToolCallId != null)
                    {
                        Assert.False(ids.ContainsKey(part.Index), "a call's id comes once, on its first chunk");
                        ids[part.Index] = part.ToolCallId;
                        names[part.Index] = part.FunctionName;
                        Assert.Equal(ChatToolCallKind.Function, part.Kind);
                    }
                    else Assert.True(ids.ContainsKey(part.Index), "argument chunks follow the call's first chunk");
                    arguments[part.Index] = arguments.GetValueOrDefault(part.Index, "") + (part.FunctionArgumentsUpdate?.ToString() ?? "");
                }
                if (update.FinishReason != null) finish = update.FinishReason;
            }
            Assert.Equal(ChatFinishReason.ToolCalls, finish);
            Assert.NotEmpty(ids);
            Assert.Equal(Enumerable.Range(0, ids.Count), ids.Keys.Order());
            foreach (int i in ids.Keys)
            {
                Assert.False(string.IsNullOrEmpty(ids[i]));
                AssertValidCall(names[i], arguments[i], "get_order_status", "cancel_order");
            }

            // The same request, not streamed, gives the same calls (same seed: same tokens).
            ChatCompletion reply = await chat.CompleteChatAsync(Question, ToolOptions(ChatToolChoice.CreateRequiredChoice(), seed));
            Assert.Equal(names.OrderBy(p => p.Key).Select(p => p.Value), reply.ToolCalls.Select(c => c.FunctionName));
            Assert.Equal(arguments.OrderBy(p => p.Key).Select(p => p.Value), reply.ToolCalls.Select(c => c.FunctionArguments.ToString()));
        }
    }

    [Fact]
    public async Task Raw_responses_have_openai_shapes_and_auto_output_is_text_or_valid_calls()
    {
        await using var server = await Start();
        var body = new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Where is order 7?" }),
            ["tools"] = TinyToolModel.Tools(), ["tool_choice"] = "required", ["temperature"] = 1, ["seed"] = 3, ["max_tokens"] = 300,
        };
        var reply = await server.PostAsync("/v1/chat/completions", body);
        Assert.True(reply.Status == 200, reply.ToString());
        var choice = reply.Json["choices"]![0]!;
        Assert.Equal("tool_calls", choice["finish_reason"]!.GetValue<string>());
        Assert.Equal(JsonValueKind.Null, choice["message"]!["content"]?.GetValueKind() ?? JsonValueKind.Null);
        Assert.True(choice["message"]!.AsObject().ContainsKey("content"), "content is present, as null");
        foreach (var call in choice["message"]!["tool_calls"]!.AsArray())
        {
            Assert.StartsWith("call_", call!["id"]!.GetValue<string>());
            Assert.Equal("function", call["type"]!.GetValue<string>());
            Assert.Equal(JsonValueKind.String, call["function"]!["arguments"]!.GetValueKind()); // a JSON string, as OpenAI sends it
        }

        // Streamed over raw HTTP: the first chunk of a call carries index, id, type and name; then its arguments.
        body["stream"] = true;
        var (status, chunks, done, raw) = await server.StreamAsync("/v1/chat/completions", body);
        Assert.True(status == 200 && done, raw);
        var callChunks = chunks.Select(c => c["choices"]![0]!["delta"]!["tool_calls"]).Where(t => t != null).Select(t => t!.AsArray().Single()!).ToList();
        Assert.NotEmpty(callChunks);
        Assert.NotNull(callChunks[0]["id"]);
        Assert.Equal("function", callChunks[0]["type"]!.GetValue<string>());
        Assert.NotNull(callChunks[0]["function"]!["name"]);
        Assert.Equal("tool_calls", chunks.Select(c => c["choices"]!.AsArray().FirstOrDefault()?["finish_reason"]).Last(f => f != null)!.GetValue<string>());

        // auto: free text until the opener, calls valid from there; whatever comes, it parses.
        body.Remove("stream");
        body["tool_choice"] = "auto";
        for (int seed = 1; seed <= 4; seed++)
        {
            body["seed"] = seed;
            body["max_tokens"] = 60;
            reply = await server.PostAsync("/v1/chat/completions", body);
            Assert.True(reply.Status == 200, reply.ToString());
            var message = reply.Json["choices"]![0]!["message"]!;
            string finish = reply.Json["choices"]![0]!["finish_reason"]!.GetValue<string>();
            if (message["tool_calls"] is JsonArray made)
            {
                Assert.Equal("tool_calls", finish);
                foreach (var call in made) AssertValidCall(call!["function"]!["name"]!.GetValue<string>(), call["function"]!["arguments"]!.GetValue<string>(), "get_order_status", "cancel_order");
            }
            else Assert.Contains(finish, new[] { "stop", "length" });
        }

        // max_tokens inside a required call: "length".
        body["tool_choice"] = "required";
        body["max_tokens"] = 3;
        reply = await server.PostAsync("/v1/chat/completions", body);
        Assert.True(reply.Status == 200, reply.ToString());
        Assert.Equal("length", reply.Json["choices"]![0]!["finish_reason"]!.GetValue<string>());
    }

    [Fact]
    public async Task Tool_calls_and_results_in_the_messages_are_rendered_by_the_template()
    {
        await using var server = await Start();
        var conversation = TinyToolModel.Conversation(42, "delayed by the storm");
        var messages = conversation["messages"]!.AsArray();
        messages.RemoveAt(3); // the final answer is what the model is asked for
        var reply = await server.PostAsync("/v1/chat/completions", new JsonObject
        {
            ["messages"] = messages.DeepClone(), ["tools"] = new JsonArray(TinyToolModel.StatusTool()), ["max_tokens"] = 1, ["temperature"] = 0,
        });
        Assert.True(reply.Status == 200, reply.ToString());
        // The prompt is exactly the template's text for the call (arguments an object) and the result.
        string expected = "<|bos|><|system|>You may call these tools:" +
            """{"type": "function", "function": {"name": "get_order_status", "description": "Look up where an order is.", "parameters": {"type": "object", "properties": {"order": {"type": "integer", "minimum": 1, "maximum": 999}}, "required": ["order"]}}}"""
            + "<|end|>" +
            "<|user|>Where is order 42?<|end|>" +
            "<|assistant|><tool_call>\n{\"name\": \"get_order_status\", \"arguments\": {\"order\": 42}}\n</tool_call><|end|>" +
            "<|user|><tool_response>\norder 42: delayed by the storm\n</tool_response><|end|><|assistant|>";
        var tokenizer = Tokenizer.FromHuggingFaceDirectory(TinyToolModel.Path);
        var template = Hone.Tokenization.Templates.ChatTemplate.Parse(TinyToolModel.Template, "tiny-tools");
        var prepared = Hone.ToolCalls.ToolCallFormat.Detect(template)!.PrepareMessages(messages);
        Assert.Equal(expected, template.Apply(prepared, new Hone.Tokenization.Templates.ChatTemplateOptions
        {
            BosToken = tokenizer.BosToken, EosToken = tokenizer.EosToken, AddGenerationPrompt = true, Tools = new JsonArray(TinyToolModel.StatusTool()),
        }));
        Assert.Equal(tokenizer.Encode(expected, addSpecialTokens: false, parseSpecialTokens: true).Length, reply.Json["usage"]!["prompt_tokens"]!.GetValue<int>());

        // Through the SDK: an assistant message with tool calls and a tool message.
        var chat = server.Sdk().GetChatClient(server.ModelName);
        ChatMessage[] sdkMessages =
        [
            new UserChatMessage("Where is order 42?"),
            new AssistantChatMessage([ChatToolCall.CreateFunctionToolCall("call_9", "get_order_status", BinaryData.FromString("{\"order\": 42}"))]),
            new ToolChatMessage("call_9", "order 42: delayed by the storm"),
        ];
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 1, Temperature = 0 };
        options.Tools.Add(SdkTool(TinyToolModel.StatusTool()));
        ChatCompletion completion = await chat.CompleteChatAsync(sdkMessages, options);
        Assert.Equal(reply.Json["usage"]!["prompt_tokens"]!.GetValue<int>(), completion.Usage.InputTokenCount);
    }

    [Fact]
    public async Task Json_schema_and_json_object_responses_validate()
    {
        await using var server = await Start();
        var chat = server.Sdk().GetChatClient(server.ModelName);
        const string schemaText = """
            {"type": "object", "properties": {"order": {"type": "integer", "minimum": 1, "maximum": 99},
             "status": {"enum": ["shipped", "delayed", "lost"]}, "note": {"type": "string", "maxLength": 12}},
             "required": ["order", "status", "note"]}
            """;
        var validator = JsonSchema.FromText(schemaText);
        foreach (bool strict in new[] { true, false })
            for (int seed = 1; seed <= 4; seed++)
            {
                var options = new ChatCompletionOptions
                {
                    Temperature = 1, Seed = seed, MaxOutputTokenCount = 400,
                    ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("order_status", BinaryData.FromString(schemaText), jsonSchemaIsStrict: strict),
                };
                ChatCompletion reply = await chat.CompleteChatAsync(Question, options);
                Assert.Equal(ChatFinishReason.Stop, reply.FinishReason);
                string text = reply.Content[0].Text;
                var evaluation = validator.Evaluate(JsonDocument.Parse(text).RootElement);
                Assert.True(evaluation.IsValid, $"not valid under the schema: {text}");
            }

        var json = await chat.CompleteChatAsync(Question, new ChatCompletionOptions
        {
            Temperature = 1, Seed = 5, MaxOutputTokenCount = 400, ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat(),
        });
        if (json.Value.FinishReason == ChatFinishReason.Stop) Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(json.Value.Content[0].Text).RootElement.ValueKind);
        else Assert.StartsWith("{", json.Value.Content[0].Text);

        // llama.cpp's grammar field, on completions too.
        var reply2 = await server.PostAsync("/v1/completions", new JsonObject
        {
            ["prompt"] = "Is order 7 late? ", ["grammar"] = "root ::= \"yes\" | \"no\" | \"not yet\"", ["temperature"] = 1, ["seed"] = 2, ["max_tokens"] = 20,
        });
        Assert.True(reply2.Status == 200, reply2.ToString());
        Assert.Contains(reply2.Json["choices"]![0]!["text"]!.GetValue<string>(), new[] { "yes", "no", "not yet" });
        Assert.Equal("stop", reply2.Json["choices"]![0]!["finish_reason"]!.GetValue<string>());
        var reply3 = await server.PostAsync("/v1/chat/completions", new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Order?" }), ["json_schema"] = JsonNode.Parse(schemaText),
            ["temperature"] = 1, ["seed"] = 9, ["max_tokens"] = 400,
        });
        Assert.True(reply3.Status == 200, reply3.ToString());
        Assert.True(validator.Evaluate(JsonDocument.Parse(reply3.Json["choices"]![0]!["message"]!["content"]!.GetValue<string>()).RootElement).IsValid, reply3.ToString());
    }

    public static TheoryData<string, string, string> BadRequests => new()
    {
        { """{"tools": [{"type": "function", "function": {"name": "get order"}}]}""", "tools[0].function.name", "not a function name" },
        { """{"tools": [{"type": "retrieval"}]}""", "tools[0].type", "function" },
        { """{"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "string", "not": {}}}}}}]}""", "tools", "keyword 'not'" },
        { """{"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}}""", "tool_choice", "'g'" },
        { """{"tool_choice": "required"}""", "tool_choice", "no 'tools'" },
        { """{"tool_choice": "sometimes"}""", "tool_choice", "sometimes" },
        { """{"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "patternProperties": {"a": {}}}}}}""", "response_format", "keyword 'patternProperties'" },
        { """{"response_format": {"type": "xml"}}""", "response_format", "xml" },
        { """{"response_format": {"type": "json_schema"}}""", "response_format", "json_schema" },
        { "{\"grammar\": \"root ::= \\\"a\\\"\\nbroken ::= (\"}", "grammar", "grammar:2:" },
        { """{"grammar": "root ::= \"a\"", "response_format": {"type": "json_object"}}""", "grammar", "not both" },
        { """{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}""",
          "messages[1].tool_calls[0].function.arguments", "not JSON" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task Bad_tools_formats_and_grammars_are_400s_naming_the_field(string fields, string param, string says)
    {
        await using var server = await Start();
        var body = JsonNode.Parse(fields)!.AsObject();
        body["messages"] ??= new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Where is order 7?" });
        body["max_tokens"] = 4;
        var reply = await server.PostAsync("/v1/chat/completions", body);
        Assert.True(reply.Status == 400, reply.ToString());
        Assert.Equal(param, reply.Json["error"]!["param"]!.GetValue<string>());
        Assert.Contains(says, reply.Json["error"]!["message"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_template_without_tools_refuses_them_and_the_sdk_sees_the_400()
    {
        await using var server = await TestServer.StartAsync(); // TinyChatModel: Hone's plain chat template renders no tools
        var chat = server.Sdk().GetChatClient(server.ModelName);
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 4 };
        options.Tools.Add(SdkTool(TinyToolModel.StatusTool()));
        var e = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync(Question, options));
        Assert.Equal(400, e.Status);
        Assert.Contains("cannot render tools", e.Message);
        // tool_choice none: the tools are not needed, and the request is served.
        options.ToolChoice = ChatToolChoice.CreateNoneChoice();
        ChatCompletion reply = await chat.CompleteChatAsync(Question, options);
        Assert.Empty(reply.ToolCalls);
    }

    [Fact]
    public async Task The_template_option_replaces_the_models_template()
    {
        using var dir = new TempDirectory();
        var plain = dir.File("plain.jinja");
        File.WriteAllText(plain, ChatFormat.PlainTemplate);
        await using (var server = await TestServer.StartAsync(new ServerOptions { ModelPath = TinyToolModel.Path, ChatTemplate = plain }))
        {
            var reply = await server.PostAsync("/v1/chat/completions", new JsonObject
            {
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Where is order 7?" }), ["tools"] = TinyToolModel.Tools(), ["max_tokens"] = 2,
            });
            Assert.True(reply.Status == 400, reply.ToString()); // Hone's plain template renders no tools, unlike the model's own
            Assert.Contains("cannot render tools", reply.Text);
        }
        await using (var server = await TestServer.StartAsync(new ServerOptions { ModelPath = TinyToolModel.Path, ChatTemplate = dir.File("missing.jinja") }))
        {
            var reply = await server.PostAsync("/v1/chat/completions", new JsonObject
            {
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Where is order 7?" }), ["max_tokens"] = 2,
            });
            Assert.True(reply.Status == 400, reply.ToString());
            Assert.Contains("missing.jinja", reply.Text);
        }
    }
}
