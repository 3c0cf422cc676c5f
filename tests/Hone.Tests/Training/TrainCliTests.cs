using System.Buffers.Binary;
using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Training;

/// <summary>`hone train` end to end on the real stories260K model, and what its adapter does elsewhere:
/// perplexity with --adapter equals perplexity of weights merged by an independent implementation (W + (α/r)·B·A
/// computed here from the raw PEFT tensors), and merge-adapter agrees too.</summary>
public partial class TrainCliTests
{
    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "kill")]
    private static partial int Kill(int pid, int signal);

    const string Model = "models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf";

    static string WriteSftData(TempDirectory dir)
    {
        var colors = new[] { "red", "blue", "green", "yellow", "pink" };
        var things = new[] { "ball", "car", "cat", "hat", "box", "tree" };
        var lines = new List<string>();
        foreach (var c in colors)
            foreach (var t in things)
                lines.Add(new JsonObject { ["instruction"] = $"What color is the {t}?", ["output"] = $"The {t} is {c}." }.ToJsonString());
        var path = dir.File("sft.jsonl");
        File.WriteAllLines(path, lines);
        return path;
    }

    /// <summary>SIGTERM (a job scheduler's stop, `kill`) ends a run as Ctrl-C does: the step finishes, a checkpoint is
    /// written, the exit code is 130 and the resume command is printed.</summary>
    [SkippableFact]
    public void Sigterm_stops_training_with_a_checkpoint()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "sends a POSIX signal");
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        var data = WriteSftData(dir);
        var outDir = Path.Combine(dir.Path, "run");
        using var child = HoneCli.Start(null, "train", model, "--data", data, "--out", outDir, "--max-steps", "1000000", "--seq-len", "48",
            "--save-every", "0", "--eval-every", "0", "--threads", "2");
        Assert.True(HangGuard.WaitUntil(() => child.Stderr.Contains(" training of ") || child.HasExited), child.Stderr);
        Assert.False(child.HasExited, child.Stderr);
        Assert.Equal(0, Kill(child.Id, 15));
        var r = child.WaitForExit();
        Assert.True(r.ExitCode == 130, r.ToString());
        Assert.Contains("interrupted: ", r.Stdout);
        Assert.Contains("--resume", r.Stdout);
        Assert.NotEmpty(Directory.GetDirectories(Path.Combine(outDir, "checkpoints")));
    }

    [SkippableFact]
    public void Train_lora_then_use_the_adapter_everywhere()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        var data = WriteSftData(dir);
        var outDir = Path.Combine(dir.Path, "run");
        var recipe = dir.File("recipe.yaml");
        File.WriteAllText(recipe, "method: lora\nlora_r: 4\nlora_alpha: 8\nlora_targets: [q_proj, v_proj, down_proj]\nseq_len: 48\nbatch_size: 4\n");
        var r = HoneCli.Run("train", model, "--data", data, "--out", outDir, "--config", recipe, "--max-steps", "30", "--lr", "5e-3",
            "--eval-every", "10", "--save-every", "10", "--threads", "2");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("done: 30/30 steps", r.Stdout);
        Assert.Contains("validation loss", r.Stderr);
        var metrics = File.ReadAllLines(Path.Combine(outDir, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).Where(l => l["loss"] != null).ToList();
        Assert.Equal(30, metrics.Count);
        Assert.True((double)metrics[^1]["loss"]! < (double)metrics[0]["loss"]!, "the loss should fall");
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "adapter_config.json")))!;
        Assert.Equal("LORA", (string)config["peft_type"]!);
        Assert.Equal("CAUSAL_LM", (string)config["task_type"]!);
        Assert.Equal(4, (int)config["r"]!);

        // Perplexity with the adapter applied at run time...
        var text = dir.File("eval.txt");
        File.WriteAllText(text, string.Join("\n", Enumerable.Range(0, 12).Select(i => $"### Instruction:\nWhat color is the ball?\n\n### Response:\nThe ball is red.")));
        double Ppl(params string[] extra)
        {
            var p = HoneCli.Run(new[] { "perplexity", extra[0], "--file", text, "--ctx", "64", "--json" }.Concat(extra.Skip(1)).ToArray());
            Assert.True(p.ExitCode == 0, p.ToString());
            return (double)JsonNode.Parse(p.Stdout)!["ppl"]!;
        }
        double withAdapter = Ppl(model, "--adapter", outDir);
        double plain = Ppl(model);
        Assert.NotEqual(plain, withAdapter);

        // ...equals the perplexity of weights merged independently from the raw adapter tensors.
        var merged = MergeIndependently(model, outDir, dir);
        Assert.Equal(withAdapter, Ppl(merged), withAdapter * 1e-5);

        // merge-adapter writes a model that agrees as well.
        var viaCli = dir.File("merged-cli.gguf"); // GGUF keeps the tokenizer (a directory from a GGUF source would not have tokenizer.json)
        var m = HoneCli.Run("merge-adapter", model, "--adapter", outDir, "--out", viaCli);
        Assert.True(m.ExitCode == 0, m.ToString());
        Assert.Contains("verified", m.Stdout);
        Assert.Equal(withAdapter, Ppl(viaCli), withAdapter * 1e-5);

        var g = HoneCli.Run("generate", model, "--adapter", outDir, "--prompt", "### Instruction:\nWhat color is the cat?\n\n### Response:\n", "--temperature", "0", "-n", "8", "--json");
        Assert.True(g.ExitCode == 0, g.ToString());
    }

    /// <summary>W' = W + (α/r)·B·A straight from adapter_model.safetensors (PEFT keys) into a copy of the GGUF.</summary>
    static unsafe string MergeIndependently(string model, string adapterDir, TempDirectory dir)
    {
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(adapterDir, "adapter_config.json")))!;
        double scale = (double)config["lora_alpha"]! / (int)config["r"]!;
        var bytes = File.ReadAllBytes(model);
        using var gguf = GgufFile.Open(model);
        using var st = SafetensorsFile.Open(Path.Combine(adapterDir, "adapter_model.safetensors"));
        var hfToGguf = new Dictionary<string, string> { ["self_attn.q_proj"] = "attn_q", ["self_attn.v_proj"] = "attn_v", ["mlp.down_proj"] = "ffn_down" };
        int merged = 0;
        foreach (var a in st.Tensors.Where(t => t.Name.EndsWith(".lora_A.weight")))
        {
            var module = a.Name["base_model.model.model.layers.".Length..^".lora_A.weight".Length]; // "3.self_attn.q_proj"
            int layer = int.Parse(module[..module.IndexOf('.')]);
            var target = gguf.Tensors.Single(t => t.Name == $"blk.{layer}.{hfToGguf[module[(module.IndexOf('.') + 1)..]]}.weight");
            st.TryGetTensor(a.Name.Replace("lora_A", "lora_B"), out var b);
            int r = (int)a.Shape[0], cols = (int)a.Shape[1], rows = (int)b.Shape[0];
            float* pa = (float*)st.TensorData(a), pb = (float*)st.TensorData(b);
            long offset = gguf.DataOffset + target.Offset;
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++)
                {
                    double delta = 0;
                    for (int k = 0; k < r; k++) delta += (double)pb[i * r + k] * pa[k * cols + j];
                    var span = bytes.AsSpan((int)(offset + (i * cols + j) * 4L), 4);
                    BinaryPrimitives.WriteSingleLittleEndian(span, (float)(BinaryPrimitives.ReadSingleLittleEndian(span) + scale * delta));
                }
            merged++;
        }
        Assert.Equal(5 * 3, merged);
        var path = dir.File("merged-independent.gguf");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [SkippableFact]
    public void Malformed_data_line_is_named_and_can_be_skipped()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        var data = WriteSftData(dir);
        var lines = File.ReadAllLines(data).ToList();
        lines.Insert(3, "{\"instruction\": \"broken\"");
        lines.Insert(5, "{\"prompt\": \"no known shape\"}");
        File.WriteAllLines(data, lines);
        var outDir = Path.Combine(dir.Path, "run");
        var r = HoneCli.Run("train", model, "--data", data, "--out", outDir, "--max-steps", "2", "--seq-len", "48");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("sft.jsonl:4:", r.Stderr);
        r = HoneCli.Run("train", model, "--data", data, "--out", outDir, "--max-steps", "2", "--seq-len", "48", "--skip-bad-lines");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("skipped 2 bad records", r.Stderr);
    }

    /// <summary>Paragraphs of tiny Shakespeare as CPT records, one a line.</summary>
    static List<byte[]> ShakespeareLines(int count) =>
        File.ReadAllText(SharedData.Require("datasets/tinyshakespeare/input.txt"))
            .Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Take(count)
            .Select(p => System.Text.Encoding.UTF8.GetBytes(new JsonObject { ["text"] = p }.ToJsonString() + "\n")).ToList();

    [SkippableFact]
    public void Train_cpt_refuses_an_invalid_utf8_line_naming_file_and_line()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        var lines = ShakespeareLines(20);
        // Line 7 gets a lone UTF-8 lead byte where its text starts (the data commands refuse the same line).
        int at = lines[6].AsSpan().IndexOf(": \""u8) + 3;
        lines[6][at] = 0xC3;
        lines[6][at + 1] = (byte)' ';
        var data = dir.File("cpt.jsonl");
        File.WriteAllBytes(data, lines.SelectMany(l => l).ToArray());
        var r = HoneCli.Run("train", model, "--stage", "cpt", "--data", data, "--out", dir.File("run"), "--max-steps", "1", "--seq-len", "32");
        Assert.True(r.ExitCode == 1, r.ToString());
        var errors = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("error:")).ToList();
        Assert.True(errors.Count == 1, r.ToString());
        Assert.Contains($"{data}:7:", errors[0]);
        Assert.Contains("invalid UTF-8", errors[0]);
        Assert.False(Directory.Exists(dir.File("run")) && Directory.EnumerateFileSystemEntries(dir.File("run")).Any(), "no training output");
        // The data commands agree that line 7 is the bad one.
        var stats = HoneCli.Run("data", "stats", data);
        Assert.Contains(":7", stats.Stdout + stats.Stderr);
    }

    [SkippableFact]
    public void Train_refuses_a_record_with_a_duplicate_key_naming_file_line_and_key()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        var lines = ShakespeareLines(12).Select(System.Text.Encoding.UTF8.GetString).ToList();
        // Line 5 names "text" twice (System.Text.Json used to stop at "An item with the same key has already been added").
        lines[4] = lines[4].TrimEnd('\n')[..^1] + ", \"text\": \"a second text\"}\n";
        var data = dir.File("cpt.jsonl");
        File.WriteAllText(data, string.Concat(lines));
        var r = HoneCli.Run("train", model, "--stage", "cpt", "--data", data, "--out", dir.File("run"), "--max-steps", "1", "--seq-len", "32");
        Assert.True(r.ExitCode == 1, r.ToString());
        var errors = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("error:")).ToList();
        Assert.True(errors.Count == 1, r.ToString());
        Assert.Contains($"{data}:5:", errors[0]);
        Assert.Contains("Duplicate property 'text'", errors[0]);
        Assert.DoesNotContain("same key has already been added", errors[0]);
    }

    [SkippableFact]
    public void Train_sft_with_examples_longer_than_seq_len_truncates_or_drops_them_and_says_how_many()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        var data = WriteSftData(dir);
        string longPrompt = string.Join(' ', Enumerable.Repeat("The little dog ran in the park with a red ball.", 20));
        var lines = File.ReadAllLines(data).ToList();
        lines.Add(new JsonObject { ["instruction"] = "Tell me a story.", ["output"] = string.Join(' ', Enumerable.Repeat("Once upon a time there was a cat.", 20)) }.ToJsonString());
        lines.Add(new JsonObject { ["instruction"] = longPrompt, ["output"] = "Yes." }.ToJsonString());
        File.WriteAllLines(data, lines);
        var r = HoneCli.Run("train", model, "--data", data, "--out", dir.File("run"), "--max-steps", "1", "--seq-len", "48");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("1 longer than 49 tokens truncated", r.Stderr);
        Assert.Contains("1 dropped (no answer token within the first 49", r.Stderr);

        // Only over-long examples: what is wrong and what to do, not "too short for even one window".
        var onlyLong = dir.File("long.jsonl");
        File.WriteAllLines(onlyLong, [lines[^1], new JsonObject { ["instruction"] = longPrompt + " Again.", ["output"] = "No." }.ToJsonString()]);
        r = HoneCli.Run("train", model, "--data", onlyLong, "--out", dir.File("run2"), "--max-steps", "1", "--seq-len", "48");
        Assert.True(r.ExitCode == 1, r.ToString());
        var errors = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("error:")).ToList();
        Assert.True(errors.Count == 1, r.ToString());
        Assert.Contains(onlyLong, errors[0]);
        Assert.Contains("none of the 2 examples has an answer token within its first 49 tokens", errors[0]);
        Assert.Contains("raise --seq-len", errors[0]);
        Assert.DoesNotContain("too short", errors[0]);
    }
}
