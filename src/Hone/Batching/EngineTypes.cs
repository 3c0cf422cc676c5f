using Hone.Grammars;
using Hone.Inference;
using Hone.Tensors;

namespace Hone.Batching;

/// <summary>How a <see cref="BatchEngine"/> is sized. Everything is allocated once, at start-up, from these.</summary>
public sealed record EngineOptions
{
    /// <summary>Sequences in flight at once: one KV cache slot each.</summary>
    public int Parallel { get; init; } = 4;
    /// <summary>Tokens per sequence (prompt + output); 0 = the model's context, capped at 4096.</summary>
    public int Context { get; init; }
    /// <summary>Most rows one forward step runs: one per decoding sequence plus chunks of prompts waiting for prefill.</summary>
    public int StepTokens { get; init; } = 512;
    /// <summary>Requests that may wait for a slot; past this, <see cref="BatchEngine.Submit"/> refuses with
    /// <see cref="RejectReason.QueueFull"/>.</summary>
    public int QueueLimit { get; init; } = 256;
    /// <summary>Worker threads, 0 = one per core.</summary>
    public int Threads { get; init; }
    public ComputePrecision Precision { get; init; } = ComputePrecision.Fast;
    /// <summary>How the KV cache holds keys and values: f32 (exact) or bf16 (half the memory and the bytes a decode step reads).</summary>
    public KvCacheType CacheType { get; init; } = KvCacheType.F32;
    /// <summary>A mixture of experts: leave the experts in the file and keep this much of them resident
    /// (<see cref="Hone.Model.ExpertCache"/>); null loads them all.</summary>
    public Hone.Model.ExpertCacheOptions? ExpertCache { get; init; }
}

/// <summary>One sequence to generate.</summary>
public sealed record SequenceRequest
{
    /// <summary>Prompt ids (BOS included when the model wants it).</summary>
    public required IReadOnlyList<int> Prompt { get; init; }
    /// <summary>The adapter's name, or null for the base model.</summary>
    public string? Adapter { get; init; }
    public SamplerOptions Sampler { get; init; } = SamplerOptions.Greedy;
    /// <summary>Most tokens to generate (also bounded by the context).</summary>
    public int MaxTokens { get; init; } = 256;
    /// <summary>Generation ends before the first occurrence of any of these in the output text.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    /// <summary>End on EOS or an end-of-turn token (not part of the text).</summary>
    public bool StopAtEndOfTurn { get; init; } = true;
    /// <summary>Below 0: no log-probabilities; 0: the chosen token's; k (at most <see cref="MaxTopLogprobs"/>): also
    /// the k most likely tokens at each step. Log-probabilities are the model's (log-softmax of the raw logits, before
    /// penalties, temperature and truncation).</summary>
    public int TopLogprobs { get; init; } = -1;
    /// <summary>The output must match this grammar (from the first token, or from its trigger when lazy); the sequence
    /// ends with "stop" when the grammar is complete, "length" when max tokens come first.</summary>
    public GrammarSpec? Grammar { get; init; }

    public const int MaxTopLogprobs = 20;
}

/// <summary>A token and its log-probability under the model.</summary>
public readonly record struct TokenLogprob(int Id, float Logprob);

/// <summary>A generated token: <see cref="Logprob"/> is NaN and <see cref="Top"/> empty when none were asked for.</summary>
public sealed record GeneratedToken(int Id, float Logprob, TokenLogprob[] Top);

public abstract record SequenceEvent;

/// <summary>Text that is now final (complete UTF-8, not the start of a stop string) and the tokens generated since the
/// previous update. Text can lag the tokens; the concatenated text of all updates is the output.</summary>
public sealed record SequenceUpdate(string Text, IReadOnlyList<GeneratedToken> Tokens) : SequenceEvent;

/// <param name="FinishReason">"stop" (end of turn or a stop string), "length" (max tokens or the context) or "cancelled"</param>
public sealed record SequenceEnd(string FinishReason, SequenceUsage Usage) : SequenceEvent;

/// <param name="CachedPromptTokens">prompt tokens whose keys and values came from the prefix cache</param>
/// <param name="QueueSeconds">from submission to the first step that ran it</param>
/// <param name="FirstTokenSeconds">from submission to the first generated token</param>
public sealed record SequenceUsage(int PromptTokens, int CachedPromptTokens, int CompletionTokens,
    double QueueSeconds, double FirstTokenSeconds, double TotalSeconds);

/// <summary>Everything a sequence produced, collected.</summary>
public sealed record SequenceResult(string Text, IReadOnlyList<GeneratedToken> Tokens, string FinishReason, SequenceUsage Usage)
{
    public int[] Ids => Tokens.Select(t => t.Id).ToArray();
}

public enum RejectReason
{
    /// <summary>The wait queue is full: try again later (HTTP 429).</summary>
    QueueFull,
    /// <summary>The prompt does not fit the context (HTTP 400).</summary>
    PromptTooLong,
    /// <summary>No adapter or model of that name (HTTP 404, as OpenAI answers an unknown model).</summary>
    UnknownModel,
    /// <summary>Something else about the request is out of range (HTTP 400).</summary>
    Invalid,
}

/// <summary>The engine refused a request; <see cref="Param"/> names the request field at fault, when one is.</summary>
public sealed class RequestRejectedException(RejectReason reason, string message, string? param = null) : Exception(message)
{
    public RejectReason Reason { get; } = reason;
    public string? Param { get; } = param;
}

/// <summary>A snapshot of the engine's load.</summary>
/// <param name="KvTokensUsed">tokens held in KV slots by sequences in flight</param>
/// <param name="KvTokensTotal">slots × context</param>
public sealed record EngineStatistics(int QueueLength, int ActiveSequences, long KvTokensUsed, long KvTokensTotal);

/// <summary>What one forward step did (for metrics).</summary>
/// <param name="DecodeRows">sequences that generated a token in this step</param>
/// <param name="PromptRows">prompt tokens processed in this step</param>
public readonly record struct StepStatistics(int DecodeRows, int PromptRows, double Seconds);
