using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Hone.Grammars;
using Hone.ToolCalls;

namespace Hone.Batching;

/// <summary>Which tool calls a chat turn may make (OpenAI's <c>tool_choice</c>): none (no grammar, no parsing),
/// auto (free text; calls constrained from the template's opener on), required (only calls, from the first token), or
/// one named function (only calls to it, from the first token).</summary>
public enum ToolChoiceMode { None, Auto, Required, Named }

/// <param name="Name">the function, for <see cref="ToolChoiceMode.Named"/></param>
public sealed record ToolChoice(ToolChoiceMode Mode, string? Name = null)
{
    public static ToolChoice Auto { get; } = new(ToolChoiceMode.Auto);
    public static ToolChoice None { get; } = new(ToolChoiceMode.None);
    public static ToolChoice Required { get; } = new(ToolChoiceMode.Required);
}

/// <summary>What a chat turn's output must be: its grammar (null = free) and, when tools are on, the tool-call format
/// that parses it back into calls.</summary>
/// <param name="Format">null when the output is not parsed for calls (no tools, or tool_choice none)</param>
public sealed record ChatConstraint(GrammarSpec? Grammar, ToolCallFormat? Format, IReadOnlyList<ToolDefinition> Tools)
{
    public static ChatConstraint Free { get; } = new(null, null, []);
}

/// <summary>
/// Turns a chat request's structured-output and tool options into a grammar for the engine, the same way for the
/// server and the in-process chat client. Grammars are cached by their GBNF text, so repeated requests with the same
/// schema or tools reuse the compiled grammar and its token masks.
/// </summary>
public static class ChatConstraints
{
    const int CacheLimit = 64;
    static readonly ConcurrentDictionary<string, Grammar> Cache = new(StringComparer.Ordinal);

    /// <summary>Any JSON object (OpenAI's <c>json_object</c>).</summary>
    public static JsonObject AnyObjectSchema() => new() { ["type"] = "object", ["additionalProperties"] = true };

    /// <summary>A grammar compiled from GBNF text, or the cached one for the same text.</summary>
    /// <exception cref="GrammarException">the text is not a valid grammar (the message names the line)</exception>
    public static Grammar Compile(string gbnf, string source)
    {
        // A grammar's tables only grow (every configuration met is kept); one that has grown large is left to the
        // sequences using it, and new requests start from a fresh copy.
        if (Cache.TryGetValue(gbnf, out var cached) && cached.StateCount < Grammar.MaxStates / 2) return cached;
        var grammar = Grammar.ParseGbnf(gbnf, source);
        if (Cache.Count >= CacheLimit) Cache.Clear();
        Cache[gbnf] = grammar;
        return grammar;
    }

    /// <summary>JSON valid under <paramref name="schema"/>, from the first token. Objects admit only the properties they
    /// list unless they say otherwise (Hone's and llama.cpp's rule, OpenAI's strict mode).</summary>
    /// <exception cref="GrammarException">a keyword that cannot be enforced (named)</exception>
    public static GrammarSpec ForJsonSchema(JsonNode schema)
    {
        var builder = new GbnfBuilder();
        string rule = builder.AddJsonSchema("response", schema);
        return new GrammarSpec(Compile(builder.Build(rule), "schema"));
    }

    /// <summary>
    /// The constraint of a turn with <paramref name="tools"/> under <paramref name="choice"/>, rendered by a template of
    /// <paramref name="format"/>; <paramref name="responseSchema"/>, when given, is what a text answer must be (auto only:
    /// the turn is then either calls or that JSON, from the first token).
    /// <para>For a format whose trigger counts only at the start of the turn (Llama 3.x: the turn is the call), auto's
    /// lazy grammar fires only there, not on a brace inside the text.</para>
    /// </summary>
    /// <param name="parallel">several calls in one turn (where the template renders them)</param>
    /// <exception cref="GrammarException">a tool's parameters hold a keyword that cannot be enforced</exception>
    /// <exception cref="ArgumentException">a named function that is not among the tools</exception>
    public static ChatConstraint ForTools(ToolCallFormat format, IReadOnlyList<ToolDefinition> tools, ToolChoice choice, bool parallel,
        JsonNode? responseSchema = null)
    {
        if (choice.Mode == ToolChoiceMode.None || tools.Count == 0)
            return new ChatConstraint(responseSchema != null ? ForJsonSchema(responseSchema) : null, null, tools);
        var callable = tools;
        if (choice.Mode == ToolChoiceMode.Named)
        {
            callable = tools.Where(t => t.Name == choice.Name).ToList();
            if (callable.Count == 0) throw new ArgumentException($"the function '{choice.Name}' is not among the tools");
        }
        var builder = new GbnfBuilder(new JsonSchemaOptions(AdditionalPropertiesDefault: false));
        string calls = format.AddCallRules(builder, callable, parallel && format.SupportsParallelCalls);
        GrammarSpec grammar;
        if (choice.Mode is ToolChoiceMode.Required or ToolChoiceMode.Named)
            grammar = new GrammarSpec(Compile(builder.Build(calls), "tools"));
        else if (responseSchema != null)
        {
            string answer = builder.AddJsonSchema("response", responseSchema);
            grammar = new GrammarSpec(Compile(builder.Build($"{calls} | {answer}"), "tools"));
        }
        else
            grammar = new GrammarSpec(Compile(builder.Build(calls), "tools"), format.Triggers, format.TriggersAtTurnStartOnly);
        return new ChatConstraint(grammar, format, tools);
    }
}
