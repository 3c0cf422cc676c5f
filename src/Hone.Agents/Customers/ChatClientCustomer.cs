using System.Text;
using Microsoft.Extensions.AI;

namespace Hone.Agents;

/// <param name="Name">the customer's name in results (the model path, or the endpoint's model)</param>
/// <param name="ModelId">as <see cref="ChatClientAgentOptions.ModelId"/></param>
/// <param name="Temperature">the customer's sampling temperature (τ-bench's user simulator: 0; higher varies wording)</param>
/// <param name="MaxOutputTokens">per customer message</param>
public sealed record ChatClientCustomerOptions(string Name, string? ModelId = null, float Temperature = 0, int MaxOutputTokens = 200);

/// <summary>
/// A model-driven customer through any <see cref="IChatClient"/> (a <c>hone serve</c>, a hosted model, a local Hone
/// model), in ECom-Bench's manner: a persona prompt built from the task's scenario (who the customer is, what they want,
/// what they know and do not, how they behave), the conversation with roles turned round (the agent's words are the
/// model's "user", the customer's own its "assistant"), and τ-bench's stop marker when the goal is met or out of reach.
/// The persona's patience, carefulness and mood are drawn from the trial's seed as the scripted customer's are.
/// </summary>
public sealed class ChatClientCustomer : ICustomer
{
    /// <summary>The agent's opening words the customer answers first (τ-bench's fixed greeting).</summary>
    public const string Greeting = "Hi! How can I help you today?";

    readonly IChatClient _client;
    readonly ChatClientCustomerOptions _options;

    public ChatClientCustomer(IChatClient client, ChatClientCustomerOptions options)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(options);
        if (options.MaxOutputTokens < 1) throw new ArgumentException($"the customer's max output tokens must be at least 1, got {options.MaxOutputTokens}", nameof(options));
        _client = client;
        _options = options;
    }

    public string Name => _options.Name;

    public async Task<string> RespondAsync(AgentContext context, IReadOnlyList<(string Role, string Text)> transcript, CancellationToken cancel)
    {
        var messages = new List<ChatMessage> { new(ChatRole.System, PersonaPrompt(context.Task.Customer, context.Seed)), new(ChatRole.User, Greeting) };
        foreach (var (role, said) in transcript)
            messages.Add(new ChatMessage(role == "assistant" ? ChatRole.User : ChatRole.Assistant, said));
        var options = new ChatOptions
        {
            ModelId = _options.ModelId, Temperature = _options.Temperature, MaxOutputTokens = _options.MaxOutputTokens,
            Seed = ChatClientAgent.MessageSeed(context.Seed ^ 0x5DEECE66DUL, transcript.Count),
        };
        var response = await _client.GetResponseAsync(messages, options, cancel).ConfigureAwait(false);
        string text = response.Text.Trim();
        // An empty turn would stall the conversation: a customer with nothing to say is done.
        return text.Length == 0 ? CustomerMarkers.Stop : text;
    }

    /// <summary>The system prompt: the scenario, what the customer knows and does not, the persona and the rules.</summary>
    public static string PersonaPrompt(CustomerScenario scenario, ulong seed)
    {
        var persona = CustomerPersona.FromSeed(seed);
        var s = new StringBuilder();
        s.Append("You are a customer of an online store, chatting with its customer-service agent. You play the customer only: ")
         .Append("never act as the agent, never call tools, never describe the store's systems.\n\n");
        s.Append($"Your name: {scenario.FirstName} {scenario.LastName}.\n");
        s.Append($"Your situation and goal: {scenario.Instruction}\n");
        s.Append($"How you would put your request: {scenario.Request}\n");
        if (scenario.Knows.Count > 0)
        {
            s.Append("What you know and can tell the agent when asked:\n");
            foreach (var (key, value) in scenario.Knows.OrderBy(k => k.Key, StringComparer.Ordinal)) s.Append($"- {key.Replace('_', ' ')}: {value}\n");
        }
        if (scenario.DoesNotKnow.Count > 0)
            s.Append($"What you do not know (say so if asked): {string.Join(", ", scenario.DoesNotKnow.Select(k => k.Replace('_', ' ')))}.\n");
        if (scenario.WantsToKnow.Count > 0)
            s.Append($"What you want to find out: {string.Join("; ", scenario.WantsToKnow)}.\n");
        s.Append($"\nYour manner: {Describe(persona)}\n\n");
        s.Append("Rules:\n")
         .Append("- Open with your request in one or two sentences, in your own words, without giving every detail at once.\n")
         .Append("- Give a piece of information only when the agent asks for it, exactly as written above. Never invent information you were not given.\n")
         .Append("- When the agent proposes an action and asks you to confirm, compare every detail with your goal: answer yes only if it matches, otherwise say what is wrong.\n")
         .Append("- Keep each message short, as a person typing in a chat would.\n")
         .Append($"- When your goal is met, or the agent cannot help you, or you are transferred to a human, end your message with {CustomerMarkers.Stop}.\n");
        return s.ToString();
    }

    /// <summary>The persona in words (ECom-Bench's axes: patience, carefulness, mood), the same persona
    /// <see cref="ScriptedCustomer"/> plays for the seed.</summary>
    public static string Describe(CustomerPersona persona) =>
        $"you are {persona.Mood}; " +
        (persona.Careful ? "you are careful: you say only what you are asked and check every id and amount in a proposal; "
                         : "you are careless: you tell everything you know at once and do not check small details; ") +
        $"if the agent gets nowhere for {persona.MaxTurns} of your messages, you give up.";
}
