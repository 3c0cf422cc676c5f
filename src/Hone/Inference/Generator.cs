using System.Diagnostics;
using Hone.Grammars;
using Hone.Model;
using Hone.Tokenization;

namespace Hone.Inference;

/// <param name="StopStrings">generation ends before the first occurrence of any of these in the output text</param>
/// <param name="StopAtEndOfTurn">end on EOS or an end-of-turn token (which is not part of the text)</param>
/// <param name="Grammar">the output must match this grammar (from the first token, or from a trigger when lazy); the
/// sequence ends ("stop") when the grammar is complete</param>
public sealed record GenerationOptions(int MaxTokens = 256, SamplerOptions? Sampler = null, IReadOnlyList<string>? StopStrings = null,
    bool StopAtEndOfTurn = true, GrammarSpec? Grammar = null);

/// <param name="FinishReason">"stop" (end of turn or a stop string), "length" (max tokens) or "cancelled"</param>
/// <param name="Ids">the generated ids (the end-of-turn token excluded)</param>
public sealed record GenerationResult(string Text, int[] Ids, string FinishReason, int PromptTokens, int CachedPromptTokens,
    double PromptSeconds, double GenerationSeconds)
{
    public double PromptTokensPerSecond => (PromptTokens - CachedPromptTokens) / Math.Max(PromptSeconds, 1e-9);
    public double GenerationTokensPerSecond => Ids.Length / Math.Max(GenerationSeconds, 1e-9);
}

/// <summary>
/// Text generation over one model and its KV cache: the cache is kept between calls and reused for the longest
/// common prefix of the new prompt (a chat only processes each new turn). Output is streamed as complete UTF-8
/// text, holding back any tail that could still become a stop string.
/// </summary>
public sealed class Generator
{
    readonly LlamaModel _model;
    readonly Tokenizer _tokenizer;
    readonly List<int> _cached = new();
    readonly float[] _logits;
    /// <summary>Ids the sampler may choose: the tokenizer's. An embedding padded past the vocabulary (to a multiple of
    /// 64 or 128, as many checkpoints are) has rows no text decodes to; they are never sampled.</summary>
    readonly int _sampleable;
    readonly HashSet<int> _endOfTurn;

    public Generator(LlamaModel model, Tokenizer tokenizer)
    {
        _model = model;
        _tokenizer = tokenizer;
        _logits = new float[model.Config.VocabSize];
        _sampleable = Math.Min(model.Config.VocabSize, tokenizer.VocabSize);
        _endOfTurn = tokenizer.EndOfTurnIds.ToHashSet();
        if (tokenizer.EosId is int eos) _endOfTurn.Add(eos);
    }

    public LlamaModel Model => _model;
    public Tokenizer Tokenizer => _tokenizer;

    /// <summary>Forget the cached conversation.</summary>
    public void Reset() { _cached.Clear(); _model.Reset(); }

    public GenerationResult Generate(IReadOnlyList<int> prompt, GenerationOptions options, Action<string>? onText = null,
        CancellationToken cancel = default)
    {
        if (prompt.Count == 0) throw new ArgumentException("the prompt has no tokens (a model needs at least BOS)");
        var sampler = new Sampler(options.Sampler ?? SamplerOptions.Greedy);
        var vocabulary = options.Grammar != null ? TokenVocabulary.For(_tokenizer) : null;
        var constraint = options.Grammar is { } spec ? new GrammarConstraint(spec, vocabulary!) : null;
        var mask = vocabulary != null ? new ulong[vocabulary.MaskWords] : null;
        if (prompt.Count + 1 > _model.MaxContext)
            throw new ArgumentException($"the prompt has {prompt.Count} tokens; the context holds {_model.MaxContext}");
        // Reuse the cache for the common prefix; at least one token must run to produce logits.
        int common = 0;
        while (common < _cached.Count && common < prompt.Count && _cached[common] == prompt[common]) common++;
        if (common == prompt.Count) common--;
        _model.Truncate(common);
        _cached.RemoveRange(common, _cached.Count - common);
        var clock = Stopwatch.StartNew();
        var fresh = prompt.Skip(common).ToArray();
        _model.Forward(fresh, _logits, promptRows: true);
        _cached.AddRange(fresh);
        double promptSeconds = clock.Elapsed.TotalSeconds;
        foreach (var t in prompt) sampler.Accept(t);

        var decoder = _tokenizer.CreateStreamingDecoder(skipSpecialTokens: false);
        var generated = new List<int>();
        var text = new System.Text.StringBuilder();
        int emitted = 0;
        string reason = "length";
        bool stoppedByString = false;
        var stops = options.StopStrings?.Where(s => s.Length > 0).ToArray() ?? [];
        clock.Restart();
        for (int i = 0; i < options.MaxTokens; i++)
        {
            if (cancel.IsCancellationRequested) { reason = "cancelled"; break; }
            if (constraint is { IsComplete: true }) { reason = "stop"; break; }
            int token = SampleOrDiagnose(sampler, constraint != null && constraint.TryFillAllowed(mask) ? mask : default);
            constraint?.Accept(token);
            if (options.StopAtEndOfTurn && _endOfTurn.Contains(token)) { reason = "stop"; break; }
            generated.Add(token);
            sampler.Accept(token);
            text.Append(decoder.Add(token));
            int stopAt = StopStrings.FirstStop(text, stops);
            if (stopAt >= 0)
            {
                text.Length = stopAt;
                reason = "stop";
                stoppedByString = true;
                Emit(onText, text, ref emitted, holdBack: 0);
                break;
            }
            Emit(onText, text, ref emitted, StopStrings.HoldBack(text, stops));
            if (_model.Position + 1 > _model.MaxContext) { reason = "length"; break; }
            _model.Forward(new ReadOnlySpan<int>(in token), _logits); // one token, no allocation
            _cached.Add(token);
        }
        if (!stoppedByString)
        {
            text.Append(decoder.Flush());
            Emit(onText, text, ref emitted, 0);
        }
        return new GenerationResult(text.ToString(), generated.ToArray(), reason, prompt.Count, common, promptSeconds, clock.Elapsed.TotalSeconds);
    }

    /// <summary>Samples; when the logits are not finite, reruns the cached context layer by layer to say where they broke
    /// (the cache is lost either way).</summary>
    int SampleOrDiagnose(Sampler sampler, ReadOnlySpan<ulong> allowed)
    {
        try { return sampler.Sample(_logits.AsSpan(0, _sampleable), allowed); }
        catch (NonFiniteException)
        {
            var context = _cached.ToArray();
            _cached.Clear();
            throw _model.DiagnoseNonFinite(context, $"the logits after {context.Length} tokens");
        }
    }

    static void Emit(Action<string>? onText, System.Text.StringBuilder text, ref int emitted, int holdBack)
    {
        int upTo = text.Length - holdBack;
        if (onText == null || upTo <= emitted) return;
        onText(text.ToString(emitted, upTo - emitted));
        emitted = upTo;
    }
}
