using System.Text.Json.Nodes;
using Hone.Experts;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Training;
using Xunit;

namespace Hone.Tests.Model;

/// <summary>
/// Mixture-of-experts models (Mixtral, Qwen2-MoE) from Hugging Face directories: config keys, tensor names, routing,
/// and the loud refusals where Hone handles dense models only. Logits against float64 PyTorch are in
/// <see cref="ReferenceLogitsTests"/>.
/// </summary>
public unsafe class MixtureOfExpertsTests
{
    static readonly WorkerPool Pool = new(2);

    [Fact]
    public void Mixtral_config_reads_its_experts()
    {
        using var checkpoint = Checkpoint.Open(ReferenceLogitsTests.FixturePath("mixtral-hf-f32"));
        var c = checkpoint.Config;
        Assert.Equal("mixtral", c.Architecture);
        Assert.Equal((4, 2, 24, 0), (c.Experts, c.ExpertsPerToken, c.ExpertFeedForwardSize, c.SharedExpertFeedForwardSize));
        Assert.True(c.NormalizeTopK);
        Assert.Equal(0.02, c.RouterAuxLossCoef, 9);
        Assert.All(Enumerable.Range(0, c.Layers), l => Assert.True(c.IsSparseLayer(l)));
        // Per layer: router 4·32, 4 experts × 3 × 24·32; a token uses 2 of the 4 experts.
        long perExpert = 3L * 24 * 32;
        Assert.Equal(2 * 2 * perExpert, c.ParameterCount - c.ActiveParameterCount);
    }

    [Fact]
    public void Qwen2_moe_config_keeps_mlp_only_layers_dense_and_reads_the_shared_expert()
    {
        using var checkpoint = Checkpoint.Open(ReferenceLogitsTests.FixturePath("qwen2moe-hf-f32"));
        var c = checkpoint.Config;
        Assert.Equal((6, 3, 16, 40), (c.Experts, c.ExpertsPerToken, c.ExpertFeedForwardSize, c.SharedExpertFeedForwardSize));
        Assert.False(c.NormalizeTopK);
        Assert.True(c.AttentionBias);
        Assert.Equal([true, false, true], Enumerable.Range(0, c.Layers).Select(c.IsSparseLayer));
        using var weights = LlamaWeights.Load(checkpoint);
        Assert.True(weights.Layers[0].IsSparse);
        Assert.False(weights.Layers[1].IsSparse);
        Assert.Equal(48, weights.Layers[1].Gate.Rows);
        Assert.Equal(6, weights.Layers[2].ExpertGate!.Length);
        Assert.Equal("blk.2.ffn_down_exps.5.weight", weights.Layers[2].ExpertDown![5].Name);
        Assert.Equal(40, weights.Layers[2].SharedGate!.Rows);
        Assert.Equal(checkpoint.Tensors.Sum(t => t.ElementCount), c.ParameterCount);
        Assert.True(weights.Layers[2].SharedRouter != null);

        using var stepped = Checkpoint.Open(ReferenceLogitsTests.FixturePath("qwen2moe-norm-hf-f32"));
        Assert.Equal([false, true, false, true], Enumerable.Range(0, stepped.Config.Layers).Select(stepped.Config.IsSparseLayer));
        Assert.True(stepped.Config.NormalizeTopK);
    }

    [Fact]
    public void Gguf_experts_are_read_in_place_from_llama_cpp_stacked_tensors()
    {
        using var mixtral = Checkpoint.Open(ReferenceLogitsTests.FixturePath("mixtral-gguf-f32"));
        Assert.Equal(("mixtral", 4, 2, 24, true), (mixtral.Config.Architecture, mixtral.Config.Experts, mixtral.Config.ExpertsPerToken,
            mixtral.Config.ExpertFeedForwardSize, mixtral.Config.NormalizeTopK));
        Assert.Equal(RopeLayout.AdjacentPairs, mixtral.Config.RopeLayout);
        Assert.True(mixtral.TryGet("blk.1.ffn_down_exps.3.weight", out var down));
        Assert.Equal("blk.1.ffn_down_exps.weight[3]", down.SourceName);
        Assert.Equal([32L, 24], down.Shape);

        using var qwen = Checkpoint.Open(ReferenceLogitsTests.FixturePath("qwen2moe-gguf-f32"));
        var c = qwen.Config;
        Assert.Equal(("qwen2_moe", 4, 2, 16, 24, false), (c.Architecture, c.Experts, c.ExpertsPerToken, c.ExpertFeedForwardSize,
            c.SharedExpertFeedForwardSize, c.NormalizeTopK));
        Assert.Equal("qwen2moe", c.GgufArchitecture);
        using var weights = LlamaWeights.Load(qwen);
        Assert.True(weights.Layers[1].SharedRouter != null);
    }

    [Theory]
    [InlineData(5L, "shape [4, 32], expected [5, 32]")]   // more experts declared than the tensors hold
    [InlineData(3L, "shape [4, 32], expected [3, 32]")]   // fewer
    public void A_gguf_whose_expert_count_disagrees_with_its_tensors_is_refused_naming_the_tensor(long declared, string expected)
    {
        using var dir = new TempDirectory();
        var path = dir.File("m.gguf");
        Hone.Tests.Formats.DamagedFiles.RewriteGguf(ReferenceLogitsTests.FixturePath("mixtral-gguf-f32"), path,
            m => Hone.Tests.Formats.DamagedFiles.Set(m, "llama.expert_count", GgufValue.Of((uint)declared)));
        using var checkpoint = Checkpoint.Open(path);
        var e = Assert.Throws<ModelFormatException>(() => LlamaWeights.Load(checkpoint));
        Assert.Contains(expected, e.Message);
        Assert.Contains("blk.0.ffn_gate_inp.weight", e.Message); // the router, the first tensor sized by the expert count
    }

    [Fact]
    public void A_moe_gguf_without_expert_used_count_names_the_key()
    {
        using var dir = new TempDirectory();
        var path = dir.File("m.gguf");
        Hone.Tests.Formats.DamagedFiles.RewriteGguf(ReferenceLogitsTests.FixturePath("mixtral-gguf-f32"), path,
            m => Hone.Tests.Formats.DamagedFiles.Remove(m, "llama.expert_used_count"));
        var e = Assert.Throws<ModelFormatException>(() => Checkpoint.Open(path));
        Assert.Contains("llama.expert_used_count", e.Message);
    }

    [Theory]
    [InlineData("model.layers.3.block_sparse_moe.experts.7.w1.weight", "blk.3.ffn_gate_exps.7.weight", "mixtral")]
    [InlineData("model.layers.3.block_sparse_moe.experts.7.w2.weight", "blk.3.ffn_down_exps.7.weight", "mixtral")]
    [InlineData("model.layers.3.block_sparse_moe.experts.7.w3.weight", "blk.3.ffn_up_exps.7.weight", "mixtral")]
    [InlineData("model.layers.3.block_sparse_moe.gate.weight", "blk.3.ffn_gate_inp.weight", "mixtral")]
    [InlineData("model.layers.0.mlp.experts.12.up_proj.weight", "blk.0.ffn_up_exps.12.weight", "qwen2_moe")]
    [InlineData("model.layers.0.mlp.gate.weight", "blk.0.ffn_gate_inp.weight", "qwen2_moe")]
    [InlineData("model.layers.0.mlp.shared_expert.down_proj.weight", "blk.0.ffn_down_shexp.weight", "qwen2_moe")]
    [InlineData("model.layers.0.mlp.shared_expert_gate.weight", "blk.0.ffn_gate_inp_shexp.weight", "qwen2_moe")]
    [InlineData("model.layers.0.mlp.gate_proj.weight", "blk.0.ffn_gate.weight", "qwen2_moe")]
    public void Expert_tensor_names_map_both_ways_per_family(string huggingFace, string gguf, string family)
    {
        Assert.Equal(gguf, TensorNames.HuggingFaceToGguf(huggingFace));
        Assert.Equal(huggingFace, TensorNames.GgufToHuggingFace(gguf, family));
    }

    [Fact]
    public void A_layer_or_expert_index_beyond_int_is_an_unknown_name_not_a_crash()
    {
        Assert.Null(TensorNames.HuggingFaceToGguf("model.layers.99999999999.mlp.experts.0.up_proj.weight"));
        Assert.Null(TensorNames.HuggingFaceToGguf("model.layers.0.mlp.experts.99999999999.up_proj.weight"));
        Assert.False(TensorNames.TryParseGguf("blk.0.ffn_up_exps.99999999999.weight", out _));
    }

    [Fact]
    public void Routing_takes_the_top_k_of_the_softmax_and_renormalizes_only_when_asked()
    {
        // Two rows, four experts. Row 0: probabilities ∝ e^0, e^2, e^1, e^3; row 1 ties experts 0 and 3 (lower wins).
        float[] logits = [0, 2, 1, 3, 5, 0, 0, 5];
        var experts = new int[4];
        var weights = new float[4];
        ExpertRouting.Route(logits, 2, 4, 2, normalize: false, experts, weights);
        Assert.Equal([3, 1, 0, 3], experts);
        double z = Math.Exp(0) + Math.Exp(2) + Math.Exp(1) + Math.Exp(3);
        Assert.Equal(Math.Exp(3) / z, weights[0], 6);
        Assert.Equal(Math.Exp(2) / z, weights[1], 6);
        ExpertRouting.Route(logits, 2, 4, 2, normalize: true, experts, weights);
        Assert.Equal(Math.Exp(3) / (Math.Exp(3) + Math.Exp(2)), weights[0], 6);
        Assert.Equal(0.5, weights[2], 6);
        Assert.Equal(0.5, weights[3], 6);

        var starts = new int[5];
        var order = new int[4];
        ExpertRouting.GroupByExpert(experts, 2, 4, 2, starts, order);
        Assert.Equal([0, 1, 2, 2, 4], starts);    // expert 0: one pair, 1: one, 2: none, 3: two
        Assert.Equal([2, 1, 0, 3], order);        // pairs as row·k + slot, rows ascending within an expert
    }

    [Theory]
    [InlineData("mixtral-hf-f32")]
    [InlineData("qwen2moe-hf-f32")]
    public void A_prompt_gives_the_same_logits_however_it_is_cut_into_steps(string variant)
    {
        var (tokens, _) = ReferenceLogitsTests.Expected(variant);
        using var checkpoint = Checkpoint.Open(ReferenceLogitsTests.FixturePath(variant));
        using var weights = LlamaWeights.Load(checkpoint);
        int v = checkpoint.Config.VocabSize;
        var whole = new float[tokens.Length * v];
        using (var model = new LlamaModel(weights, Pool, maxContext: 64, maxBatch: 64))
            model.Forward(tokens, whole, allLogits: true, promptRows: true);
        var pieces = new float[tokens.Length * v];
        using (var model = new LlamaModel(weights, Pool, maxContext: 64, maxBatch: 7))
            model.Forward(tokens, pieces, allLogits: true, promptRows: true);
        Assert.Equal(whole, pieces);
    }

    static readonly ModelConfig RandomMixtral = new()
    {
        Architecture = "mixtral", VocabSize = 128, HiddenSize = 64, IntermediateSize = 96, Layers = 2, Heads = 4, KvHeads = 2, HeadDim = 16,
        RotaryDims = 16, MaxPositions = 128, Experts = 8, ExpertsPerToken = 2, ExpertFeedForwardSize = 96, NormalizeTopK = true,
    };

    [Fact]
    public void A_token_reads_and_multiplies_only_its_k_experts()
    {
        using var weights = LlamaWeights.CreateRandom(RandomMixtral, TensorType.Q8_0, seed: 1);
        var c = RandomMixtral;
        long expertBytes = TensorType.Q8_0.Traits().BytesFor(96L * 64); // one expert's gate, up or down: 96 × 64 either way
        long embeddingBytes = TensorType.Q8_0.Traits().BytesFor(128L * 64), rowBytes = TensorType.Q8_0.Traits().BytesFor(64);
        Assert.Equal(weights.ByteLength - 2L * 3 * (8 - 2) * expertBytes - (embeddingBytes - rowBytes), weights.ActiveByteLength);
        long attention = 2L * 64 * 64 + 2L * 64 * 32;
        Assert.Equal(attention + 8L * 64 + 2L * 3 * 64 * 96, c.LayerMatrixParameters(0));
        Assert.Equal(attention + 8L * 64 + 8L * 3 * 64 * 96, c.LayerMatrixParameters(0, active: false));
        foreach (var name in new[] { "mixtral-small", "qwen2moe-small" })
        {
            var shape = ModelShapes.Get(name);
            Assert.True(shape.Validate(name).IsMixtureOfExperts);
            Assert.InRange(shape.ParameterCount, 130_000_000, 400_000_000);
            Assert.InRange(shape.ActiveParameterCount, 60_000_000, 70_000_000); // a third of the whole model is the two embedding tables
        }
    }

    [Theory]
    [InlineData(TensorType.Q8_0, 0.02)]
    [InlineData(TensorType.BF16, 0.02)]
    public void Quantized_experts_stay_close_to_the_float_model_in_prompt_and_decode(TensorType type, double tolerance)
    {
        // The same random weights in f32 and in the quantized type: prompt rows (expert GEMMs over grouped rows) and
        // decode steps (matrix-vector products over the k chosen experts only).
        using var exact = LlamaWeights.CreateRandom(RandomMixtral, TensorType.F32, seed: 3, std: 0.1f, embeddingStd: 1f);
        using var quantized = LlamaWeights.CreateRandom(RandomMixtral, type, seed: 3, std: 0.1f, embeddingStd: 1f);
        Assert.Equal(type, quantized.Layers[1].ExpertDown![7].Type);
        int[] tokens = Enumerable.Range(0, 24).Select(i => (i * 37 + 5) % 128).ToArray();
        int v = RandomMixtral.VocabSize;
        var reference = new float[tokens.Length * v];
        using (var model = new LlamaModel(exact, Pool, maxContext: 64)) model.Forward(tokens, reference, allLogits: true, promptRows: true);
        var prompt = new float[tokens.Length * v];
        using (var model = new LlamaModel(quantized, Pool, maxContext: 64)) model.Forward(tokens, prompt, allLogits: true, promptRows: true);
        var decode = new float[tokens.Length * v];
        using (var model = new LlamaModel(quantized, Pool, maxContext: 64))
            for (int t = 0; t < tokens.Length; t++) model.Forward([tokens[t]], decode.AsSpan(t * v, v));
        double scale = reference.Max(Math.Abs);
        double Worst(float[] a) => Enumerable.Range(0, a.Length).Max(i => Math.Abs(a[i] - reference[i])) / scale;
        Assert.True(Worst(prompt) < tolerance, $"{type} prompt logits differ from f32 by {Worst(prompt):G3} of the largest logit");
        Assert.True(Worst(decode) < tolerance, $"{type} decode logits differ from f32 by {Worst(decode):G3} of the largest logit");
    }

    [Fact]
    public void Missing_expert_tensor_is_named_as_the_checkpoint_names_it()
    {
        using var dir = new TempDirectory();
        CopyFixtureWithout("mixtral-hf-f32", dir.Path, "model.layers.1.block_sparse_moe.experts.2.w3.weight");
        using var checkpoint = Checkpoint.Open(dir.Path);
        var e = Assert.Throws<ModelFormatException>(() => LlamaWeights.Load(checkpoint));
        Assert.Contains("model.layers.1.block_sparse_moe.experts.2.w3.weight", e.Message);
        Assert.Contains("missing tensor", e.Message);
    }

    [Theory]
    [InlineData("num_local_experts", null, "num_local_experts")]
    [InlineData("num_experts_per_tok", 5.0, "4 experts")]
    [InlineData("num_local_experts", 1.0, "at least 2 experts")]
    [InlineData("router_jitter_noise", 0.1, "router_jitter_noise")]
    public void Bad_mixtral_configs_name_the_key(string key, double? value, string expected)
    {
        using var dir = new TempDirectory();
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(ReferenceLogitsTests.FixturePath("mixtral-hf-f32"), "config.json")))!;
        if (value == null) config.Remove(key); else config[key] = value == Math.Floor(value.Value) ? (int)value.Value : value.Value;
        var path = dir.File("config.json");
        File.WriteAllText(path, config.ToJsonString());
        var e = Assert.Throws<ModelFormatException>(() => ModelConfig.FromHuggingFaceJson(path));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Mlp_only_layers_outside_the_model_are_refused()
    {
        using var dir = new TempDirectory();
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(ReferenceLogitsTests.FixturePath("qwen2moe-hf-f32"), "config.json")))!;
        config["mlp_only_layers"] = new JsonArray(1, 7);
        var path = dir.File("config.json");
        File.WriteAllText(path, config.ToJsonString());
        var e = Assert.Throws<ModelFormatException>(() => ModelConfig.FromHuggingFaceJson(path));
        Assert.Contains("mlp_only_layers", e.Message);
        Assert.Contains("layer 7", e.Message);
    }

    [Fact]
    public void Config_json_round_trips_the_expert_keys()
    {
        using var checkpoint = Checkpoint.Open(ReferenceLogitsTests.FixturePath("qwen2moe-hf-f32"));
        using var dir = new TempDirectory();
        var path = dir.File("config.json");
        File.WriteAllText(path, checkpoint.Config.ToHuggingFaceJson().ToJsonString());
        var back = ModelConfig.FromHuggingFaceJson(path);
        Assert.Equal(checkpoint.Config with { DenseLayers = back.DenseLayers }, back);
        Assert.Equal(checkpoint.Config.DenseLayers, back.DenseLayers);
        Assert.Equal("Qwen2MoeForCausalLM", (string)checkpoint.Config.ToHuggingFaceJson()["architectures"]![0]!);
    }

    [Theory]
    [InlineData("mixtral-hf-f32", "out.gguf", null)]
    [InlineData("mixtral-gguf-f32", "out-hf", null)]
    [InlineData("qwen2moe-gguf-f32", "out-hf", null)]
    [InlineData("mixtral-hf-bf16", "out.gguf", "bf16")]
    [InlineData("qwen3moe-gguf-f32", "out-hf", null)]
    [InlineData("olmoe-hf-f32", "out.gguf", null)]
    [InlineData("olmoe-gguf-f32", "out-hf", null)]
    public void Conversion_keeps_the_logits_and_stacks_experts_for_gguf(string variant, string output, string? type)
    {
        using var dir = new TempDirectory();
        string target = dir.File(output);
        var report = Hone.Transforms.ModelConverter.Convert(new Hone.Transforms.ConvertOptions(ReferenceLogitsTests.FixturePath(variant), target,
            type == null ? null : TensorTypes.Parse(type)));
        var (tokens, expected) = ReferenceLogitsTests.Expected(variant);
        using var checkpoint = Checkpoint.Open(target);
        using var weights = LlamaWeights.Load(checkpoint);
        using var model = new LlamaModel(weights, Pool, maxContext: 64);
        var logits = new float[expected.Length];
        model.Forward(tokens, logits, allLogits: true);
        if (type == null) TestData.AssertClose(expected, logits, 1e-4, $"{variant} → {output}");
        else
        {
            double scale = expected.Max(Math.Abs), worst = Enumerable.Range(0, logits.Length).Max(i => Math.Abs(logits[i] - expected[i]));
            Assert.True(worst / scale < 0.02, $"{variant} as {type}: logits differ from the float64 reference by {worst:G3}, {worst / scale:P1} of the largest");
        }
        if (output.EndsWith(".gguf"))
        {
            using var gguf = GgufFile.Open(target);
            var stacked = gguf.Tensors.Single(t => t.Name == "blk.1.ffn_down_exps.weight");
            Assert.Equal(3, stacked.Shape.Length);
            Assert.Equal(checkpoint.Config.Experts, (int)stacked.Shape[0]);
            Assert.Equal((long)checkpoint.Config.Experts, gguf.GetInteger($"{checkpoint.Config.GgufArchitecture}.expert_count"));
        }
    }

    [Fact]
    public void A_quantized_moe_gguf_holds_exactly_the_weights_hone_quantizes_in_memory()
    {
        using var dir = new TempDirectory();
        using var exact = LlamaWeights.CreateRandom(RandomMixtral, TensorType.F32, seed: 5, std: 0.1f, embeddingStd: 1f);
        using var quantized = LlamaWeights.CreateRandom(RandomMixtral, TensorType.Q8_0, seed: 5, std: 0.1f, embeddingStd: 1f);
        Hone.Transforms.ModelConverter.Write(exact, null, dir.File("m.gguf"), TensorType.Q8_0, []);
        using var checkpoint = Checkpoint.Open(dir.File("m.gguf"));
        using var loaded = LlamaWeights.Load(checkpoint);
        int[] tokens = Enumerable.Range(0, 20).Select(i => (i * 53 + 11) % 128).ToArray();
        var expected = new float[tokens.Length * 128];
        var actual = new float[tokens.Length * 128];
        using (var model = new LlamaModel(quantized, Pool, maxContext: 64)) model.Forward(tokens, expected, allLogits: true);
        using (var model = new LlamaModel(loaded, Pool, maxContext: 64)) model.Forward(tokens, actual, allLogits: true);
        Assert.Equal(expected, actual);
        Assert.Equal(TensorType.Q8_0, loaded.Layers[1].ExpertGate![5].Type);
    }

    [Fact]
    public void Routing_statistics_agree_with_the_load_balancing_loss()
    {
        var (rows, experts, k, logits, _) = (14, 4, 2, Enumerable.Range(0, 56).Select(i => (float)Math.Sin(i * 1.7) * 2).ToArray(), 0);
        var chosen = new int[rows * k];
        ExpertRouting.Route(logits, rows, experts, k, false, chosen, new float[rows * k]);
        var statistics = new RoutingStatistics(3, experts, k);
        statistics.Add(1, logits, rows, chosen);
        var layer = Assert.Single(statistics.Layers());
        Assert.Equal(1, layer.Layer);
        Assert.Null(statistics.Layer(0));
        Assert.Equal(1.0, layer.Load.Sum(), 12);
        Assert.Equal(1.0, layer.MeanProbability.Sum(), 12);
        Assert.Equal(RouterLosses.LoadBalancing(logits, rows, experts, k), layer.BalanceLoss, 9);
        Assert.InRange(layer.Entropy, 0, Math.Log(experts));
        // A router that cannot tell experts apart: maximal entropy, and the balanced loss k.
        var flat = new RoutingStatistics(1, 4, 2);
        flat.Add(0, new float[8], 2, [0, 1, 2, 3]);
        Assert.Equal(Math.Log(4), flat.Layer(0)!.Entropy, 12);
        Assert.Equal(2.0, flat.Layer(0)!.BalanceLoss, 12);
    }

    [Fact]
    public void The_cli_generates_scores_and_inspects_routing_of_a_moe_model()
    {
        using var dir = new TempDirectory();
        string text = dir.File("text.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Range(0, 30).Select(i => $"Order {i} ships in {i % 4 + 2} days. ")));

        var generate = HoneCli.Run("generate", TinyMoeModel.Path, "-p", "Order 3", "-n", "8", "--temperature", "0", "--json");
        Assert.True(generate.ExitCode == 0, generate.ToString());
        Assert.Equal(8, JsonNode.Parse(generate.Stdout)!["ids"]!.AsArray().Count);

        var perplexity = HoneCli.Run("perplexity", TinyMoeModel.Path, "-f", text, "--ctx", "64", "--json");
        Assert.True(perplexity.ExitCode == 0, perplexity.ToString());
        Assert.True((double)JsonNode.Parse(perplexity.Stdout)!["ppl"]! > 1);

        var routing = HoneCli.Run("inspect", TinyMoeModel.Path, "--routing", "--data", text, "--json"); // --ctx 512 clamped to 128
        Assert.True(routing.ExitCode == 0, routing.ToString());
        var layers = JsonNode.Parse(routing.Stdout)!["layers"]!.AsArray();
        Assert.Equal(2, layers.Count);
        foreach (var l in layers)
        {
            Assert.Equal(1.0, l!["load"]!.AsArray().Sum(x => (double)x!), 9);
            Assert.InRange((double)l["balance_loss"]!, 2.0 - 1e-9, 8.0);
        }
        var inspect = HoneCli.Run("inspect", TinyMoeModel.Path);
        Assert.Contains("experts      4 per layer, 2 per token", inspect.Stdout);

        var dense = HoneCli.Run("inspect", TinyChatModel.Path, "--routing", "--data", text);
        Assert.NotEqual(0, dense.ExitCode);
        Assert.Contains("dense model", dense.Stderr);
    }

    [Theory]
    [InlineData("qwen2moe-hf-f32", "dense layers")]
    [InlineData("qwen2moe-norm-hf-f32", "norm_topk_prob")]
    [InlineData("qwen3moe-hf-f32", "dense layers")]
    public void A_qwen2_moe_that_llama_cpp_cannot_express_is_not_written_as_gguf(string variant, string expected)
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<NotSupportedException>(() => Hone.Transforms.ModelConverter.Convert(
            new Hone.Transforms.ConvertOptions(ReferenceLogitsTests.FixturePath(variant), dir.File("m.gguf"))));
        Assert.Contains(expected, e.Message);
        Assert.Empty(Directory.GetFiles(dir.Path));
        // A Hugging Face directory holds it.
        Hone.Transforms.ModelConverter.Convert(new Hone.Transforms.ConvertOptions(ReferenceLogitsTests.FixturePath(variant), dir.File("hf")));
        using var back = Checkpoint.Open(dir.File("hf"));
        Assert.Equal(Checkpoint.Open(ReferenceLogitsTests.FixturePath(variant)).Config.DenseLayers, back.Config.DenseLayers);
    }

    static void CopyFixtureWithout(string variant, string target, string dropped)
    {
        string source = ReferenceLogitsTests.FixturePath(variant);
        File.Copy(Path.Combine(source, "config.json"), Path.Combine(target, "config.json"));
        using var file = SafetensorsFile.Open(Path.Combine(source, "model.safetensors"));
        var header = new JsonObject();
        var blobs = new List<byte[]>();
        long offset = 0;
        foreach (var t in file.Tensors)
        {
            if (t.Name == dropped) continue;
            var bytes = new ReadOnlySpan<byte>(file.TensorData(t), checked((int)(t.End - t.Begin))).ToArray();
            header[t.Name] = new JsonObject
            {
                ["dtype"] = t.DType, ["shape"] = new JsonArray(t.Shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes.Length),
            };
            blobs.Add(bytes);
            offset += bytes.Length;
        }
        var headerBytes = System.Text.Encoding.UTF8.GetBytes(header.ToJsonString());
        using var output = File.Create(Path.Combine(target, "model.safetensors"));
        output.Write(BitConverter.GetBytes((ulong)headerBytes.Length));
        output.Write(headerBytes);
        foreach (var b in blobs) output.Write(b);
    }
}

public class QkNormFamilyTests
{
    [Fact]
    public void An_olmoe_with_grouped_query_attention_is_not_written_as_gguf()
    {
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath("olmoe-hf-f32"));
        var gqa = c.Config with { KvHeads = 2 };
        var e = Assert.Throws<NotSupportedException>(gqa.RequireGgufExpressible);
        Assert.Contains("grouped-query attention", e.Message);
        c.Config.RequireGgufExpressible();
    }
}
