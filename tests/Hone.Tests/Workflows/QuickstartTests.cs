using System.Text.Json.Nodes;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Workflows;

/// <summary>The main job end to end at a small scale (the full-size run is what the README's first command does).</summary>
public partial class QuickstartTests
{
    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "kill")]
    private static partial int Kill(int pid, int signal);

    [SkippableFact]
    public void Sigterm_stops_the_quickstart_between_stages_and_caches_no_partial_base()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "sends SIGTERM through Linux libc");
        using var dir = new TempDirectory();
        string cache = dir.File("cache");
        using var p = HoneCli.Start(null, "quickstart", "--out", dir.File("run"), "--scale", "0.04", "--threads", "1", "--base-cache", cache);
        HangGuard.WaitUntil(() => p.Stderr.Contains("== copying practice 1/") || p.HasExited, 20);
        Assert.False(p.HasExited, "the quickstart ended before it could be stopped\n" + p.Stderr);
        Assert.Equal(0, Kill(p.Id, 15)); // SIGTERM
        var r = p.WaitForExit();
        Assert.True(r.ExitCode == 130, r.ToString());
        Assert.Contains("interrupted:", r.Stderr);
        Assert.DoesNotContain("unexpected", r.Stderr);
        Assert.False(Directory.Exists(Path.Combine(cache, "quickstart-base")) && Directory.EnumerateFileSystemEntries(Path.Combine(cache, "quickstart-base")).Any(),
            "a base model that was not finished must not be cached");
    }

    [Fact]
    public void Small_quickstart_runs_every_stage_and_domain_perplexity_falls()
    {
        using var dir = new TempDirectory();
        var r = HoneCli.Run("quickstart", "--out", dir.Path, "--scale", "0.04", "--threads", "2", "--no-base-cache");
        Assert.True(r.ExitCode == 0, r.ToString());
        foreach (var file in new[] { "report.html", "report.md", "quickstart.json", "base/model.safetensors", "base/tokenizer.json", "base/metrics.jsonl",
                     "sft/adapter_model.safetensors", "sft/adapter_config.json", "sft/eval-before.json", "sft/eval-after.json", "sft/corpus_ppl.json" })
            Assert.True(File.Exists(Path.Combine(dir.Path, file)), $"{file} missing\n{r.Stderr}");
        var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "quickstart.json")))!;
        var domain = summary["metrics"]!["domain_perplexity perplexity"]!;
        Assert.True((double)domain["after"]! < (double)domain["before"]!, $"domain perplexity {domain["before"]} -> {domain["after"]}");
        Assert.NotNull(summary["metrics"]!["general_perplexity perplexity"]!["after"]);
        Assert.NotNull(summary["metrics"]!["domain_text_perplexity perplexity"]!["after"]);
        Assert.NotNull(summary["metrics"]!["copy_probe acc"]!["before"]);
        // Distillation and unlearning are opt-in (--distill, --unlearn).
        Assert.Null(summary["distillation"]);
        Assert.Null(summary["unlearning"]);
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "extended")));
        foreach (var task in new[] { "domain_task_policies", "domain_task_orders" })
        {
            Assert.NotNull(summary["metrics"]![$"{task} pass@1"]!["after"]);
            Assert.NotNull(summary["metrics"]![$"{task} pass^4"]!["before"]);
        }
        // The agent benchmark before and after, in the results and the report.
        Assert.NotNull(summary["metrics"]!["agent_retail pass^1"]!["before"]);
        Assert.NotNull(summary["metrics"]!["agent_retail pass^2"]!["after"]);
        Assert.True(File.Exists(Path.Combine(dir.Path, "agent-sft", "agent-after.trajectories.jsonl")));
        var html = File.ReadAllText(Path.Combine(dir.Path, "report.html"));
        Assert.Contains("<h2>Agent benchmark</h2>", html);
        Assert.Contains("Perplexity — log scale", html);
        Assert.Contains("Pretraining loss: base (full)", html);
        Assert.Contains("Fine-tuning loss: sft (LoRA)", html);
        var md = File.ReadAllText(Path.Combine(dir.Path, "report.md"));
        Assert.Contains("### Verdicts", md);
        Assert.Contains("- domain perplexity", md);
        Assert.Contains("#### domain_task_orders\n\n| question | reference | before | after |", md);
    }

    [Fact]
    public void A_cached_base_model_is_reused_with_the_same_numbers_and_a_damaged_one_is_built_again()
    {
        using var dir = new TempDirectory();
        string cache = dir.File("cache");
        string[] Args(string run) => ["quickstart", "--out", dir.File(run), "--scale", "0.02", "--threads", "2", "--base-cache", cache];
        var first = HoneCli.Run(Args("first"));
        Assert.True(first.ExitCode == 0, first.ToString());
        Assert.Contains("base model cached in", first.Stderr);
        var entries = Directory.GetDirectories(Path.Combine(cache, "quickstart-base"));
        Assert.Single(entries);

        var second = HoneCli.Run(Args("second"));
        Assert.True(second.ExitCode == 0, second.ToString());
        Assert.Contains("== base model from the cache", second.Stderr);
        Assert.DoesNotContain("== tokenizer", second.Stderr);
        string Metrics(string run) => JsonNode.Parse(File.ReadAllText(dir.File(run + "/quickstart.json")))!["metrics"]!.ToJsonString();
        Assert.Equal(Metrics("first"), Metrics("second"));
        Assert.True(File.Exists(dir.File("second/base/metrics.jsonl")), "the pretraining curve comes with the cached base");

        // One flipped byte in the cached weights: reported, built again, and the numbers are still the same.
        string weights = Path.Combine(entries[0], "base", "model.safetensors");
        var bytes = File.ReadAllBytes(weights);
        bytes[^1] ^= 0x40;
        File.WriteAllBytes(weights, bytes);
        var third = HoneCli.Run(Args("third"));
        Assert.True(third.ExitCode == 0, third.ToString());
        Assert.Contains("is damaged (base/model.safetensors does not match its SHA-256); building it again", third.Stderr);
        Assert.Contains("== tokenizer", third.Stderr);
        Assert.Equal(Metrics("first"), Metrics("third"));
    }

    [SkippableFact]
    public void Quickstart_runs_on_real_inputs()
    {
        // The folder holds two .gguf files (v1 and v3 of the same model): an ambiguous folder is refused, so name one.
        var model = SharedData.Require("models/stories260K/tinyllamas-stories-260k-f32.gguf");
        var data = SharedData.Require("datasets/bitext-customer-support");
        using var dir = new TempDirectory();
        var r = HoneCli.Run("quickstart", "--model", model, "--data", data, "--out", dir.Path, "--scale", "0.05", "--threads", "2");
        Assert.True(r.ExitCode == 0, r.ToString());
        var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "quickstart.json")))!;
        var domain = summary["metrics"]!["domain_perplexity perplexity"]!;
        Assert.True((double)domain["after"]! < (double)domain["before"]!, $"domain perplexity {domain["before"]} -> {domain["after"]}");
        Assert.NotNull(summary["metrics"]!["domain_task pass@1"]);
        // A given model replays general text too, and says which.
        Assert.Contains("replaying", r.Stderr);
        Assert.StartsWith("the generated general-English corpus", (string)summary["general_text"]!);
        Assert.True(File.ReadLines(Path.Combine(dir.Path, "data", "general", "replay.jsonl")).Count() >= 8);
        Assert.Contains("generated general-English corpus", File.ReadAllText(Path.Combine(dir.Path, "tasks", "general_perplexity.json")));
    }

    [SkippableFact]
    public void Invalid_utf8_in_a_given_csv_is_an_error_naming_its_line()
    {
        var model = SharedData.Require("models/stories260K/tinyllamas-stories-260k-f32.gguf");
        using var dir = new TempDirectory();
        var csv = dir.File("data.csv");
        File.WriteAllBytes(csv, [.. "instruction,response\nWhere is my order?,It shipped.\nRefund?,Yes "u8, 0xFF, .. "please.\n"u8]);
        var r = HoneCli.Run("quickstart", "--model", model, "--data", csv, "--out", dir.File("run"), "--scale", "0.02", "--threads", "2");
        Assert.True(r.ExitCode == 1, r.ToString());
        Assert.Contains($"{csv}:", r.Stderr);
        Assert.Contains("invalid UTF-8", r.Stderr);
    }

    [SkippableFact]
    public void Quickstart_takes_general_text_from_a_file()
    {
        var model = SharedData.Require("models/stories260K/tinyllamas-stories-260k-f32.gguf");
        var data = SharedData.Require("datasets/bitext-customer-support");
        var shakespeare = SharedData.Require("datasets/tinyshakespeare/input.txt");
        using var dir = new TempDirectory();
        var r = HoneCli.Run("quickstart", "--model", model, "--data", data, "--general", shakespeare, "--out", dir.Path, "--scale", "0.02", "--threads", "2");
        Assert.True(r.ExitCode == 0, r.ToString());
        var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "quickstart.json")))!;
        Assert.Equal($"documents of {shakespeare}", (string)summary["general_text"]!);
        var replayed = File.ReadLines(Path.Combine(dir.Path, "data", "general", "replay.jsonl")).First();
        Assert.Contains("First Citizen", replayed);

        var refused = HoneCli.Run("quickstart", "--general", shakespeare, "--out", dir.File("x"));
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("only for a given model", refused.Stderr);
    }
}
