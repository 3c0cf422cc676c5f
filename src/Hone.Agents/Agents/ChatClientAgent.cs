using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Batching;
using Hone.Tensors;
using Microsoft.Extensions.AI;

namespace Hone.Agents;

/// <param name="Name">the agent's name in results (the model path, or the endpoint's model)</param>
/// <param name="ModelId">the model the client is asked for: an adapter's name on a Hone engine or a <c>hone serve</c>, the
/// model of a hosted endpoint; null = the client's default (a Hone engine's base model)</param>
/// <param name="Temperature">0 = greedy (τ-bench's default for the agent)</param>
/// <param name="MaxOutputTokens">per agent message</param>
/// <param name="ToolsInPrompt">false: the tools' declarations stay out of the prompt (a small model fine-tuned on its tools,
/// whose context has no room for them), while calls are still constrained by their schemas and parsed; honoured by Hone's
/// own chat client (<c>hone_tools_in_prompt</c>), ignored by other endpoints</param>
public sealed record ChatClientAgentOptions(string Name, string? ModelId = null, float Temperature = 0, int MaxOutputTokens = 256, bool ToolsInPrompt = true);

/// <summary>
/// The agent under test as any Microsoft.Extensions.AI <see cref="IChatClient"/>: a local Hone model (HoneChatClient over
/// a BatchEngine, calls through its chat template with arguments constrained by the tools' schemas) or an
/// OpenAI-compatible endpoint. Every tool goes to the client as a function declaration with its JSON schema; tool choice
/// is automatic, one call per message (the policy's rule). Each message's seed is derived from the trial's seed and the
/// message's position, so a trial replays exactly and trials differ when sampling.
/// </summary>
public sealed class ChatClientAgent : IAgent
{

    readonly IChatClient _client;
    readonly ChatClientAgentOptions _options;
    IReadOnlyList<AgentToolSpec>? _toolsFor;
    IList<AITool>? _tools;

    public ChatClientAgent(IChatClient client, ChatClientAgentOptions options)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(options);
        if (options.MaxOutputTokens < 1) throw new ArgumentException($"the agent's max output tokens must be at least 1, got {options.MaxOutputTokens}", nameof(options));
        _client = client;
        _options = options;
    }

    public string Name => _options.Name;

    public async Task<ChatMessage> RespondAsync(AgentContext context, IReadOnlyList<ChatMessage> conversation, CancellationToken cancel)
    {
        int position = conversation.Count(m => m.Role == ChatRole.Assistant);
        var options = new ChatOptions
        {
            ModelId = _options.ModelId, Temperature = _options.Temperature, MaxOutputTokens = _options.MaxOutputTokens,
            Seed = MessageSeed(context.Seed, position), Tools = Declarations(context.Tools), ToolMode = ChatToolMode.Auto,
            AllowMultipleToolCalls = false,
        };
        if (!_options.ToolsInPrompt) options.AdditionalProperties = new AdditionalPropertiesDictionary { [ChatPrompt.ToolsInPromptKey] = false };
        var response = await _client.GetResponseAsync(conversation, options, cancel).ConfigureAwait(false);
        // One assistant message: a client may split text and calls over several.
        var contents = response.Messages.Where(m => m.Role == ChatRole.Assistant).SelectMany(m => m.Contents)
            .Where(c => c is TextContent { Text.Length: > 0 } or FunctionCallContent).ToList();
        return new ChatMessage(ChatRole.Assistant, contents);
    }

    IList<AITool> Declarations(IReadOnlyList<AgentToolSpec> tools)
    {
        if (ReferenceEquals(tools, _toolsFor) && _tools != null) return _tools;
        var declarations = tools.Select(t => (AITool)AIFunctionFactory.CreateDeclaration(t.Name, t.Description,
            JsonSerializer.SerializeToElement(SentForm(t.Parameters)))).ToList();
        (_toolsFor, _tools) = (tools, declarations);
        return declarations;
    }

    /// <summary>
    /// An object schema in the form OpenAI's SDK sends a function's parameters (type, required, properties,
    /// additionalProperties false — what it makes of any object schema), so that a local model's prompt and an
    /// endpoint's show the tools alike and a greedy conversation is the same through either. Hone's tool grammars refuse
    /// undeclared arguments either way.
    /// </summary>
    public static JsonObject SentForm(JsonObject parameters)
    {
        var form = new JsonObject { ["type"] = "object" };
        if (parameters["required"] is { } required) form["required"] = required.DeepClone();
        form["properties"] = parameters["properties"]?.DeepClone() ?? new JsonObject();
        foreach (var (key, value) in parameters)
            if (key is not ("type" or "required" or "properties" or "additionalProperties")) form[key] = value?.DeepClone();
        form["additionalProperties"] = false;
        return form;
    }

    /// <summary>A 63-bit seed from the trial's seed and the message's position (the position-th splitmix64 output).</summary>
    internal static long MessageSeed(ulong trialSeed, int position) =>
        (long)(Xoshiro256.SplitMix64(trialSeed + 0x9E3779B97F4A7C15UL * (ulong)position) >> 1);
}
