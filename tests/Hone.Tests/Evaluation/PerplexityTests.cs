using Hone.Evaluation;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Model;
using Hone.Tests.Tokenization;
using Xunit;

namespace Hone.Tests.Evaluation;

/// <summary>Perplexity protocols against brute-force log-likelihoods computed position by position.</summary>
public class PerplexityTests
{
    static readonly WorkerPool Pool = new(2);

    /// <summary>−ln p(target | prefix) with a fresh cache and a full forward over the prefix.</summary>
    static double Nll(LlamaModel m, int[] prefix, int target)
    {
        m.Reset();
        var logits = new float[m.Config.VocabSize];
        m.Forward(prefix, logits);
        double max = logits.Max();
        return max + Math.Log(logits.Sum(l => Math.Exp(l - max))) - logits[target];
    }

    static (LlamaWeights, LlamaModel) Load()
    {
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath("llama-hf-f32"));
        var w = LlamaWeights.Load(c);
        return (w, new LlamaModel(w, Pool, maxContext: 64));
    }

    [Fact]
    public void Full_protocol_scores_every_token_after_bos_with_its_full_left_context()
    {
        var (w, m) = Load();
        using (w) using (m)
        {
            var tokens = Enumerable.Range(0, 20).Select(i => (i * 13 + 5) % 96).ToArray();
            const int bos = 1;
            var r = Perplexity.Compute(m, tokens, bos, (_, count) => 2L * count, new PerplexityOptions(Context: 32));
            double expected = 0;
            var seq = new[] { bos }.Concat(tokens).ToArray();
            for (int i = 1; i < seq.Length; i++) expected += Nll(m, seq[..i], seq[i]);
            Assert.Equal(20, r.TokensScored);
            Assert.Equal(expected, r.NegativeLogLikelihood, 3);
            // Relative, as the NLL check above: the batched and the token-by-token passes differ in fp32 rounding.
            Assert.Equal(Math.Exp(expected / 20), r.Perplexity, tolerance: 1e-5 * Math.Exp(expected / 20));
            Assert.Equal(expected / Math.Log(2) / 40, r.BitsPerByte, 5);
            Assert.Equal("full", r.Protocol);
        }
    }

    [Fact]
    public void Full_protocol_with_stride_scores_each_token_once_with_the_window_context()
    {
        var (w, m) = Load();
        using (w) using (m)
        {
            var tokens = Enumerable.Range(0, 45).Select(i => (i * 7 + 3) % 96).ToArray();
            const int bos = 1, ctx = 16, stride = 8;
            var r = Perplexity.Compute(m, tokens, bos, (_, count) => count, new PerplexityOptions(ctx, PerplexityProtocol.Full, stride));
            var s = new[] { bos }.Concat(tokens).ToArray();
            double expected = 0;
            int scoredUpTo = 1;
            for (int begin = 0; scoredUpTo < s.Length; begin += stride)
            {
                int end = Math.Min(begin + ctx, s.Length);
                for (int t = Math.Max(scoredUpTo, begin + 1); t < end; t++) expected += Nll(m, s[begin..t], s[t]);
                scoredUpTo = end;
            }
            Assert.Equal(45, r.TokensScored);
            Assert.Equal(expected, r.NegativeLogLikelihood, 3);
        }
    }

    [Fact]
    public void LlamaCpp_protocol_replaces_chunk_starts_with_bos_and_scores_the_second_half()
    {
        var (w, m) = Load();
        using (w) using (m)
        {
            var tokens = Enumerable.Range(0, 50).Select(i => (i * 11 + 2) % 96).ToArray();
            const int bos = 1, ctx = 16;
            var r = Perplexity.Compute(m, tokens, bos, (_, count) => count, new PerplexityOptions(ctx, PerplexityProtocol.LlamaCpp));
            var all = new[] { bos }.Concat(tokens).ToArray(); // 51 tokens → 3 chunks of 16
            double expected = 0;
            int count = 0;
            for (int c = 0; c < all.Length / ctx; c++)
            {
                var chunk = all[(c * ctx)..((c + 1) * ctx)];
                chunk[0] = bos;
                for (int j = ctx / 2; j <= ctx - 2; j++) { expected += Nll(m, chunk[..(j + 1)], chunk[j + 1]); count++; }
            }
            Assert.Equal(count, r.TokensScored);
            Assert.Equal(3 * 7, count);
            Assert.Equal(expected, r.NegativeLogLikelihood, 3);
            Assert.Throws<ArgumentException>(() => Perplexity.Compute(m, tokens[..20], bos, (_, count) => count, new PerplexityOptions(ctx, PerplexityProtocol.LlamaCpp)));
        }
    }

    [SkippableFact]
    public void LlamaCpp_protocol_places_bos_only_where_the_tokenizer_adds_it_as_llama_perplexity_does()
    {
        // llama-perplexity on a GPT-2-vocabulary GGUF keeps each chunk's own first token (add_bos is false there);
        // checked against llama.cpp itself by tools/llamacpp/check.sh.
        var gpt2 = TokenizerVectors.Gpt2Hf();
        var llama = TokenizerVectors.Llama2Hf();
        Assert.False(gpt2.AddsBos);
        Assert.NotNull(gpt2.BosId);
        Assert.Null(Perplexity.BosFor(PerplexityProtocol.LlamaCpp, gpt2));
        Assert.Equal(gpt2.BosId, Perplexity.BosFor(PerplexityProtocol.Full, gpt2));
        Assert.True(llama.AddsBos);
        Assert.Equal(1, Perplexity.BosFor(PerplexityProtocol.LlamaCpp, llama));
        Assert.Equal(1, Perplexity.BosFor(PerplexityProtocol.Full, llama));
    }
}
