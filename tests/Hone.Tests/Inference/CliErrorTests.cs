using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Inference;

/// <summary>
/// Broken chat templates and broken adapters through the `hone` command: one line on stderr naming the template file and
/// line (or the adapter and layer), exit 1 — never the "unexpected … please report" catch-all (exit 2), a hang, or NaN
/// printed as a result with exit 0. Each case is a damaged copy of a real file: Qwen2.5's chat template, the stories260K
/// GGUF, the PEFT fixture adapter.
/// </summary>
public class CliErrorTests
{
    const string Stories = "models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf";
    const string RealTemplate = "chat-templates/llama.cpp/Qwen-Qwen2.5-7B-Instruct.jinja";

    static string OneErrorLine(HoneCli.Result r)
    {
        Assert.True(r.ExitCode == 1, r.ToString());
        var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("error:")).ToList();
        Assert.True(lines.Count == 1, r.ToString());
        Assert.DoesNotContain("unexpected", lines[0]);
        return lines[0];
    }

    /// <summary>The line <paramref name="part"/> is on; null for the end of the template (after the one trailing newline
    /// Jinja drops).</summary>
    static int LineOf(string source, string? part) =>
        (part == null ? (source.EndsWith('\n') ? source[..^1] : source) : source[..source.IndexOf(part, StringComparison.Ordinal)]).Count(c => c == '\n') + 1;

    /// <summary>Qwen2.5's template with one damage; returns the file and the 1-based line the damage is on.</summary>
    static (string File, int Line) DamagedTemplate(TempDirectory dir, string name, Func<string, (string Source, string? Marker)> damage)
    {
        var (source, marker) = damage(File.ReadAllText(SharedData.Require(RealTemplate)));
        var file = dir.File(name + ".jinja");
        File.WriteAllText(file, source);
        return (file, LineOf(source, marker));
    }

    public static TheoryData<string> Damages() => ["unclosed-tag", "unknown-filter", "raise-exception", "runaway-loop", "huge-width", "doubling"];

    static (string Source, string? Marker) Damage(string kind, string source)
    {
        const string loop = "{%- for message in messages %}";
        switch (kind)
        {
            case "unclosed-tag":
                // The last {%- endif %} goes: the if it closes is left open at the end of the template.
                var at = source.LastIndexOf("{%- endif %}", StringComparison.Ordinal);
                return (source.Remove(at, "{%- endif %}".Length), null);
            case "unknown-filter":
                var filtered = source.Replace("message.content }}", "message.content | frobnicate }}");
                return (filtered, "| frobnicate");
            case "raise-exception":
                return (source.Replace(loop, "{{ raise_exception('this template refuses every conversation') }}" + loop), "raise_exception");
            case "huge-width":
                // Used to build a 999,999,999-character string (about 10 GB) before anything was printed.
                return (source.Replace(loop, "{{ '%0999999999d' % 5 }}" + loop), "'%0999999999d'");
            case "doubling":
                // A string doubled 40 times: 2^41 characters, out of memory long before the end.
                return (source.Replace(loop, "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}" + loop), "namespace(s='ab')");
            default:
                return (source.Replace(loop, "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}" + loop), "range(100000)");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Damages))]
    public void Chat_with_a_damaged_template_file_names_the_file_and_line(string kind)
    {
        var model = SharedData.Require(Stories);
        using var dir = new TempDirectory();
        var (file, line) = DamagedTemplate(dir, kind, s => Damage(kind, s));
        var error = OneErrorLine(HoneCli.RunWithInput("Tell me a story\n/exit\n", "chat", model, "--template", file, "-n", "4", "--temperature", "0"));
        Assert.Contains($"template '{file}', line {line}", error);
    }

    [SkippableFact]
    public void Chat_and_train_give_the_same_error_for_a_missing_or_broken_template()
    {
        var model = SharedData.Require(Stories);
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("sft.jsonl"), """{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}""" + "\n");
        var (broken, _) = DamagedTemplate(dir, "unknown-filter", s => Damage("unknown-filter", s));
        foreach (var template in new[] { dir.File("no-such-template.jinja"), broken })
        {
            var chat = OneErrorLine(HoneCli.RunWithInput("Hi\n/exit\n", "chat", model, "--template", template, "-n", "2"));
            var train = OneErrorLine(HoneCli.Run("train", model, "--data", dir.File("sft.jsonl"), "-o", dir.File("out"), "--max-steps", "1", "--template", template));
            Assert.Equal(train, chat);
            Assert.Contains(template, chat);
        }
    }

    [SkippableFact]
    public void Chat_without_a_template_names_the_plain_one_it_uses()
    {
        var r = HoneCli.RunWithInput("Hi\n/exit\n", "chat", SharedData.Require(Stories), "-n", "2", "--temperature", "0");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("template: plain instruction/response (the model has none)", r.Stderr);
    }

    /// <summary>A copy of a GGUF with one metadata string set (the tensors copied byte for byte).</summary>
    static unsafe void CopyGgufWith(string source, string destination, string key, string value)
    {
        using var gguf = GgufFile.Open(source);
        var writer = new GgufWriter { Alignment = (int)gguf.Alignment };
        foreach (var (k, v) in gguf.MetadataInOrder) if (k != "general.alignment") writer.Set(k, v);
        writer.Set(key, GgufValue.Of(value));
        foreach (var t in gguf.Tensors)
        {
            var tensor = t;
            writer.Add(new GgufWriter.Tensor(t.Name, t.Type, t.Shape, s => s.Write(new ReadOnlySpan<byte>(gguf.TensorData(tensor), checked((int)tensor.ByteLength)))));
        }
        writer.Write(destination);
    }

    [SkippableFact]
    public void Chat_with_a_broken_template_inside_the_model_names_the_model_file_key_and_line()
    {
        var model = SharedData.Require(Stories);
        using var dir = new TempDirectory();
        var (source, marker) = Damage("unknown-filter", File.ReadAllText(SharedData.Require(RealTemplate)));
        var copy = dir.File("stories-with-template.gguf");
        CopyGgufWith(model, copy, "tokenizer.chat_template", source);
        var error = OneErrorLine(HoneCli.RunWithInput("Hi\n/exit\n", "chat", copy, "-n", "2"));
        Assert.Contains($"template '{copy} tokenizer.chat_template', line {LineOf(source, marker)}", error);
        Assert.Contains("No filter named 'frobnicate'", error);
    }

    /// <summary>A Hugging Face model folder whose tokenizer_config.json carries a damaged copy of Qwen2.5's template as its
    /// chat_template (the folder is the tiny model the tests build, with its real tokenizer files).</summary>
    [SkippableTheory]
    [InlineData("unknown-filter", "No filter named 'frobnicate'")]
    [InlineData("unclosed-tag", "Unexpected end of template.")]
    [InlineData("raise-exception", "this template refuses every conversation")]
    public void Chat_with_a_broken_chat_template_in_tokenizer_config_json_names_the_file_key_and_line(string kind, string detail)
    {
        var (source, marker) = Damage(kind, File.ReadAllText(SharedData.Require(RealTemplate)));
        using var dir = new TempDirectory();
        var model = Directory.CreateDirectory(dir.File("model")).FullName;
        foreach (var f in Directory.GetFiles(TinyChatModel.Path)) File.Copy(f, Path.Combine(model, Path.GetFileName(f)));
        var configPath = Path.Combine(model, "tokenizer_config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        Assert.NotNull(config["chat_template"]); // replaces the model's own template, which works
        config["chat_template"] = source;
        File.WriteAllText(configPath, config.ToJsonString());
        var r = HoneCli.RunWithInput("Where is order 3?\n/exit\n", "chat", model, "-n", "2", "--temperature", "0");
        var error = OneErrorLine(r);
        Assert.Contains($"template '{configPath} chat_template', line {LineOf(source, marker)}", error);
        Assert.Contains(detail, error);
    }

    [SkippableFact]
    public void Eval_with_a_damaged_chat_template_names_the_file_and_line()
    {
        var model = SharedData.Require(Stories);
        using var dir = new TempDirectory();
        var (file, line) = DamagedTemplate(dir, "raise", s => Damage("raise-exception", s));
        File.WriteAllText(dir.File("g.jsonl"), new JsonObject { ["prompt"] = "Tell me a story", ["answer"] = "x" }.ToJsonString() + "\n");
        File.WriteAllText(dir.File("chat.json"), $$"""{"version": 1, "kind": "generate", "data": "g.jsonl", "chat": true, "chat_template": "{{Path.GetFileName(file)}}", "max_tokens": 4, "scorers": ["contains"]}""");
        var error = OneErrorLine(HoneCli.Run("eval", model, "--task", dir.File("chat.json"), "--out", dir.File("r.json")));
        Assert.Contains($"template '{file}', line {line}", error);
        Assert.Contains("this template refuses every conversation", error);
    }

    // ------------------------------------------------------------------------------------------------ non-finite results

    /// <summary>A PEFT LoRA adapter for stories260K's attention (random A and B), saved by Hone, then damaged: lora_alpha
    /// 1e38 (a finite float scale of 1.25e37 that overflows the activations).</summary>
    static unsafe string OverflowingStoriesAdapter(TempDirectory dir, string model)
    {
        var path = dir.File("adapter");
        using (var checkpoint = Checkpoint.Open(model))
        using (var weights = LlamaWeights.Load(checkpoint))
        {
            var random = new Random(5);
            var adapters = weights.Matrices().Where(m => m.Name.Contains(".attn_")).Select(m =>
            {
                var a = new LoraAdapter(m.Name, 8, m.Cols, m.Rows, 16);
                for (long i = 0; i < (long)a.Rank * a.In; i++) a.A[i] = (float)(random.NextDouble() - 0.5) * 0.1f;
                for (long i = 0; i < (long)a.Out * a.Rank; i++) a.B[i] = (float)(random.NextDouble() - 0.5) * 0.1f;
                return a;
            }).ToList();
            PeftAdapter.Save(path, adapters, new PeftAdapterConfig(8, 16, 0, PeftTargets.Of(["q_proj", "k_proj", "v_proj", "o_proj"]), false, AdapterKinds.Lora, null));
            foreach (var a in adapters) a.Dispose();
        }
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(path, "adapter_config.json")))!;
        config["lora_alpha"] = 1e38;
        File.WriteAllText(Path.Combine(path, "adapter_config.json"), config.ToJsonString());
        return path;
    }

    [SkippableFact]
    public void Generate_perplexity_and_eval_with_an_overflowing_adapter_fail_naming_the_adapter_and_layer()
    {
        var model = SharedData.Require(Stories);
        using var dir = new TempDirectory();
        var adapter = OverflowingStoriesAdapter(dir, model);
        var weightsFile = Path.Combine(adapter, "adapter_model.safetensors");
        File.WriteAllText(dir.File("text.txt"), string.Concat(Enumerable.Repeat("Once upon a time there was a little cat. ", 20)));
        File.WriteAllText(dir.File("g.jsonl"), new JsonObject { ["prompt"] = "Once upon a time", ["answer"] = "cat" }.ToJsonString() + "\n");
        File.WriteAllText(dir.File("g.json"), """{"version": 1, "kind": "generate", "data": "g.jsonl", "max_tokens": 4, "scorers": ["contains"]}""");
        string[][] commands =
        [
            ["generate", model, "--adapter", adapter, "--prompt", "Once upon a time", "-n", "4", "--temperature", "0"],
            ["generate", model, "--adapter", adapter, "--prompt", "Once upon a time", "-n", "4", "--temperature", "0.8", "--seed", "1"],
            ["perplexity", model, "--adapter", adapter, "--file", dir.File("text.txt"), "--ctx", "32"],
            ["eval", model, "--adapter", adapter, "--task", dir.File("g.json"), "--out", dir.File("r.json")],
        ];
        foreach (var command in commands)
        {
            var r = HoneCli.Run(command);
            var error = OneErrorLine(r);
            Assert.Contains("not finite", error);
            Assert.Contains("layer 0", error);
            Assert.Contains(weightsFile, error);
            Assert.DoesNotContain("<unk>", r.Stdout);
            Assert.DoesNotContain("NaN", r.Stdout);
        }
        Assert.False(File.Exists(dir.File("r.json")));
    }

    [Fact]
    public void Merge_adapter_with_an_overflowing_adapter_fails_and_writes_nothing()
    {
        using var dir = new TempDirectory();
        var adapter = dir.File("adapter");
        Directory.CreateDirectory(adapter);
        var fixture = Path.Combine(AppContext.BaseDirectory, "Fixtures", "adapters", "llama-hf-f32-lora");
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(fixture, "adapter_config.json")))!;
        config["lora_alpha"] = 1e38;
        File.WriteAllText(Path.Combine(adapter, "adapter_config.json"), config.ToJsonString());
        File.Copy(Path.Combine(fixture, "adapter_model.safetensors"), Path.Combine(adapter, "adapter_model.safetensors"));
        var output = dir.File("merged");
        var error = OneErrorLine(HoneCli.Run("merge-adapter", Hone.Tests.Model.ReferenceLogitsTests.FixturePath("llama-hf-f32"), "--adapter", adapter, "--out", output));
        Assert.Contains("not finite", error);
        Assert.Contains("layer 0", error);
        Assert.Contains(Path.Combine(adapter, "adapter_model.safetensors"), error);
        Assert.DoesNotContain("at most NaN", error);
        Assert.False(Directory.Exists(output));
    }
}
