using Hone.Inference;
using Hone.Tensors;
using Hone.Model;
using Hone.Tokenization;

namespace Hone.Evaluation;

/// <summary>How perplexity windows are cut and which positions are scored.</summary>
public enum PerplexityProtocol
{
    /// <summary>BOS + the whole text; when longer than the context, windows of Ctx tokens advance by Stride and each
    /// token is scored once, with as much left context as the window allows; every token after BOS is scored.</summary>
    Full,
    /// <summary>llama.cpp's llama-perplexity: the tokens (BOS first) are cut into consecutive chunks of Ctx, the
    /// first token of each chunk is replaced by BOS, and positions Ctx/2 .. Ctx-2 of each chunk are scored, each
    /// predicting the next token. Needs at least 2·Ctx tokens. BOS only where the tokenizer adds one (llama.cpp's
    /// add_bos): GPT-2-style vocabularies keep their own first token.</summary>
    LlamaCpp,
}

/// <param name="Chunks">llama.cpp protocol: score at most this many chunks (llama-perplexity's --chunks); when set, a
/// text of fewer than 2·Context tokens is accepted as long as it fills one chunk</param>
public sealed record PerplexityOptions(int Context = 512, PerplexityProtocol Protocol = PerplexityProtocol.Full, int? Stride = null, int? Chunks = null);

/// <summary>Sees each scored position's logits (the model's whole vocabulary) and the token it predicts, in scoring order.</summary>
public delegate void ScoredPosition(ReadOnlySpan<float> logits, int target);

/// <param name="NegativeLogLikelihood">Σ −ln p(token) over the scored tokens, accumulated in double (nats)</param>
/// <param name="ScoredBytes">UTF-8 bytes of the scored tokens' text (for bits per byte)</param>
public sealed record PerplexityResult(double Perplexity, double BitsPerByte, long TokensScored, double NegativeLogLikelihood,
    long ScoredBytes, string Protocol, int Context, int Stride, long Tokens)
{
    public double MeanNegativeLogLikelihood => TokensScored == 0 ? double.NaN : NegativeLogLikelihood / TokensScored;
}

public static class Perplexity
{
    /// <summary>The BOS a protocol places: Full uses the tokenizer's BOS token whenever it has one (as lm-eval's rolling
    /// log-likelihood prefixes the end-of-text token); LlamaCpp only when the tokenizer adds BOS, as llama-perplexity
    /// reads the vocabulary's add_bos flag.</summary>
    public static int? BosFor(PerplexityProtocol protocol, Tokenizer tokenizer) =>
        protocol == PerplexityProtocol.LlamaCpp && !tokenizer.AddsBos ? null : tokenizer.BosId;

    /// <param name="tokens">the text's tokens WITHOUT a leading BOS (each protocol places BOS itself)</param>
    /// <param name="bos">the BOS id, or null for models without one (then the first token only conditions)</param>
    /// <param name="spanBytes">UTF-8 length of the text of tokens[start..start+count), for bits per byte</param>
    /// <summary>The perplexity of a text file under a model file: protocol full (BOS + the text, windows of
    /// <paramref name="context"/> tokens, capped at the model's context), exact precision. What commands that change a
    /// model report before and after.</summary>
    public static PerplexityResult OfFile(string model, string textFile, int context = 512, int threads = 0)
    {
        if (!File.Exists(textFile)) throw new FileNotFoundException($"{textFile}: no such file", textFile);
        int positions;
        using (var checkpoint = Checkpoint.Open(model)) positions = checkpoint.Config.MaxPositions;
        int ctx = Math.Min(context, positions);
        using var loaded = LoadedModel.Open(model, null, threads, ctx, maxBatch: ctx, precision: ComputePrecision.Exact);
        var tokens = loaded.Tokenizer.Encode(File.ReadAllText(textFile), addSpecialTokens: false, parseSpecialTokens: false);
        return Compute(loaded.Model, tokens, BosFor(PerplexityProtocol.Full, loaded.Tokenizer), (_, _) => 0, new PerplexityOptions(ctx));
    }

    public static unsafe PerplexityResult Compute(LlamaModel model, IReadOnlyList<int> tokens, int? bos, Func<int, int, long> spanBytes,
        PerplexityOptions options, Action<int, int>? progress = null, ScoredPosition? observe = null)
    {
        int ctx = options.Context;
        if (ctx < 2) throw new ArgumentException($"context must be at least 2 tokens, got {ctx}");
        if (ctx > model.MaxContext) throw new ArgumentException($"context {ctx} exceeds the model's context {model.MaxContext}");
        int v = model.Config.VocabSize;
        var logits = new float[(long)ctx * v];
        double nll = 0;
        long scored = 0, bytes = 0;

        int offset = bos != null ? 1 : 0; // index in the scored sequence minus this = index in tokens
        void Score(int[] window, int from, int to, int[] targets, int targetOffset)
        {
            if (to > from) bytes += spanBytes(targetOffset - offset, to - from);
            // Positions from..to-1 of the window predict targets[targetOffset + (p - from)].
            model.Reset();
            model.Forward(window, logits, allLogits: true);
            fixed (float* l = logits)
                for (int p = from; p < to; p++)
                {
                    int target = targets[targetOffset + p - from];
                    float* row = l + (long)p * v;
                    double term = Tensors.Softmax.LogSumExp(row, v) - row[target];
                    if (!double.IsFinite(term)) throw model.DiagnoseNonFinite(window, $"the logits at position {p} of a {window.Length}-token window");
                    nll += term;
                    scored++;
                    observe?.Invoke(new ReadOnlySpan<float>(row, v), target);
                }
        }

        if (options.Protocol == PerplexityProtocol.LlamaCpp)
        {
            // llama-perplexity tokenizes with BOS; chunk boundaries are counted on that sequence.
            var all = new List<int>(tokens.Count + 1);
            if (bos is int b) all.Add(b);
            all.AddRange(tokens);
            int chunks = all.Count / ctx;
            if (options.Chunks is int most)
            {
                if (most < 1) throw new ArgumentException($"chunks must be at least 1, got {most}");
                if (chunks < 1) throw new ArgumentException($"the llama.cpp protocol needs at least {ctx} tokens for one chunk, the text has {all.Count}");
                chunks = Math.Min(chunks, most);
            }
            else if (chunks < 2) throw new ArgumentException($"the llama.cpp protocol needs at least {2 * ctx} tokens, the text has {all.Count}");
            int first = ctx / 2;
            var arr = all.ToArray();
            for (int c = 0; c < chunks; c++)
            {
                var window = arr.AsSpan(c * ctx, ctx).ToArray();
                if (bos is int bb) window[0] = bb;
                Score(window, first, ctx - 1, arr, c * ctx + first + 1);
                progress?.Invoke(c + 1, chunks);
            }
            return Result(PerplexityProtocol.LlamaCpp, ctx, ctx);
        }

        int stride = options.Stride ?? ctx;
        if (stride < 1 || stride > ctx) throw new ArgumentException($"stride must be in 1..{ctx}, got {stride}");
        var seq = new List<int>(tokens.Count + 1);
        if (bos is int bosId) seq.Add(bosId);
        seq.AddRange(tokens);
        var s = seq.ToArray();
        if (s.Length < 2) throw new ArgumentException("the text is too short to score");
        int scoredUpTo = 1; // positions < scoredUpTo in s are already scored (position 0 is BOS or the first token)
        int windows = 0, totalWindows = Math.Max(1, (int)Math.Ceiling(Math.Max(0, s.Length - ctx) / (double)stride) + 1);
        for (int begin = 0; scoredUpTo < s.Length; begin += stride)
        {
            int end = Math.Min(begin + ctx, s.Length);
            var window = s.AsSpan(begin, end - begin).ToArray();
            // Window position p predicts s[begin + p + 1]; score the targets not scored yet.
            int fromTarget = Math.Max(scoredUpTo, begin + 1);
            Score(window, fromTarget - 1 - begin, end - 1 - begin, s, fromTarget);
            scoredUpTo = end;
            progress?.Invoke(++windows, totalWindows);
            if (end == s.Length) break;
        }
        return Result(PerplexityProtocol.Full, ctx, stride);

        PerplexityResult Result(PerplexityProtocol protocol, int context, int strideUsed) =>
            new(Math.Exp(nll / scored), nll / Math.Log(2) / Math.Max(1, bytes), scored, nll, bytes,
                protocol == PerplexityProtocol.Full ? "full" : "llama.cpp", context, strideUsed, tokens.Count);
    }
}
