using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Model;

/// <summary>
/// Damaged copies of the real adapter fixtures (Fixtures/adapters/llama-hf-f32-lora, -dora: PEFT's layout and names,
/// written by tools/reference/make_peft_fixtures.py): target_modules is honoured as PEFT does (names and suffixes,
/// "all-linear", a full-match regular expression, exclude_modules, layers_to_transform, PEFT's default when unset),
/// tensors the config does not target and configs that target nothing are refused, and every mistyped field is named
/// with the file, what was expected and what was found.
/// </summary>
public class AdapterConfigTests
{
    static string Fixture(string kind) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "adapters", $"llama-hf-f32-{kind}");
    static string Model => ReferenceLogitsTests.FixturePath("llama-hf-f32");

    /// <summary>A copy of a fixture adapter with its config edited and, optionally, its tensors renamed (a name each;
    /// none drops the tensor, two write it twice).</summary>
    static string Damaged(TempDirectory dir, string kind, Action<JsonObject> edit, Func<string, string[]>? rename = null)
    {
        var target = Path.Combine(dir.Path, $"{kind}-damaged-{Guid.NewGuid():N}");
        Directory.CreateDirectory(target);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture(kind), "adapter_config.json")))!.AsObject();
        edit(config);
        File.WriteAllText(Path.Combine(target, "adapter_config.json"), config.ToJsonString());
        var tensors = Path.Combine(target, "adapter_model.safetensors");
        if (rename == null) File.Copy(Path.Combine(Fixture(kind), "adapter_model.safetensors"), tensors);
        else CopyTensors(Path.Combine(Fixture(kind), "adapter_model.safetensors"), tensors, rename);
        return target;
    }

    static unsafe void CopyTensors(string source, string destination, Func<string, string[]> rename)
    {
        using var st = SafetensorsFile.Open(source);
        var writer = new SafetensorsWriter();
        foreach (var t in st.Tensors)
            foreach (var name in rename(t.Name))
            {
                var bytes = new ReadOnlySpan<byte>(st.TensorData(t), (int)(t.End - t.Begin)).ToArray();
                writer.Add(new SafetensorsWriter.Tensor(name, t.Type!.Value, t.Shape, s => s.Write(bytes)));
            }
        writer.Write(destination);
    }

    static ModelFormatException LoadFails(string adapter)
    {
        using var c = Checkpoint.Open(Model);
        using var w = LlamaWeights.Load(c);
        return Assert.Throws<ModelFormatException>(() => { foreach (var a in PeftAdapter.Load(adapter, w).Values) a.Dispose(); });
    }

    static float[] Logits(string adapter, int[] tokens) => ModelLogits.Of(Model, tokens, adapter);

    static (int[] Tokens, float[] Logits) Expected(string kind)
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture(kind), "expected.json")))!;
        return (json["tokens"]!.AsArray().Select(n => (int)n!).ToArray(), json["logits"]!.AsArray().Select(n => (float)(double)n!).ToArray());
    }

    // ---- target_modules -------------------------------------------------------------------------------

    [Fact]
    public void Tensors_of_modules_the_config_does_not_target_are_refused()
    {
        using var dir = new TempDirectory();
        var adapter = Damaged(dir, "lora", c => c["target_modules"] = new JsonArray("q_proj"));
        var e = LoadFails(adapter);
        Assert.Contains("adapter_model.safetensors", e.Message);
        Assert.Matches(@"tensor 'base_model\.model\.model\.layers\.\d\.(self_attn|mlp)\.(?!q_proj)\w+\.lora_[AB]\.weight'", e.Message);
        Assert.Contains("is not targeted by", e.Message);
        Assert.Contains("adapter_config.json (target_modules [q_proj])", e.Message);
    }

    [Fact]
    public void An_unset_target_modules_is_peft_default_and_refuses_the_rest()
    {
        using var dir = new TempDirectory();
        var adapter = Damaged(dir, "lora", c => c.Remove("target_modules"));
        var e = LoadFails(adapter);
        Assert.Contains("target_modules unset, PEFT's default for llama: [q_proj, v_proj]", e.Message);
        Assert.Matches(@"tensor '[^']*\.(k_proj|o_proj|gate_proj|up_proj|down_proj)\.lora_[AB]\.weight'", e.Message);
        var asNull = Damaged(dir, "lora", c => c["target_modules"] = null);
        Assert.Contains("PEFT's default for llama", LoadFails(asNull).Message);
    }

    [Fact]
    public void A_config_that_targets_nothing_is_refused()
    {
        using var dir = new TempDirectory();
        var e = LoadFails(Damaged(dir, "lora", c => c["target_modules"] = new JsonArray()));
        Assert.Contains("adapter_config.json: target_modules: target_modules [] matches no projection of this model", e.Message);
        // A string is a regular expression the whole module name must match (as PEFT's re.fullmatch): "q_proj" alone matches nothing.
        e = LoadFails(Damaged(dir, "lora", c => c["target_modules"] = "q_proj"));
        Assert.Contains("target_modules \"q_proj\" matches no projection", e.Message);
        Assert.Contains("model.layers.0.self_attn.q_proj", e.Message); // says what the modules are called
    }

    // The LoRA fixture adapts q, v, o, gate and down; the DoRA fixture every linear projection.
    [Theory]
    [InlineData("dora", "all-linear")]
    [InlineData("dora", @".*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)")]
    [InlineData("lora", @".*\.(q_proj|v_proj|o_proj|gate_proj|down_proj)")]
    [InlineData("lora", @"model\.layers\.\d+\.(self_attn\.[qvo]_proj|mlp\.(gate|down)_proj)")]
    public void All_linear_and_regular_expressions_target_as_peft_does(string kind, string targets)
    {
        using var dir = new TempDirectory();
        var adapter = Damaged(dir, kind, c => c["target_modules"] = targets);
        var (tokens, expected) = Expected(kind);
        TestData.AssertClose(expected, Logits(adapter, tokens), 1e-4, $"{kind} {targets}");
    }

    [Fact]
    public void Exclude_modules_and_layers_to_transform_narrow_the_targets()
    {
        using var dir = new TempDirectory();
        var e = LoadFails(Damaged(dir, "lora", c => c["exclude_modules"] = new JsonArray("q_proj")));
        Assert.Matches(@"tensor '[^']*\.q_proj\.lora_[AB]\.weight'.*exclude_modules \[q_proj\]", e.Message);
        e = LoadFails(Damaged(dir, "lora", c => c["layers_to_transform"] = new JsonArray(0)));
        Assert.Matches(@"tensor '[^']*\.layers\.1\.[^']*'.*layers_to_transform \[0\]", e.Message);
        // With only layer 0's tensors in the file, the same config loads.
        var layer0 = Damaged(dir, "lora", c => c["layers_to_transform"] = 0, name => name.Contains(".layers.1.") ? [] : [name]);
        using var checkpoint = Checkpoint.Open(Model);
        using var weights = LlamaWeights.Load(checkpoint);
        var adapters = PeftAdapter.Load(layer0, weights);
        Assert.Equal(5, adapters.Count);
        Assert.All(adapters.Keys, k => Assert.StartsWith("blk.0.", k));
        foreach (var a in adapters.Values) a.Dispose();
    }

    [Fact]
    public void A_targeted_projection_without_tensors_is_refused()
    {
        using var dir = new TempDirectory();
        var adapter = Damaged(dir, "lora", _ => { }, name => name.Contains("layers.0.self_attn.v_proj") ? [] : [name]);
        var e = LoadFails(adapter);
        Assert.Contains("adapter_model.safetensors: holds no tensors for model.layers.0.self_attn.v_proj, which", e.Message);
        // all-linear names k_proj and up_proj too, which this adapter does not have.
        e = LoadFails(Damaged(dir, "lora", c => c["target_modules"] = "all-linear"));
        Assert.Matches(@"holds no tensors for model\.layers\.\d\.(self_attn\.k_proj|mlp\.up_proj), which .*\(target_modules ""all-linear""\)", e.Message);
    }

    [Fact]
    public void Tensors_of_another_kind_or_missing_ones_are_named()
    {
        using var dir = new TempDirectory();
        // DoRA tensors under a config that does not declare DoRA: the magnitude is not part of a LoRA adapter.
        var e = LoadFails(Damaged(dir, "dora", c => c["use_dora"] = false));
        Assert.Matches(@"tensor '[^']*\.lora_magnitude_vector': is not part of a lora adapter", e.Message);
        // LoRA tensors under use_dora: the magnitude is missing.
        e = LoadFails(Damaged(dir, "lora", c => c["use_dora"] = true));
        Assert.Matches(@"tensor '[^']*\.lora_magnitude_vector': is missing: a dora adapter \(use_dora: true in [^)]*adapter_config.json\) needs it", e.Message);
    }

    [Fact]
    public void A_tensor_given_with_and_without_the_peft_prefix_is_refused()
    {
        using var dir = new TempDirectory();
        const string prefix = "base_model.model.";
        var adapter = Damaged(dir, "lora", _ => { }, name => name.EndsWith("layers.1.mlp.down_proj.lora_B.weight") ? [name, name[prefix.Length..]] : [name]);
        var e = LoadFails(adapter);
        Assert.Contains("layers.1.mlp.down_proj.lora_B.weight': is given twice (with and without the base_model.model. prefix)", e.Message);
    }

    // ---- field types ----------------------------------------------------------------------------------

    [Theory]
    [InlineData("r", "\"4\"", "r: expected an integer, found the string \"4\"")]
    [InlineData("r", "4.5", "r: expected an integer, found the number 4.5")]
    [InlineData("r", "0", "r: expected a positive integer, found 0")]
    [InlineData("peft_type", "5", "peft_type: expected a string, found the number 5")]
    [InlineData("peft_type", "\"LOHA\"", "peft_type: 'LOHA' is not supported")]
    [InlineData("lora_alpha", "\"8\"", "lora_alpha: expected a finite number, found the string \"8\"")]
    [InlineData("lora_dropout", "[0.1]", "lora_dropout: expected a finite number, found a list [0.1]")]
    [InlineData("use_dora", "\"true\"", "use_dora: expected true or false, found the string \"true\"")]
    [InlineData("use_rslora", "1", "use_rslora: expected true or false, found the number 1")]
    [InlineData("fan_in_fan_out", "\"no\"", "fan_in_fan_out: expected true or false, found the string \"no\"")]
    [InlineData("bias", "false", "bias: expected a string, found false")]
    [InlineData("target_modules", "5", "target_modules: expected a list of module names, \"all-linear\" or a regular expression, found the number 5")]
    [InlineData("target_modules", "[\"q_proj\", 7]", "target_modules[1]: expected a string, found the number 7")]
    [InlineData("target_modules", "\"(q_proj\"", "target_modules: not a valid regular expression")]
    [InlineData("layers_to_transform", "[\"0\"]", "layers_to_transform[0]: expected an integer, found the string \"0\"")]
    [InlineData("rank_pattern", "[]", "rank_pattern: expected an object, found a list []")]
    [InlineData("rank_pattern", "{\"q_proj\": 8}", "rank_pattern: per-module ranks/alphas are not supported")]
    [InlineData("modules_to_save", "[\"lm_head\"]", "modules_to_save: [\"lm_head\"] is not supported")]
    [InlineData("use_qalora", "true", "use_qalora: this LoRA variant is not supported")]
    [InlineData("base_model_name_or_path", "{}", "base_model_name_or_path: expected a string, found an object {}")]
    public void Every_field_error_names_the_file_the_field_and_what_was_found(string field, string json, string message)
    {
        using var dir = new TempDirectory();
        var adapter = Damaged(dir, "lora", c => c[field] = JsonNode.Parse(json));
        var e = LoadFails(adapter);
        Assert.Equal(Path.Combine(adapter, "adapter_config.json"), e.File);
        Assert.Contains(Path.Combine(adapter, "adapter_config.json") + ": " + message, e.Message);
    }

    [Fact]
    public void A_key_given_twice_is_named()
    {
        using var dir = new TempDirectory();
        var adapter = Damaged(dir, "lora", _ => { });
        var path = Path.Combine(adapter, "adapter_config.json");
        File.WriteAllText(path, File.ReadAllText(path).Replace("\"r\":4", "\"r\":4,\"r\":\"8\""));
        Assert.Contains("adapter_config.json: r: appears twice", LoadFails(adapter).Message);
    }

    [Fact]
    public void The_cli_prints_one_line_naming_file_and_field_and_exits_non_zero()
    {
        using var dir = new TempDirectory();
        var adapter = Damaged(dir, "lora", c => c["r"] = "4");
        var r = HoneCli.Run("merge-adapter", Model, "--adapter", adapter, "--out", dir.File("merged"));
        Assert.True(r.ExitCode == 1, r.ToString());
        var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, r.ToString());
        Assert.Contains("adapter_config.json: r: expected an integer, found the string \"4\"", lines[0]);
        Assert.False(Directory.Exists(dir.File("merged")));
        r = HoneCli.Run("merge-adapter", Model, "--adapter", Damaged(dir, "lora", c => c["target_modules"] = new JsonArray("q_proj")),
            "--out", dir.File("merged"));
        Assert.True(r.ExitCode == 1, r.ToString());
        Assert.Contains("is not targeted by", r.Stderr);
    }
}
