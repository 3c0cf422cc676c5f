using System.Buffers.Binary;
using System.Text.Json.Nodes;
using Hone.Evaluation;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Evaluation;

/// <summary>The KL-divergence report (llama-perplexity's --kl-divergence) against statistics computed here directly
/// from both models' logits in double; the base file's layout, round trip and refusals.</summary>
public class KlDivergenceTests
{
    static readonly WorkerPool Pool = new(2);
    const int Vocab = 97; // odd: records carry llama.cpp's padding uint16
    const int Ctx = 16;

    static ModelConfig Config => new()
    {
        Architecture = "llama", VocabSize = Vocab, HiddenSize = 32, IntermediateSize = 64, Layers = 2, Heads = 2, KvHeads = 1,
        HeadDim = 16, RotaryDims = 16, MaxPositions = 64, TiedEmbeddings = false,
    };

    /// <summary>The same random weights in F32 (the base) and, as the perturbation, quantized to <paramref name="type"/>.</summary>
    static (LlamaWeights W, LlamaModel M) Model(TensorType type)
    {
        var w = LlamaWeights.CreateRandom(Config, type, seed: 7, std: 0.1f, embeddingStd: 0.2f);
        return (w, new LlamaModel(w, Pool, maxContext: 64));
    }

    static int[] Tokens(int n) => Enumerable.Range(0, n).Select(i => (i * 37 + 11) % Vocab).ToArray();
    const int Bos = 1;

    /// <summary>ln softmax of every position of a window, in double.</summary>
    static double[][] LogSoftmax(LlamaModel m, int[] window)
    {
        m.Reset();
        var logits = new float[window.Length * Vocab];
        m.Forward(window, logits, allLogits: true);
        return Enumerable.Range(0, window.Length).Select(p =>
        {
            var row = logits.AsSpan(p * Vocab, Vocab).ToArray();
            double max = row.Max(), lse = max + Math.Log(row.Sum(x => Math.Exp(x - max)));
            return row.Select(x => x - lse).ToArray();
        }).ToArray();
    }

    [Fact]
    public void A_model_against_its_own_base_has_zero_divergence_and_the_same_top_token_everywhere()
    {
        var (w, m) = Model(TensorType.F32);
        using var dir = new TempDirectory();
        using (w) using (m)
        {
            var tokens = Tokens(60);
            var ppl = KlDivergence.SaveBase(m, tokens, Bos, (_, c) => c, Ctx, null, dir.File("base.kld"), null);
            var file = KlBaseFile.Open(dir.File("base.kld"));
            Assert.Equal(3 * 7, ppl.TokensScored);
            var r = KlDivergence.Compare(m, file, Bos, (_, c) => c);
            Assert.Equal(3 * 7, r.Count);
            Assert.Equal(1.0, r.SameTop);
            // Only the 16-bit storage of the base's log-probabilities separates the two (a step of at most 16/65535 nats).
            Assert.True(Math.Abs(r.KldMean) < 1e-4, $"mean KLD {r.KldMean}");
            Assert.True(r.Kld.Max < 1e-4 && r.Kld.Min > -1e-4, $"KLD range {r.Kld.Min} .. {r.Kld.Max}");
            Assert.True(Math.Abs(r.PplRatio - 1) < 1e-4, $"PPL ratio {r.PplRatio}");
            Assert.Equal(ppl.Perplexity, r.Ppl, tolerance: 1e-6 * ppl.Perplexity);
            Assert.True(Math.Abs(r.DeltaP.Max) < 1e-4 && Math.Abs(r.DeltaP.Min) < 1e-4, $"Δp range {r.DeltaP.Min} .. {r.DeltaP.Max}");
        }
    }

    [Theory]
    [InlineData(TensorType.Q8_0)]
    [InlineData(TensorType.Q4_0)]
    public void Against_a_quantized_model_the_statistics_equal_a_direct_computation_from_both_models_logits(TensorType type)
    {
        var (wb, mb) = Model(TensorType.F32);
        var (wq, mq) = Model(type);
        using var dir = new TempDirectory();
        using (wb) using (mb) using (wq) using (mq)
        {
            var tokens = Tokens(70); // BOS + 70 = 71 tokens: 4 chunks of 16
            KlDivergence.SaveBase(mb, tokens, Bos, (_, c) => c, Ctx, null, dir.File("base.kld"), null);
            var r = KlDivergence.Compare(mq, KlBaseFile.Open(dir.File("base.kld")), Bos, (_, c) => c);

            var all = new[] { Bos }.Concat(tokens).ToArray();
            var kld = new List<double>();
            var dp = new List<double>();
            double nll = 0, nllBase = 0;
            int same = 0;
            for (int c = 0; c < all.Length / Ctx; c++)
            {
                var window = all[(c * Ctx)..((c + 1) * Ctx)];
                window[0] = Bos;
                var lb = LogSoftmax(mb, window);
                var lq = LogSoftmax(mq, window);
                for (int p = Ctx / 2; p <= Ctx - 2; p++)
                {
                    int target = window[p + 1];
                    // Within the 16 nats the base file keeps (beyond, llama.cpp's format stores the floor).
                    Assert.True(lb[p].Max() - lb[p].Min() < KlBaseFile.Floor, $"log-probabilities span {lb[p].Max() - lb[p].Min()} nats");
                    kld.Add(Enumerable.Range(0, Vocab).Sum(i => Math.Exp(lb[p][i]) * (lb[p][i] - lq[p][i])));
                    dp.Add(Math.Exp(lq[p][target]) - Math.Exp(lb[p][target]));
                    nll -= lq[p][target];
                    nllBase -= lb[p][target];
                    if (Array.IndexOf(lb[p], lb[p].Max()) == Array.IndexOf(lq[p], lq[p].Max())) same++;
                }
            }
            int n = kld.Count;
            Assert.Equal(4 * 7, n);
            Assert.Equal(n, r.Count);
            double meanKld = kld.Average();
            Assert.True(meanKld > 1e-5, $"the perturbation is visible: mean KLD {meanKld}");
            // The base's log-probabilities are stored in 16 bits: each within half a step (≤ 16/65535/2 nats), errors that
            // mostly cancel in the sum over the vocabulary (about 1e-6 here, where Q8_0's mean KLD is about 2e-4).
            Assert.Equal(meanKld, r.KldMean, tolerance: 1e-5 + 1e-3 * meanKld);
            var sorted = kld.Order().ToArray();
            Assert.Equal(sorted[^1], r.Kld.Max, tolerance: 1e-5 + 1e-3 * sorted[^1]);
            Assert.Equal(sorted[0], r.Kld.Min, tolerance: 1e-5);
            Assert.Equal((sorted[n / 2 - 1] + sorted[n / 2]) / 2, r.Kld.Median, tolerance: 1e-5 + 1e-3 * meanKld);
            double p90 = 0.9 * (n - 1), frac = p90 - (int)p90;
            Assert.Equal((1 - frac) * sorted[(int)p90] + frac * sorted[(int)p90 + 1], r.Kld.P90, tolerance: 1e-5 + 1e-3 * meanKld);
            Assert.Equal((double)same / n, r.SameTop);
            Assert.Equal(Math.Sqrt(r.SameTop * (1 - r.SameTop) / (n - 1)), r.SameTopUncertainty, 12);
            Assert.Equal(Math.Exp((nll - nllBase) / n), r.PplRatio, tolerance: 1e-4);
            Assert.Equal(Math.Exp(nll / n), r.Ppl, tolerance: 1e-6 * r.Ppl);
            Assert.Equal(Math.Exp(nllBase / n), r.PplBase, tolerance: 1e-4 * r.PplBase);
            Assert.Equal(dp.Average(), r.DeltaPMean, tolerance: 1e-5);
            Assert.Equal(Math.Sqrt(dp.Average(x => x * x)), r.DeltaPRms, tolerance: 1e-5);
            Assert.Equal(dp.Max(), r.DeltaP.Max, tolerance: 1e-5);
            Assert.Equal(dp.Min(), r.DeltaP.Min, tolerance: 1e-5);
            double sd = Math.Sqrt((kld.Average(x => x * x) - meanKld * meanKld) / (n - 1));
            Assert.Equal(sd, r.KldUncertainty, tolerance: 1e-5 + 1e-2 * sd);
        }
    }

    [Fact]
    public void The_base_file_has_llama_perplexity_s_layout_and_round_trips()
    {
        using var dir = new TempDirectory();
        var path = dir.File("b.kld");
        var rng = new Random(3);
        const int ctx = 8, chunks = 2, v = 5;
        var tokens = Enumerable.Range(0, ctx * chunks).Select(i => i % v).ToArray();
        var rows = Enumerable.Range(0, chunks * KlBaseFile.ScoredPerChunkFor(ctx))
            .Select(i => Enumerable.Range(0, v).Select(_ => (float)(rng.NextDouble() * 8 - 4)).ToArray()).ToList();
        rows[1][3] = rows[1].Max() - 30; // far under the top: stored at the floor
        using (var writer = new KlBaseFile.Writer(path, ctx, v, chunks, tokens))
        {
            foreach (var row in rows) writer.Add(row);
            Assert.False(File.Exists(path)); // nothing under the final name before Commit
            writer.Commit();
        }
        var bytes = File.ReadAllBytes(path);
        Assert.Equal("_logits_"u8.ToArray(), bytes[..8]);
        Assert.Equal(ctx, BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(8)));
        Assert.Equal(v, BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(12)));
        Assert.Equal(chunks, BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(16)));
        // 20 header bytes, 16 int32 tokens, 2 chunks × 3 positions × (4 + 6) uint16 (5 log-probs padded to 6).
        Assert.Equal(20 + 4 * 16 + 2 * 3 * 10 * 2, bytes.Length);
        Assert.Equal(bytes.Length, KlBaseFile.ExpectedLength(ctx, v, chunks));

        var file = KlBaseFile.Open(path);
        Assert.Equal((ctx, v, chunks), (file.Context, file.VocabSize, file.Chunks));
        Assert.Equal(tokens, file.Tokens);
        using var records = file.Records();
        foreach (var (row, index) in rows.Select((r, i) => (r, i)))
        {
            var (scale, minLogProb, q) = records.Next();
            double max = row.Max(), lse = max + Math.Log(row.Sum(x => Math.Exp(x - (double)max)));
            for (int i = 0; i < v; i++)
            {
                double stored = scale * BinaryPrimitives.ReadUInt16LittleEndian(q.Span[(2 * i)..]) + minLogProb;
                double exact = row[i] - lse;
                if (exact > max - lse - KlBaseFile.Floor) Assert.True(Math.Abs(stored - exact) <= scale / 2 + 1e-5, $"row {index} token {i}: {stored} vs {exact}");
                else Assert.Equal(minLogProb, stored, 6);
            }
        }
        Assert.Throws<InvalidOperationException>(() => records.Next());
    }

    [Fact]
    public void Truncated_foreign_and_mismatched_base_files_are_refused_naming_the_file_and_what_differs()
    {
        using var dir = new TempDirectory();
        var good = dir.File("good.kld");
        using (var writer = new KlBaseFile.Writer(good, 4, 3, 1, [0, 1, 2, 1]))
        {
            writer.Add([0f, 1f, 2f]);
            writer.Commit();
        }
        var bytes = File.ReadAllBytes(good);

        var truncated = dir.File("truncated.kld");
        File.WriteAllBytes(truncated, bytes[..^3]);
        var e = Assert.Throws<DataFormatException>(() => KlBaseFile.Open(truncated));
        Assert.Contains(truncated, e.Message);
        Assert.Contains("truncated", e.Message);

        var trailing = dir.File("trailing.kld");
        File.WriteAllBytes(trailing, [.. bytes, 0]);
        Assert.Contains("trailing data", Assert.Throws<DataFormatException>(() => KlBaseFile.Open(trailing)).Message);

        var foreign = dir.File("foreign.kld");
        File.WriteAllBytes(foreign, [.. "GGUF"u8.ToArray(), .. bytes[4..]]);
        e = Assert.Throws<DataFormatException>(() => KlBaseFile.Open(foreign));
        Assert.Contains(foreign, e.Message);
        Assert.Contains("_logits_", e.Message);

        var tiny = dir.File("tiny.kld");
        File.WriteAllBytes(tiny, bytes[..10]);
        Assert.Contains(tiny, Assert.Throws<DataFormatException>(() => KlBaseFile.Open(tiny)).Message);

        var badToken = dir.File("token.kld");
        var copy = (byte[])bytes.Clone();
        BinaryPrimitives.WriteInt32LittleEndian(copy.AsSpan(20 + 4), 7);
        File.WriteAllBytes(badToken, copy);
        Assert.Contains("token 1 is 7", Assert.Throws<DataFormatException>(() => KlBaseFile.Open(badToken)).Message);

        var hugeChunks = dir.File("chunks.kld");
        copy = (byte[])bytes.Clone();
        BinaryPrimitives.WriteInt32LittleEndian(copy.AsSpan(16), int.MaxValue);
        File.WriteAllBytes(hugeChunks, copy);
        Assert.Contains(hugeChunks, Assert.Throws<DataFormatException>(() => KlBaseFile.Open(hugeChunks)).Message);

        // The good file's vocabulary (3) is not the model's (97); a context beyond the model's is refused as well.
        var (w, m) = Model(TensorType.F32);
        using (w) using (m)
        {
            e = Assert.Throws<DataFormatException>(() => KlDivergence.Compare(m, KlBaseFile.Open(good), Bos, (_, c) => c));
            Assert.Contains(good, e.Message);
            Assert.Contains("vocabulary of 3 tokens, but the model has 97", e.Message);
            var longer = dir.File("longer.kld");
            using (var writer = new KlBaseFile.Writer(longer, 128, Vocab, 1, new int[128]))
            {
                for (int i = 0; i < KlBaseFile.ScoredPerChunkFor(128); i++) writer.Add(new float[Vocab]);
                writer.Commit();
            }
            e = Assert.Throws<DataFormatException>(() => KlDivergence.Compare(m, KlBaseFile.Open(longer), Bos, (_, c) => c));
            Assert.Contains(longer, e.Message);
            Assert.Contains("context of 128 tokens, more than the model's 64", e.Message);
        }
    }

    [Fact]
    public void The_command_saves_a_base_compares_with_json_and_refuses_mismatches_in_one_line()
    {
        using var dir = new TempDirectory();
        var text = dir.File("text.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Range(0, 30).Select(i => $"Order {i} ships in {i % 5 + 1} days. The customer asked where order {i} is. ")));
        var model = TinyChatModel.Path;
        var basePath = dir.File("base.kld");
        var r = HoneCli.Run("perplexity", model, "-f", text, "--ctx", "32", "--kl-divergence-base", basePath, "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var saved = JsonNode.Parse(r.Stdout)!;
        Assert.Equal("llama.cpp", (string)saved["protocol"]!);
        Assert.Equal(basePath, (string)saved["kl_divergence_base"]!);
        Assert.True(File.Exists(basePath));

        r = HoneCli.Run("perplexity", model, "--kl-divergence", "--kl-divergence-base", basePath, "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var k = JsonNode.Parse(r.Stdout)!.AsObject();
        foreach (var field in new[] { "ppl", "ppl_uncertainty", "ppl_base", "ppl_base_uncertainty", "ln_ppl_correlation", "ln_ppl_ratio", "ln_ppl_ratio_uncertainty",
                     "ppl_ratio", "ppl_ratio_uncertainty", "ppl_diff", "ppl_diff_uncertainty", "same_top_p", "same_top_p_uncertainty", "tokens_scored", "ctx", "chunks" })
            Assert.True(k.ContainsKey(field), $"{field} missing from {r.Stdout}");
        foreach (var field in new[] { "mean", "uncertainty", "max", "p99_9", "p99", "p95", "p90", "median", "p10", "p5", "p1", "p0_1", "min" })
            Assert.True(k["kld"]!.AsObject().ContainsKey(field), $"kld.{field} missing");
        foreach (var field in new[] { "mean", "uncertainty", "rms", "rms_uncertainty", "max", "p99", "p75", "median", "p25", "p1", "min" })
            Assert.True(k["delta_p"]!.AsObject().ContainsKey(field), $"delta_p.{field} missing");
        Assert.Equal(32, (int)k["ctx"]!);
        Assert.Equal((long)saved["tokens_scored"]!, (long)k["tokens_scored"]!);
        Assert.Equal(1.0, (double)k["same_top_p"]!);
        Assert.True(Math.Abs((double)k["kld"]!["mean"]!) < 1e-4, r.Stdout);
        Assert.Equal((double)saved["ppl"]!, (double)k["ppl"]!, tolerance: 1e-6 * (double)saved["ppl"]!);

        r = HoneCli.Run("perplexity", model, "--kl-divergence", "--kl-divergence-base", basePath);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("Mean    KLD:", r.Stdout);
        Assert.Contains("Same top p: 100.000", r.Stdout);

        void Refused(string expected, params string[] args)
        {
            var refused = HoneCli.Run(args);
            Assert.True(refused.ExitCode == 1, refused.ToString());
            Assert.Contains(expected, refused.Stderr);
            Assert.Single(refused.Stderr.Trim().Split('\n'));
        }
        Refused("--kl-divergence-base FILE", "perplexity", model, "--kl-divergence");
        Refused("use --protocol llama.cpp", "perplexity", model, "-f", text, "--kl-divergence-base", basePath, "--protocol", "full");
        Refused($"{basePath}: recorded with a context of 32 tokens, but --ctx is 64", "perplexity", model, "--kl-divergence", "--kl-divergence-base", basePath, "--ctx", "64");
        var longer = dir.File("longer.kld");
        using (var writer = new KlBaseFile.Writer(longer, 2 * TinyChatModel.Context, 3, 1, new int[2 * TinyChatModel.Context]))
        {
            for (int i = 0; i < KlBaseFile.ScoredPerChunkFor(2 * TinyChatModel.Context); i++) writer.Add(new float[3]);
            writer.Commit();
        }
        Refused($"{longer}: recorded with a context of {2 * TinyChatModel.Context} tokens, more than the model's", "perplexity", model, "--kl-divergence", "--kl-divergence-base", longer);
        var cut = dir.File("cut.kld");
        File.WriteAllBytes(cut, File.ReadAllBytes(basePath)[..^100]);
        Refused($"{cut}: ", "perplexity", model, "--kl-divergence", "--kl-divergence-base", cut);
        var other = dir.File("other.txt");
        File.WriteAllText(other, "Something else entirely. " + File.ReadAllText(text));
        Refused($"{other} is not the text {basePath} was recorded on", "perplexity", model, "--kl-divergence", "--kl-divergence-base", basePath, "-f", other);
    }
}
