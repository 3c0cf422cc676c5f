using System.Text.Json.Nodes;
using Hone.Experts;
using Hone.Formats;
using Hone.Inference;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Experts;

/// <summary>
/// The expert cache: a mixture of experts run with its experts left in the file and a budget's worth resident gives
/// exactly the logits of the fully loaded model, for every type and precision, under both policies and budgets that
/// force evictions; the counts add up; bad budgets and damaged experts are refused with the reason.
/// </summary>
public unsafe class ExpertCacheTests
{
    static readonly WorkerPool Pool = new(2);

    // 2 layers × 8 experts, top 2: one expert is 3 matrices of 96 × 64.
    static readonly ModelConfig Mixtral = new()
    {
        Architecture = "mixtral", VocabSize = 128, HiddenSize = 64, IntermediateSize = 96, Layers = 2, Heads = 4, KvHeads = 2, HeadDim = 16,
        RotaryDims = 16, MaxPositions = 128, Experts = 8, ExpertsPerToken = 2, ExpertFeedForwardSize = 96, NormalizeTopK = true,
    };

    static readonly int[] Prompt = Enumerable.Range(0, 24).Select(i => (i * 53 + 11) % 128).ToArray();

    /// <summary>All logits of the prompt (one batch), then of 12 decode steps (one token each).</summary>
    static float[] Run(LlamaWeights weights, ComputePrecision precision, ExpertCache? cache)
    {
        using var model = new LlamaModel(weights, Pool, maxContext: 64) { Precision = precision, ExpertCache = cache };
        var logits = new float[(Prompt.Length + 12) * 128];
        fixed (float* l = logits)
        {
            model.Forward(Prompt, new Span<float>(l, Prompt.Length * 128), allLogits: true);
            for (int i = 0; i < 12; i++)
            {
                int token = (i * 37 + 5) % 128;
                model.Forward(new ReadOnlySpan<int>(in token), new Span<float>(l + (Prompt.Length + i) * 128, 128));
            }
        }
        return logits;
    }

    public static TheoryData<string, string, string> Cases()
    {
        var data = new TheoryData<string, string, string>();
        foreach (var type in new[] { "f32", "q8_0", "bf16", "q4_k" })
            foreach (var precision in new[] { "fast", "exact" })
                foreach (var file in new[] { "m.gguf", "hf" })
                    if (file == "m.gguf" || type is "f32" or "bf16") // Hugging Face directories hold f32 and bf16
                        data.Add(type, precision, file);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Cached_experts_give_exactly_the_logits_of_the_resident_model(string typeName, string precisionName, string file)
    {
        var type = TensorTypes.Parse(typeName);
        var precision = precisionName == "fast" ? ComputePrecision.Fast : ComputePrecision.Exact;
        using var dir = new TempDirectory();
        using (var random = LlamaWeights.CreateRandom(Mixtral, TensorType.F32, seed: 7, std: 0.1f, embeddingStd: 1f))
            Hone.Transforms.ModelConverter.Write(random, null, dir.File(file), type, []);
        using var checkpoint = Checkpoint.Open(dir.File(file));
        using var resident = LlamaWeights.Load(checkpoint);
        var expected = Run(resident, precision, null);

        using var mapped = LlamaWeights.Load(checkpoint, new WeightLoadOptions(ExpertsInPlace: true));
        Assert.Equal(resident.ByteLength, mapped.ByteLength + mapped.MappedExpertBytes);
        Assert.Equal(resident.ActiveByteLength, mapped.ActiveByteLength);
        Assert.Equal(expected, Run(mapped, precision, null)); // computing on the mapping itself

        long slot = ExpertCache.ExpertBytes(mapped, precision);
        foreach (var policy in new[] { ExpertCachePolicy.Frequency, ExpertCachePolicy.Recency })
            foreach (int slots in new[] { 1, 2, 3, 16 })
            {
                using var cache = new ExpertCache(mapped, slots * slot + slot / 2, Pool, precision, policy);
                Assert.Equal(slots, cache.Slots);
                Assert.Equal(expected, Run(mapped, precision, cache));
                var s = cache.Statistics;
                // Every (token batch, layer) fetches each expert with rows once: the prompt's batch and 12 single tokens.
                Assert.InRange(s.Fetches, 2 * (2 + 12 * 2), 2 * (8 + 12 * 2));
                Assert.Equal(s.Misses * 3L * mapped.Layers[0].ExpertGate![0].ByteLength, s.BytesRead);
                if (slots == 16) Assert.Equal(Distinct(mapped, precision), s.Misses); // all fit: each expert read once
                else Assert.True(s.Misses > Distinct(mapped, precision));
            }
    }

    /// <summary>The distinct experts the run uses (a cache that holds all of them misses exactly these).</summary>
    static int Distinct(LlamaWeights weights, ComputePrecision precision)
    {
        using var model = new LlamaModel(weights, Pool, maxContext: 64) { Precision = precision, Routing = new RoutingStatistics(2, 8, 2) };
        var logits = new float[Prompt.Length * 128];
        model.Forward(Prompt, logits, allLogits: true);
        for (int i = 0; i < 12; i++)
        {
            int token = (i * 37 + 5) % 128;
            model.Forward(new ReadOnlySpan<int>(in token), logits.AsSpan(0, 128));
        }
        return model.Routing!.Layers().Sum(l => l.Load.Count(x => x > 0));
    }

    [Fact]
    public void Frequency_keeps_the_hot_experts_where_recency_lets_a_sweep_flush_them()
    {
        // One layer's eight experts fetched in a repeating sweep with four slots: recency evicts each expert just
        // before it is needed again (no hits); frequency keeps three and passes the rest through the fourth slot.
        using var dir = new TempDirectory();
        using (var random = LlamaWeights.CreateRandom(Mixtral, TensorType.F32, seed: 7))
            Hone.Transforms.ModelConverter.Write(random, null, dir.File("m.gguf"), TensorType.F32, []);
        using var checkpoint = Checkpoint.Open(dir.File("m.gguf"));
        using var mapped = LlamaWeights.Load(checkpoint, new WeightLoadOptions(ExpertsInPlace: true));
        long slot = ExpertCache.ExpertBytes(mapped, ComputePrecision.Fast);
        using var recency = new ExpertCache(mapped, 4 * slot, Pool, ComputePrecision.Fast, ExpertCachePolicy.Recency);
        using var frequency = new ExpertCache(mapped, 4 * slot, Pool, ComputePrecision.Fast, ExpertCachePolicy.Frequency);
        for (int sweep = 0; sweep < 10; sweep++)
            for (int e = 0; e < 8; e++)
            {
                var fetched = recency.Fetch(0, e);
                Assert.Equal(mapped.Layers[0].ExpertGate![e].Name, fetched.Gate.Name);
                frequency.Fetch(0, e);
            }
        Assert.Equal(0, recency.Statistics.Hits);
        Assert.Equal(9 * 3, frequency.Statistics.Hits); // three resident after the first sweep, hit in each later one

        // A hot expert fetched between the sweeps' experts stays resident under frequency and under recency.
        using var hot = new ExpertCache(mapped, 4 * slot, Pool, ComputePrecision.Fast, ExpertCachePolicy.Frequency);
        for (int i = 0; i < 40; i++) { hot.Fetch(1, 5); hot.Fetch(1, i % 8); }
        hot.ResetStatistics();
        for (int i = 0; i < 10; i++) hot.Fetch(1, 5);
        Assert.Equal(10, hot.Statistics.Hits);
    }

    [Fact]
    public void Budgets_and_loads_that_cannot_work_are_refused_with_the_reason()
    {
        using var dir = new TempDirectory();
        using (var random = LlamaWeights.CreateRandom(Mixtral, TensorType.F32, seed: 7))
            Hone.Transforms.ModelConverter.Write(random, null, dir.File("m.gguf"), TensorType.Q8_0, []);
        using var checkpoint = Checkpoint.Open(dir.File("m.gguf"));
        using var mapped = LlamaWeights.Load(checkpoint, new WeightLoadOptions(ExpertsInPlace: true));
        long slot = ExpertCache.ExpertBytes(mapped, ComputePrecision.Exact);
        Assert.Contains("holds no expert", Assert.Throws<ArgumentException>(() => new ExpertCache(mapped, slot - 1, Pool, ComputePrecision.Exact)).Message);

        var converted = Assert.Throws<ArgumentException>(() => LlamaWeights.Load(checkpoint, new WeightLoadOptions(TensorType.F32, ExpertsInPlace: true)));
        Assert.Contains("convert the model first", converted.Message);

        using var resident = LlamaWeights.Load(checkpoint);
        Assert.Contains("left in the checkpoint's mapping", Assert.Throws<ArgumentException>(() => new ExpertCache(resident, 1L << 30, Pool, ComputePrecision.Fast)).Message);

        using var dense = LlamaWeights.CreateRandom(ModelShapes.Get("tiny"), TensorType.F32, seed: 1);
        Assert.Contains("dense", Assert.Throws<ArgumentException>(() => new ExpertCache(dense, 1L << 30, Pool, ComputePrecision.Fast)).Message);

        long all = ExpertCache.AllExpertsBytes(mapped, ComputePrecision.Exact);
        Assert.Equal(16 * slot, all);
        Assert.Equal(all / 2, ExpertCache.ParseBudget("50%", all));
        Assert.Equal(512L << 20, ExpertCache.ParseBudget("512M", all));
        Assert.Equal(3L << 29, ExpertCache.ParseBudget("1.5GiB", all));
        Assert.Equal(2048, ExpertCache.ParseBudget("2kb", all));
        Assert.Equal(4096, ExpertCache.ParseBudget("4096", all));
        foreach (var bad in new[] { "", "lots", "0", "-1G", "150%", "0%", "NaN", "1e30G" })
            Assert.StartsWith("--expert-cache:", Assert.Throws<ArgumentException>(() => ExpertCache.ParseBudget(bad, all)).Message);
    }

    [Fact]
    public void A_damaged_expert_in_the_file_is_named_when_first_fetched()
    {
        using var dir = new TempDirectory();
        string path = dir.File("m.gguf");
        using (var random = LlamaWeights.CreateRandom(Mixtral, TensorType.F32, seed: 7))
            Hone.Transforms.ModelConverter.Write(random, null, path, TensorType.F32, []);
        long at;
        using (var gguf = GgufFile.Open(path))
        {
            var up = gguf.Tensors.Single(t => t.Name == "blk.1.ffn_up_exps.weight");
            at = gguf.DataOffset + up.Offset;
        }
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
        {
            long expertBytes = 96L * 64 * 4;
            for (int e = 0; e < 8; e++) // a NaN in the middle of every expert's up projection in layer 1
            {
                stream.Position = at + e * expertBytes + (10 * 64 + 3) * 4;
                stream.Write(BitConverter.GetBytes(float.NaN));
            }
        }
        using var checkpoint = Checkpoint.Open(path);
        Assert.Throws<ModelFormatException>(() => LlamaWeights.Load(checkpoint)); // loaded whole, it is refused up front
        using var mapped = LlamaWeights.Load(checkpoint, new WeightLoadOptions(ExpertsInPlace: true));
        using var cache = new ExpertCache(mapped, ExpertCache.AllExpertsBytes(mapped, ComputePrecision.Fast), Pool, ComputePrecision.Fast);
        var error = Assert.Throws<ModelFormatException>(() => Run(mapped, ComputePrecision.Fast, cache));
        Assert.Contains(path, error.Message);
        Assert.Matches(@"tensor 'blk\.1\.ffn_up_exps\.\d\.weight'.*NaN at \[10, 3\]|NaN at \[10, 3\].*blk\.1\.ffn_up_exps\.\d\.weight", error.Message);
    }

    [Fact]
    public void The_cli_scores_the_same_with_a_cache_and_reports_its_hit_rate()
    {
        using var dir = new TempDirectory();
        string text = dir.File("text.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Range(0, 30).Select(i => $"Order {i} ships in {i % 4 + 2} days. ")));
        var plain = HoneCli.Run("perplexity", TinyMoeModel.Path, "-f", text, "--ctx", "32", "--json");
        Assert.True(plain.ExitCode == 0, plain.ToString());
        Assert.Null(JsonNode.Parse(plain.Stdout)!["expert_cache"]);
        var cached = HoneCli.Run("perplexity", TinyMoeModel.Path, "-f", text, "--ctx", "32", "--json", "--expert-cache", "50%", "--expert-cache-policy", "recency");
        Assert.True(cached.ExitCode == 0, cached.ToString());
        Assert.Equal((double)JsonNode.Parse(plain.Stdout)!["ppl"]!, (double)JsonNode.Parse(cached.Stdout)!["ppl"]!);
        var stats = JsonNode.Parse(cached.Stdout)!["expert_cache"]!;
        Assert.Equal(4, (int)stats["resident_experts"]!); // half of 2 layers × 4 experts
        Assert.Equal(8, (int)stats["experts"]!);
        Assert.True((long)stats["misses"]! >= 8);
        Assert.Equal((double)(long)stats["hits"]! / ((long)stats["hits"]! + (long)stats["misses"]!), (double)stats["hit_rate"]!, 12);

        var generate = HoneCli.Run("generate", TinyMoeModel.Path, "-p", "Order 3", "-n", "8", "--temperature", "0", "--expert-cache", "3%");
        Assert.NotEqual(0, generate.ExitCode);
        Assert.Contains("holds no expert", generate.Stderr);
        var policyAlone = HoneCli.Run("generate", TinyMoeModel.Path, "-p", "Order 3", "-n", "8", "--expert-cache-policy", "recency");
        Assert.Contains("--expert-cache-policy goes with --expert-cache", policyAlone.Stderr);
        var dense = HoneCli.Run("generate", TinyChatModel.Path, "-p", "Hi", "-n", "2", "--expert-cache", "1G");
        Assert.Contains("applies to mixtures of experts", dense.Stderr);
        var bench = HoneCli.Run("bench", "-m", TinyMoeModel.Path, "-p", "8", "-n", "8", "-r", "1", "--expert-cache", "75%", "--json");
        Assert.True(bench.ExitCode == 0, bench.ToString());
        var benchCache = JsonNode.Parse(bench.Stdout)!["expert_cache"]!;
        Assert.Equal(6, (int)benchCache["resident_experts"]!);
        Assert.InRange((double)benchCache["tg_hit_rate"]!, 0, 1);
    }
}
