using Hone.Tensors;
using Hone.Batching;
using Hone.Inference;
using Hone.Model;
using Hone.Training;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Batching;

/// <summary>A Q8_0 copy of the tiny chat model and two adapters for it (LoRA and DoRA on every linear layer), made
/// once per test run.</summary>
public static unsafe class BatchFixtures
{
    static readonly Lazy<(string Q8, string Lora, string Dora)> Built = new(() =>
    {
        var dir = TestFolders.DeletedAtExit(Directory.CreateTempSubdirectory("hone-batch-").FullName);
        string q8 = Path.Combine(dir, "tiny-q8_0.gguf");
        var r = HoneCli.Run("convert", TinyChatModel.Path, "--out", q8, "--type", "q8_0");
        if (r.ExitCode != 0) throw new InvalidOperationException(r.ToString());
        return (q8, MakeAdapter(Path.Combine(dir, "lora"), AdapterKinds.Lora, 3), MakeAdapter(Path.Combine(dir, "dora"), AdapterKinds.Dora, 4));
    });

    public static string Q8 => Built.Value.Q8;
    public static string Lora => Built.Value.Lora;
    public static string Dora => Built.Value.Dora;

    static string MakeAdapter(string path, AdapterKind kind, int seed)
    {
        using var checkpoint = Checkpoint.Open(TinyChatModel.Path);
        using var weights = LlamaWeights.Load(checkpoint);
        var rng = new Random(seed);
        var adapters = new List<LoraAdapter>();
        foreach (var m in PeftAdapter.Adaptable(weights).Where(m => m.Name.StartsWith("blk.", StringComparison.Ordinal)))
        {
            var a = kind.Create(new AdapterShape(m.Name, 4, m.Cols, m.Rows, 8));
            a.Initialize((ulong)seed, m);
            foreach (var t in a.Tensors)
                for (long i = 0; i < t.Count; i++) t.Values[i] += (float)(rng.NextDouble() - 0.5) * (t.Parameter == "lora_A" ? 0.4f : 1f);
            a.Refresh(m);
            adapters.Add(a);
        }
        PeftAdapter.Save(path, adapters, new PeftAdapterConfig(4, 8, 0, PeftTargets.Of(AdapterSettings.AllLinear), false, kind, null));
        foreach (var a in adapters) a.Dispose();
        return path;
    }
}

/// <summary>The batched engine against single-sequence generation: the same tokens, alone or in a crowd of other
/// prompts, samplers and adapters.</summary>
public class BatchEngineTests
{
    static GenerationResult Generate(string model, int[] prompt, int maxTokens, SamplerOptions sampler, string? adapter = null, string[]? stops = null,
        int context = 0, KvCacheType cacheType = KvCacheType.F32)
    {
        using var loaded = LoadedModel.Open(model, adapter, context: context, cacheType: cacheType);
        var generator = new Generator(loaded.Model, loaded.Tokenizer);
        return generator.Generate(prompt, new GenerationOptions(maxTokens, sampler, stops, StopAtEndOfTurn: false));
    }

    static int[] Prompt(BatchEngine engine, string text) => engine.Tokenizer.Encode(text, addSpecialTokens: true, parseSpecialTokens: true);

    static SequenceRequest Request(int[] prompt, int maxTokens, string? adapter = null, SamplerOptions? sampler = null) =>
        new() { Prompt = prompt, MaxTokens = maxTokens, Adapter = adapter, StopAtEndOfTurn = false, Sampler = sampler ?? SamplerOptions.Greedy };

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Greedy_output_equals_the_generator_alone_and_among_sixteen_others_with_other_adapters(bool quantized)
    {
        string model = quantized ? BatchFixtures.Q8 : TinyChatModel.Path;
        using var engine = BatchEngine.Open(model, [("a", BatchFixtures.Lora), ("b", BatchFixtures.Dora)], new EngineOptions { Parallel = 17, StepTokens = 48 });
        var prompt = Prompt(engine, "The customer asked where order 7 is");
        var expected = new Dictionary<string, int[]>
        {
            ["base"] = Generate(model, prompt, 40, SamplerOptions.Greedy).Ids,
            ["a"] = Generate(model, prompt, 40, SamplerOptions.Greedy, BatchFixtures.Lora).Ids,
            ["b"] = Generate(model, prompt, 40, SamplerOptions.Greedy, BatchFixtures.Dora).Ids,
        };
        Assert.NotEqual(expected["base"], expected["a"]);
        Assert.NotEqual(expected["base"], expected["b"]);
        foreach (var (name, ids) in expected)
        {
            var alone = await engine.Submit(Request(prompt, 40, name == "base" ? null : name)).CompleteAsync();
            Assert.True(ids.SequenceEqual(alone.Ids), $"{name}: expected {string.Join(",", ids)}, got {string.Join(",", alone.Ids)}");
        }
        string?[] adapters = [null, "a", "b"];
        foreach (var (name, ids) in expected)
        {
            var others = Enumerable.Range(0, 16).Select(i => engine.Submit(Request(
                Prompt(engine, $"Order {i} ships in {i % 5 + 1} days and " + new string('x', i * 3)), 10 + 3 * i, adapters[i % 3],
                i % 2 == 0 ? SamplerOptions.Greedy : new SamplerOptions(Temperature: 0.9f, Seed: (ulong)i)))).ToList();
            var crowded = await engine.Submit(Request(prompt, 40, name == "base" ? engine.ModelName : name)).CompleteAsync();
            foreach (var o in others) await o.CompleteAsync();
            Assert.Equal(ids, crowded.Ids);
            Assert.Equal("length", crowded.FinishReason);
            Assert.Equal(prompt.Length, crowded.Usage.PromptTokens);
            Assert.Equal(40, crowded.Usage.CompletionTokens);
        }
    }

    [Fact]
    public async Task Sampled_output_with_a_seed_equals_the_generator_and_stop_strings_cut_the_text()
    {
        string model = BatchFixtures.Q8;
        using var engine = BatchEngine.Open(model, [], new EngineOptions { Parallel = 4, StepTokens = 32 });
        var prompt = Prompt(engine, "Order 3 ships in");
        var sampler = new SamplerOptions(Temperature: 1.1f, TopK: 50, TopP: 0.9f, MinP: 0.02f, Seed: 42);
        var expected = Generate(model, prompt, 30, sampler);
        var crowd = Enumerable.Range(0, 3).Select(i => engine.Submit(Request(Prompt(engine, $"Order {i}"), 25, null, new SamplerOptions(Seed: (ulong)i)))).ToList();
        var got = await engine.Submit(Request(prompt, 30, null, sampler)).CompleteAsync();
        foreach (var c in crowd) await c.CompleteAsync();
        Assert.Equal(expected.Ids, got.Ids);
        Assert.Equal(expected.Text, got.Text);

        // A stop string taken from the middle of the greedy text ends generation before it, as the generator does.
        var greedy = Generate(model, prompt, 30, SamplerOptions.Greedy);
        string stop = greedy.Text.Length > 12 ? greedy.Text.Substring(8, 3) : greedy.Text[^2..];
        var expectedStopped = Generate(model, prompt, 30, SamplerOptions.Greedy, stops: [stop]);
        var stopped = await engine.Submit(Request(prompt, 30) with { StopStrings = [stop] }).CompleteAsync();
        Assert.Equal("stop", stopped.FinishReason);
        Assert.Equal(expectedStopped.Text, stopped.Text);
        Assert.DoesNotContain(stop, stopped.Text);
    }

    [Fact]
    public async Task Logprobs_are_the_models_and_the_top_list_is_sorted()
    {
        using var engine = BatchEngine.Open(BatchFixtures.Q8, [], new EngineOptions { Parallel = 2 });
        var result = await engine.Submit(Request(Prompt(engine, "Order 4"), 12) with { TopLogprobs = 5 }).CompleteAsync();
        Assert.Equal(12, result.Tokens.Count);
        foreach (var t in result.Tokens)
        {
            Assert.Equal(5, t.Top.Length);
            Assert.Equal(t.Id, t.Top[0].Id); // greedy: the chosen token is the most likely
            Assert.Equal(t.Logprob, t.Top[0].Logprob);
            Assert.True(t.Logprob <= 0);
            for (int i = 1; i < t.Top.Length; i++) Assert.True(t.Top[i].Logprob <= t.Top[i - 1].Logprob);
        }
        var none = await engine.Submit(Request(Prompt(engine, "Order 4"), 3)).CompleteAsync();
        Assert.All(none.Tokens, t => { Assert.True(float.IsNaN(t.Logprob)); Assert.Empty(t.Top); });
        Assert.Equal(result.Ids[..3], none.Ids);
    }

    /// <summary>A bf16 KV cache: the engine's greedy tokens equal single-sequence generation with the same cache type,
    /// alone and among others (prompt chunks, a shared prefix copied between slots), and differ from nothing but that.</summary>
    [Fact]
    public async Task A_bf16_cache_gives_the_generators_tokens_alone_and_in_a_batch()
    {
        string model = BatchFixtures.Q8;
        using var engine = BatchEngine.Open(model, [("a", BatchFixtures.Lora)], new EngineOptions { Parallel = 5, StepTokens = 24, CacheType = KvCacheType.BF16 });
        string system = "Order 1 ships in 2 days. The customer asked where order 1 is, and the answer was that it is on its way. ";
        var prompts = Enumerable.Range(0, 4).Select(i => Prompt(engine, system + $"Is order {i} late?")).ToArray();
        var expected = prompts.Select((p, i) => Generate(model, p, 12, SamplerOptions.Greedy, i == 3 ? BatchFixtures.Lora : null, cacheType: KvCacheType.BF16).Ids).ToArray();
        var handles = prompts.Select((p, i) => engine.Submit(Request(p, 12, i == 3 ? "a" : null))).ToList();
        var others = Enumerable.Range(0, 3).Select(i => engine.Submit(Request(Prompt(engine, $"Order {i} ships in {i + 2} days"), 9,
            sampler: new SamplerOptions(Temperature: 0.8f, Seed: (ulong)i)))).ToList();
        for (int i = 0; i < 4; i++) Assert.Equal(expected[i], (await handles[i].CompleteAsync()).Ids);
        foreach (var o in others) await o.CompleteAsync();
        // The caches hold bf16 values (their low 16 bits are zero once widened), unlike an f32 cache's.
        foreach (var type in new[] { KvCacheType.BF16, KvCacheType.F32 })
        {
            using var loaded = LoadedModel.Open(model, cacheType: type);
            new Generator(loaded.Model, loaded.Tokenizer).Generate(prompts[0], new GenerationOptions(2, SamplerOptions.Greedy, null, StopAtEndOfTurn: false));
            bool rounded = loaded.Model.CachedKey(0, 1).ToArray().All(x => (BitConverter.SingleToInt32Bits(x) & 0xFFFF) == 0);
            Assert.Equal(type == KvCacheType.BF16, rounded);
        }
    }

    [Fact]
    public async Task A_shared_prompt_prefix_is_reused_from_the_cache_with_the_same_output()
    {
        string model = BatchFixtures.Q8;
        using var engine = BatchEngine.Open(model, [], new EngineOptions { Parallel = 4, StepTokens = 64 });
        string system = "Order 1 ships in 2 days. The customer asked where order 1 is, and the answer was that it is on its way. ";
        var first = Prompt(engine, system + "Where is order 3?");
        var second = Prompt(engine, system + "Where is order 4?");
        var a = await engine.Submit(Request(first, 10)).CompleteAsync();
        Assert.Equal(0, a.Usage.CachedPromptTokens);
        var b = await engine.Submit(Request(second, 10)).CompleteAsync();
        int shared = first.Zip(second).TakeWhile(p => p.First == p.Second).Count();
        Assert.True(shared > 20, $"the prompts share {shared} tokens");
        Assert.Equal(shared, b.Usage.CachedPromptTokens);
        Assert.Equal(Generate(model, second, 10, SamplerOptions.Greedy).Ids, b.Ids);

        // Copied from a slot still in use: a long request holds slot 0 while the next one arrives.
        var running = engine.Submit(Request(first, 60));
        await running.Events.WaitToReadAsync();
        var c = await engine.Submit(Request(second, 10)).CompleteAsync();
        Assert.True(c.Usage.CachedPromptTokens >= shared);
        Assert.Equal(b.Ids, c.Ids);
        await running.CompleteAsync();

        // Several at once behind the same system prompt: one prefill, the others reuse it.
        var burst = Enumerable.Range(0, 4).Select(i => engine.Submit(Request(Prompt(engine, system + $"Is order {i} late?"), 5))).ToList();
        var results = new List<SequenceResult>();
        foreach (var h in burst) results.Add(await h.CompleteAsync());
        Assert.True(results.Count(r => r.Usage.CachedPromptTokens > 20) >= 3, string.Join(", ", results.Select(r => r.Usage.CachedPromptTokens)));
        for (int i = 0; i < 4; i++)
            Assert.Equal(Generate(model, Prompt(engine, system + $"Is order {i} late?"), 5, SamplerOptions.Greedy).Ids, results[i].Ids);
    }

    [Fact]
    public async Task Embeddings_are_the_normalized_mean_of_the_final_hidden_states()
    {
        using var engine = BatchEngine.Open(TinyChatModel.Path, [], new EngineOptions { Parallel = 2, StepTokens = 16 });
        var tokens = Prompt(engine, "Where is my order? It has been 5 days and it still has not come.");
        Assert.True(tokens.Length > 16); // more than one step
        var busy = engine.Submit(Request(Prompt(engine, "Order 2"), 20));
        var embedding = await engine.EmbedAsync(tokens);
        await busy.CompleteAsync();
        using var loaded = LoadedModel.Open(TinyChatModel.Path);
        var mean = new float[loaded.Model.Config.HiddenSize];
        loaded.Model.ForwardMeanHidden(tokens, mean);
        double norm = Math.Sqrt(mean.Sum(v => (double)v * v));
        Assert.Equal(mean.Length, embedding.Length);
        for (int i = 0; i < mean.Length; i++) Assert.Equal(mean[i] / norm, embedding[i], 1e-5);
        Assert.Equal(1.0, Math.Sqrt(embedding.Sum(v => (double)v * v)), 1e-5);
    }

    [Fact]
    public async Task Cancelled_and_refused_requests_leave_the_engine_serving()
    {
        using var engine = BatchEngine.Open(TinyChatModel.Path, [], new EngineOptions { Parallel = 1, QueueLimit = 2, Context = 64 });
        var prompt = Prompt(engine, "Order 5");
        using var cancel = new CancellationTokenSource();
        // The engine waits after each step until the test has done its part, so the sequence is surely in flight.
        using var gate = new ManualResetEventSlim();
        int held = 1;
        engine.StepCompleted += _ => { if (Volatile.Read(ref held) == 1) gate.Wait(); };
        var running = engine.Submit(Request(prompt, 50), cancel.Token);
        await running.Events.WaitToReadAsync();
        var queued = engine.Submit(Request(prompt, 5));
        var queued2 = engine.Submit(Request(prompt, 5));
        var full = Assert.Throws<RequestRejectedException>(() => engine.Submit(Request(prompt, 5)));
        Assert.Equal(RejectReason.QueueFull, full.Reason);
        cancel.Cancel();
        Volatile.Write(ref held, 0);
        gate.Set();
        var result = await running.CompleteAsync();
        Assert.Equal("cancelled", result.FinishReason);
        Assert.True(result.Usage.CompletionTokens < 50);
        Assert.Equal("length", (await queued.CompleteAsync()).FinishReason);
        Assert.Equal("length", (await queued2.CompleteAsync()).FinishReason);

        var tooLong = Assert.Throws<RequestRejectedException>(() => engine.Submit(Request(Enumerable.Repeat(prompt[^1], 64).ToArray(), 5)));
        Assert.Equal(RejectReason.PromptTooLong, tooLong.Reason);
        Assert.Contains("64 tokens", tooLong.Message);
        Assert.Contains("63", tooLong.Message);
        var unknown = Assert.Throws<RequestRejectedException>(() => engine.Submit(Request(prompt, 5, "../a")));
        Assert.Equal(RejectReason.UnknownModel, unknown.Reason);

        // The context bounds generation: finish_reason "length" when the cache is full (the last token sampled needs
        // no slot of its own), as the generator does.
        var bounded = await engine.Submit(Request(prompt, 1000)).CompleteAsync();
        Assert.Equal("length", bounded.FinishReason);
        Assert.Equal(64 - prompt.Length + 1, bounded.Usage.CompletionTokens);
        Assert.Equal(Generate(TinyChatModel.Path, prompt, 1000, SamplerOptions.Greedy, context: 64).Ids.Length, bounded.Usage.CompletionTokens);
    }

    [Fact]
    public async Task A_sequence_whose_adapter_overflows_fails_alone()
    {
        using var dir = new TempDirectory();
        var broken = dir.File("broken");
        Directory.CreateDirectory(broken);
        foreach (var f in Directory.GetFiles(BatchFixtures.Lora)) File.Copy(f, Path.Combine(broken, Path.GetFileName(f)));
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(broken, "adapter_config.json")))!;
        config["lora_alpha"] = 1e38;
        File.WriteAllText(Path.Combine(broken, "adapter_config.json"), config.ToJsonString());
        using var engine = BatchEngine.Open(TinyChatModel.Path, [("broken", broken)], new EngineOptions { Parallel = 2 });
        var prompt = Prompt(engine, "Order 8");
        var good = engine.Submit(Request(prompt, 20));
        var bad = engine.Submit(Request(prompt, 20, "broken"));
        var error = await Assert.ThrowsAsync<NonFiniteException>(() => bad.CompleteAsync());
        Assert.Contains("'broken'", error.Message);
        Assert.Equal(Generate(TinyChatModel.Path, prompt, 20, SamplerOptions.Greedy).Ids, (await good.CompleteAsync()).Ids);
        Assert.Equal(20, (await engine.Submit(Request(prompt, 20)).CompleteAsync()).Usage.CompletionTokens);
    }

    [Fact]
    public async Task Adapters_are_added_and_removed_while_serving()
    {
        using var engine = BatchEngine.Open(TinyChatModel.Path, [], new EngineOptions { Parallel = 2 });
        var prompt = Prompt(engine, "Order 6");
        Assert.Empty(engine.AdapterNames);
        engine.AddAdapter("returns", BatchFixtures.Lora);
        Assert.Equal(["returns"], engine.AdapterNames);
        var withAdapter = await engine.Submit(Request(prompt, 15, "returns")).CompleteAsync();
        Assert.Equal(Generate(TinyChatModel.Path, prompt, 15, SamplerOptions.Greedy, BatchFixtures.Lora).Ids, withAdapter.Ids);
        Assert.Throws<ArgumentException>(() => engine.AddAdapter("returns", BatchFixtures.Dora));
        Assert.Throws<ArgumentException>(() => engine.AddAdapter("../x", BatchFixtures.Dora));
        Assert.Throws<ArgumentException>(() => engine.AddAdapter(engine.ModelName, BatchFixtures.Dora));
        var running = engine.Submit(Request(prompt, 40, "returns"));
        await running.Events.WaitToReadAsync();
        Assert.True(engine.RemoveAdapter("returns"));
        Assert.False(engine.RemoveAdapter("returns"));
        Assert.Equal(RejectReason.UnknownModel, Assert.Throws<RequestRejectedException>(() => engine.Submit(Request(prompt, 5, "returns"))).Reason);
        var finished = await running.CompleteAsync(); // the sequence that held it finishes with it
        Assert.Equal(40, finished.Usage.CompletionTokens);
        engine.AddAdapter("returns", BatchFixtures.Dora);
        var dora = await engine.Submit(Request(prompt, 15, "returns")).CompleteAsync();
        Assert.Equal(Generate(TinyChatModel.Path, prompt, 15, SamplerOptions.Greedy, BatchFixtures.Dora).Ids, dora.Ids);
    }
}

/// <summary>Mixtures of experts in the batched engine: each sequence's tokens equal single-sequence generation's,
/// alone and among others (every row routed, grouped per expert across the step's sequences).</summary>
public class BatchEngineMixtureTests
{
    [Theory]
    [InlineData("tiny")]
    [InlineData("qwen")]
    [InlineData("tiny-q8_0")]
    public async Task Greedy_output_of_a_mixture_equals_the_generator_alone_and_in_a_crowd(string model)
    {
        using var dir = new TempDirectory();
        string path = model == "tiny" ? TinyMoeModel.Path : model == "qwen" ? TinyMoeModel.QwenPath : dir.File("moe-q8_0.gguf");
        if (model == "tiny-q8_0")
        {
            var convert = HoneCli.Run("convert", TinyMoeModel.Path, "--out", path, "--type", "q8_0");
            Assert.True(convert.ExitCode == 0, convert.ToString());
        }
        using var engine = BatchEngine.Open(path, [], new EngineOptions { Parallel = 9, StepTokens = 40 });
        int vocab = engine.Tokenizer.VocabSize;
        int[] Prompt(int i, int length) => Enumerable.Range(0, length).Select(j => (i * 31 + j * 7 + 1) % vocab).ToArray();
        var prompt = Prompt(0, 11);
        int[] expected;
        using (var loaded = LoadedModel.Open(path))
            expected = new Generator(loaded.Model, loaded.Tokenizer).Generate(prompt, new GenerationOptions(24, SamplerOptions.Greedy, null, StopAtEndOfTurn: false)).Ids;
        SequenceRequest Request(int[] p, int max) => new() { Prompt = p, MaxTokens = max, StopAtEndOfTurn = false, Sampler = SamplerOptions.Greedy };
        var alone = await engine.Submit(Request(prompt, 24)).CompleteAsync();
        Assert.Equal(expected, alone.Ids);
        var others = Enumerable.Range(1, 8).Select(i => engine.Submit(Request(Prompt(i, 5 + 3 * i), 6 + 2 * i))).ToList();
        var crowded = await engine.Submit(Request(prompt, 24)).CompleteAsync();
        foreach (var o in others) await o.CompleteAsync();
        Assert.Equal(expected, crowded.Ids);

        // Served with most experts left in the file: the same tokens.
        using var cached = BatchEngine.Open(path, [], new EngineOptions { Parallel = 9, StepTokens = 40, ExpertCache = new Hone.Model.ExpertCacheOptions("40%") });
        var cachedOthers = Enumerable.Range(1, 8).Select(i => cached.Submit(Request(Prompt(i, 5 + 3 * i), 6 + 2 * i))).ToList();
        var cachedCrowded = await cached.Submit(Request(prompt, 24)).CompleteAsync();
        foreach (var o in cachedOthers) await o.CompleteAsync();
        Assert.Equal(expected, cachedCrowded.Ids);
        var stats = cached.ExpertCacheStatistics!;
        Assert.True(stats.Misses > stats.Slots, $"{stats.Misses} misses");
    }
}

/// <summary>A LoRA mixture served by the batched engine: each layer's router routes the step's rows, each group's mixture
/// adapters read their own rows; the tokens equal single-sequence generation's, alone and among other adapters.</summary>
public class BatchEngineLoraMixtureTests
{
    static unsafe string MakeMixture(TempDirectory dir)
    {
        string mixture = dir.File("mixture");
        using var c = Checkpoint.Open(TinyChatModel.Path);
        using var w = LlamaWeights.Load(c);
        string[] experts = [Hone.Tests.Training.LoraMixtureTests.RandomExpert(dir, "a", w, 2, 4, 1), Hone.Tests.Training.LoraMixtureTests.RandomExpert(dir, "b", w, 3, 6, 2)];
        using var m = LoraMixture.Create(experts, w, topK: 1, seed: 3);
        foreach (var r in m.Routers.OfType<LoraRouter>()) for (int i = 0; i < r.Experts * r.In; i++) r.Weight[i] *= 50; // decisive routing
        m.Save(mixture, null);
        return mixture;
    }

    [Fact]
    public async Task Greedy_output_with_a_lora_mixture_equals_the_generator_alone_and_in_a_crowd()
    {
        using var dir = new TempDirectory();
        string mixture = MakeMixture(dir);
        using var engine = BatchEngine.Open(TinyChatModel.Path, [("mix", mixture), ("a", BatchFixtures.Lora)], new EngineOptions { Parallel = 9, StepTokens = 40 });
        var prompt = engine.Tokenizer.Encode("The customer asked where order 7 is", addSpecialTokens: true, parseSpecialTokens: true);
        int[] expected;
        using (var loaded = LoadedModel.Open(TinyChatModel.Path, mixture))
            expected = new Generator(loaded.Model, loaded.Tokenizer).Generate(prompt, new GenerationOptions(24, SamplerOptions.Greedy, null, StopAtEndOfTurn: false)).Ids;
        using (var plain = LoadedModel.Open(TinyChatModel.Path))
            Assert.NotEqual(new Generator(plain.Model, plain.Tokenizer).Generate(prompt, new GenerationOptions(24, SamplerOptions.Greedy, null, StopAtEndOfTurn: false)).Ids, expected);
        SequenceRequest Request(int[] p, int max, string? adapter) => new() { Prompt = p, MaxTokens = max, Adapter = adapter, StopAtEndOfTurn = false, Sampler = SamplerOptions.Greedy };
        Assert.Equal(expected, (await engine.Submit(Request(prompt, 24, "mix")).CompleteAsync()).Ids);
        string?[] adapters = [null, "a", "mix"];
        var others = Enumerable.Range(1, 8).Select(i => engine.Submit(Request(
            engine.Tokenizer.Encode($"Order {i} ships in {i % 5 + 1} days " + new string('x', i * 3), addSpecialTokens: true, parseSpecialTokens: true), 6 + 2 * i, adapters[i % 3]))).ToList();
        var crowded = await engine.Submit(Request(prompt, 24, "mix")).CompleteAsync();
        foreach (var o in others) await o.CompleteAsync();
        Assert.Equal(expected, crowded.Ids);
    }
}
