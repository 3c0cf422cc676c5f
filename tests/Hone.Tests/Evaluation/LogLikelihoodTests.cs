using Hone.Evaluation;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Model;
using Xunit;

namespace Hone.Tests.Evaluation;

/// <summary>Continuation log-likelihoods with KV-cache reuse against brute force (a fresh forward over every prefix),
/// lm-eval's truncation rule, and the acc / acc_norm decisions.</summary>
public class LogLikelihoodTests
{
    static readonly WorkerPool Pool = new(2);

    static (LlamaWeights, LlamaModel) Load(int context)
    {
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath("llama-hf-f32"));
        var w = LlamaWeights.Load(c);
        return (w, new LlamaModel(w, Pool, maxContext: context));
    }

    /// <summary>log p(target | prefix) from a fresh cache, in double.</summary>
    static double LogP(LlamaModel m, int[] prefix, int target)
    {
        m.Reset();
        var logits = new float[m.Config.VocabSize];
        m.Forward(prefix, logits);
        double max = logits.Max();
        return logits[target] - (max + Math.Log(logits.Sum(l => Math.Exp(l - max))));
    }

    static double BruteForce(LlamaModel m, int[] context, int[] continuation)
    {
        double sum = 0;
        for (int j = 0; j < continuation.Length; j++) sum += LogP(m, [.. context, .. continuation[..j]], continuation[j]);
        return sum;
    }

    static int[] Tokens(int count, int seed) => Enumerable.Range(0, count).Select(i => (i * 17 + seed * 31 + 5) % 96).ToArray();

    [Fact]
    public void Sums_equal_brute_force_across_shared_prefixes_repeats_and_fresh_contexts()
    {
        var (w, m) = Load(64);
        using (w) using (m)
        {
            var scorer = new LogLikelihoodScorer(m);
            var shared = Tokens(12, 1);
            int[][] continuations = [[7], [8, 9], [10, 11, 12, 13], Tokens(5, 9)];
            // A few-shot-like sequence: contexts sharing a prefix, the same context again, a context that is a prefix
            // of the previous one, and an unrelated one — the cache must give brute force's answer every time.
            int[][] contexts = [[.. shared, 40, 41], [.. shared, 50], [.. shared, 50], shared[..6], Tokens(9, 4), [1]];
            var got = new List<double>();
            var want = new List<double>();
            foreach (var context in contexts)
            {
                got.AddRange(scorer.Score(context, continuations));
                foreach (var c in continuations) want.Add(BruteForce(m, context, c));
            }
            for (int i = 0; i < want.Count; i++) Assert.True(Math.Abs(got[i] - want[i]) <= 1e-4 * Math.Max(1, Math.Abs(want[i])), $"case {i}: {got[i]} vs brute force {want[i]}");
            Assert.Equal(0, scorer.Truncated);
            Assert.All(got, g => Assert.True(g < 0));
        }
    }

    [Fact]
    public void Contexts_too_long_are_cut_from_the_left_as_lm_eval_does()
    {
        const int max = 16;
        var (w, m) = Load(max);
        using (w) using (m)
        {
            var scorer = new LogLikelihoodScorer(m);
            var context = Tokens(20, 2);
            int[][] continuations = [[3], [4, 5, 6], [7, 8]];
            var got = scorer.Score(context, continuations);
            for (int i = 0; i < continuations.Length; i++)
            {
                // lm-eval: inp = (context + continuation)[-(max_length + 1):][:-1]; the last len(continuation) logits score it.
                var whole = context.Concat(continuations[i]).ToArray();
                var input = whole[^(max + 1)..^1];
                int keptContext = input.Length - (continuations[i].Length - 1);
                double want = BruteForce(m, input[..keptContext], continuations[i]);
                Assert.True(Math.Abs(got[i] - want) <= 1e-4 * Math.Abs(want), $"continuation {i}: {got[i]} vs {want}");
            }
            Assert.Equal(3, scorer.Truncated);
            // Short enough: nothing is cut.
            scorer.Score(context[..10], continuations);
            Assert.Equal(3, scorer.Truncated);
            Assert.Throws<ArgumentException>(() => scorer.Score(context, [Tokens(17, 3)]));
            Assert.Throws<ArgumentException>(() => scorer.Score(context, [[]]));
        }
    }

    [Fact]
    public void Acc_and_acc_norm_differ_when_a_longer_choice_is_likelier_per_byte()
    {
        // Sums: "cat" −4.0 (−1.333/byte), "elephant" −6.0 (−0.75/byte): acc picks the higher sum, acc_norm the higher rate.
        var (pred, predNorm) = MultipleChoiceTask.Decide([-4.0, -6.0], ["cat", "elephant"]);
        Assert.Equal(0, pred);
        Assert.Equal(1, predNorm);
        // Ties go to the first choice, as numpy's argmax.
        Assert.Equal((0, 0), MultipleChoiceTask.Decide([-2.0, -2.0], ["ab", "cd"]));
    }

    [Fact]
    public void Acc_norm_divides_by_utf8_bytes_not_characters()
    {
        // "é" is 1 character but 2 bytes; "日本" is 2 characters, 6 bytes.
        // Per byte: −3/2 = −1.5 vs −3.2/2 = −1.6 → choice 0; per character it would be −3 vs −1.6 → choice 1.
        Assert.Equal(0, MultipleChoiceTask.Decide([-3.0, -3.2], ["é", "ab"]).NormalizedPrediction);
        // Per byte: −4/6 = −0.667 vs −2/2 = −1 → choice 0; per character −2 vs −1 would pick choice 1.
        Assert.Equal(0, MultipleChoiceTask.Decide([-4.0, -2.0], ["日本", "ab"]).NormalizedPrediction);
        Assert.Equal(1, MultipleChoiceTask.Decide([-4.0, -2.0], ["日本", "ab"]).Prediction);
        Assert.Throws<ArgumentException>(() => MultipleChoiceTask.Decide([-1.0, -2.0], ["", "a"]));
    }
}
