using Hone.Model;
using Hone.Tokenization;

namespace Hone.Evaluation;

/// <summary>A context/continuation pair as token ids.</summary>
public sealed record EncodedPair(int[] Context, int[] Continuation);

/// <summary>
/// lm-evaluation-harness's request encoding (HFLM._encode_pair): whitespace at the end of the context moves to the
/// front of the continuation; context and context+continuation are encoded without special tokens, and the
/// continuation's tokens are the joint encoding minus the first len(context tokens) — so " A" after "Answer:" becomes
/// the token the model would really produce there. The context tokens are the separate encoding of the context.
/// </summary>
public static class LmEvalEncoding
{
    public const string Description = "lm-eval _encode_pair: trailing context whitespace moved to the continuation; " +
                                      "continuation tokens = encode(context + continuation)[len(encode(context)):]; no special tokens, BOS as configured";

    /// <param name="bos">prepended to the context when set (lm-eval's add_bos_token)</param>
    public static EncodedPair Encode(Tokenizer tokenizer, string context, string continuation, int? bos)
    {
        int spaces = context.Length - context.TrimEnd().Length;
        if (spaces > 0)
        {
            continuation = context[^spaces..] + continuation;
            context = context[..^spaces];
        }
        var whole = tokenizer.Encode(context + continuation, addSpecialTokens: false, parseSpecialTokens: false);
        var contextIds = tokenizer.Encode(context, addSpecialTokens: false, parseSpecialTokens: false);
        var continuationIds = whole.Length > contextIds.Length ? whole[contextIds.Length..] : [];
        if (bos is int b) contextIds = [b, .. contextIds];
        if (contextIds.Length == 0)
        {
            // lm-eval conditions an empty context on its prefix token: BOS, else EOS.
            int prefix = tokenizer.BosId ?? tokenizer.EosId ?? throw new ArgumentException("the context is empty and the tokenizer has neither BOS nor EOS to stand in");
            contextIds = [prefix];
            continuationIds = tokenizer.Encode(continuation, addSpecialTokens: false, parseSpecialTokens: false);
        }
        if (continuationIds.Length == 0) throw new ArgumentException($"the continuation \"{continuation}\" has no tokens of its own after context \"{Tail(context)}\"");
        return new EncodedPair(contextIds, continuationIds);
    }

    static string Tail(string s) => s.Length <= 40 ? s : "..." + s[^37..];
}

/// <summary>
/// Σ log p(continuation | context) over a KV-cached model, computing each distinct context once: the cache keeps the
/// longest common prefix with the previous context (few-shot examples, the shared question of a multiple-choice item),
/// and every continuation runs on top of it. Sums accumulate in double from a log-softmax of each row.
/// When context + continuation do not fit, the context is cut from the left as lm-eval does (its input is the last
/// max_length + 1 tokens minus the final one).
/// </summary>
public sealed unsafe class LogLikelihoodScorer
{
    readonly LlamaModel _model;
    readonly List<int> _cached = new(); // tokens whose keys/values are valid at positions 0..Count-1
    readonly float[] _last;            // logits after the last token of _cached
    float[] _rows = [];
    bool _lastValid;

    public LogLikelihoodScorer(LlamaModel model)
    {
        _model = model;
        _last = new float[model.Config.VocabSize];
    }

    /// <summary>How many continuations had their context cut to fit (reported with the results).</summary>
    public int Truncated { get; private set; }

    public void Reset() { _cached.Clear(); _lastValid = false; _model.Reset(); }

    public double[] Score(IReadOnlyList<int> context, IReadOnlyList<int[]> continuations)
    {
        if (context.Count == 0) throw new ArgumentException("the context has no tokens (give at least BOS)");
        var result = new double[continuations.Count];
        for (int i = 0; i < continuations.Count; i++)
        {
            var cont = continuations[i];
            if (cont.Length == 0) throw new ArgumentException($"continuation {i} has no tokens");
            if (cont.Length > _model.MaxContext) throw new ArgumentException($"a continuation of {cont.Length} tokens does not fit the context of {_model.MaxContext}");
            // The model reads context + continuation minus its last token.
            int cut = Math.Max(0, context.Count + cont.Length - 1 - _model.MaxContext);
            if (cut > 0) Truncated++;
            result[i] = ScoreOne(context, cut, cont);
        }
        return result;
    }

    double ScoreOne(IReadOnlyList<int> context, int cut, int[] cont)
    {
        int c = context.Count - cut;
        EnsureContext(context, cut);
        int v = _model.Config.VocabSize;
        double sum;
        fixed (float* last = _last) sum = LogProbability(last, v, cont[0]);
        if (!double.IsFinite(sum)) throw Diagnose(context, cut, cont, 0);
        if (cont.Length == 1) return sum;
        _model.Truncate(c);
        long need = (long)(cont.Length - 1) * v;
        if (_rows.Length < need) _rows = new float[need];
        _model.Forward(cont.AsSpan(0, cont.Length - 1), _rows, allLogits: true);
        fixed (float* rows = _rows)
            for (int j = 1; j < cont.Length; j++)
            {
                double term = LogProbability(rows + (long)(j - 1) * v, v, cont[j]);
                if (!double.IsFinite(term)) throw Diagnose(context, cut, cont, j);
                sum += term;
            }
        return sum;
    }

    /// <summary>Non-finite log-probabilities (a NaN or infinite logit): rerun what the model read, layer by layer, to say where.</summary>
    NonFiniteException Diagnose(IReadOnlyList<int> context, int cut, int[] cont, int at)
    {
        int[] read = [.. context.Skip(cut), .. cont.Take(at)];
        _cached.Clear();
        _lastValid = false;
        return _model.DiagnoseNonFinite(read, $"the logits after {read.Length} tokens");
    }

    /// <summary>Bring the cache to hold context[cut..] and <see cref="_last"/> its final logits, reusing the common prefix.</summary>
    void EnsureContext(IReadOnlyList<int> context, int cut)
    {
        int c = context.Count - cut;
        int common = 0;
        while (common < _cached.Count && common < c && _cached[common] == context[cut + common]) common++;
        if (common == c && c == _cached.Count && _lastValid) return;
        if (common == c) common--; // at least one token must run to produce the logits
        _model.Truncate(common);
        _cached.RemoveRange(common, _cached.Count - common);
        var fresh = new int[c - common];
        for (int j = 0; j < fresh.Length; j++) fresh[j] = context[cut + common + j];
        _model.Forward(fresh, _last);
        _cached.AddRange(fresh);
        _lastValid = true;
    }

    static double LogProbability(float* row, int v, int token) => row[token] - Tensors.Softmax.LogSumExp(row, v);
}
