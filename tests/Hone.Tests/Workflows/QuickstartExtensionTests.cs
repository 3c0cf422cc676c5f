using System.Text.Json.Nodes;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Workflows;

/// <summary>The quickstart's distillation and unlearning stages at a small scale: their report sections and
/// quickstart.json entries, and a second run that skips what finished.</summary>
public class QuickstartExtensionTests
{
    [Fact]
    public void Distillation_and_unlearning_report_their_numbers_and_a_rerun_skips_finished_stages()
    {
        using var dir = new TempDirectory();
        string[] Args(params string[] more) => ["quickstart", "--out", dir.Path, "--scale", "0.04", "--threads", "2", "--no-base-cache", "--distill", "--unlearn", .. more];
        var first = HoneCli.Run(Args());
        Assert.True(first.ExitCode == 0, first.ToString());
        Assert.Contains("== distillation: the student trained on the hard labels (sft)\n", first.Stderr);
        Assert.Contains("== unlearning: NPO, lr 0.001 on the specialist\n", first.Stderr);

        var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "quickstart.json")))!;
        // The usual numbers are still there, with the extension's beside them.
        Assert.NotNull(summary["metrics"]!["domain_perplexity perplexity"]!["after"]);
        var distillation = summary["distillation"]!["models"]!.AsArray();
        Assert.Equal(4, distillation.Count);
        foreach (var model in distillation)
        {
            foreach (var metric in new[] { "domain_perplexity perplexity", "domain_task_policies pass@1", "general_perplexity_documents perplexity" })
                Assert.True(model!["metrics"]![metric]!["value"] is JsonValue v && v.TryGetValue(out double d) && double.IsFinite(d), $"{model["model"]}: {metric}");
            Assert.NotNull(model!["metrics"]!["general_perplexity_documents perplexity"]!["stderr"]);
        }
        long teacher = (long)distillation[0]!["parameters"]!, student = (long)distillation[2]!["parameters"]!;
        Assert.True(student < teacher, $"student {student} parameters, teacher {teacher}");
        Assert.Equal(2, (int)distillation[2]!["layers"]!);
        // The teacher evaluated again gives the quickstart's own numbers (same model, tasks and seed).
        Assert.Equal((double)summary["metrics"]!["domain_perplexity perplexity"]!["after"]!, (double)distillation[0]!["metrics"]!["domain_perplexity perplexity"]!["value"]!, 9);

        var unlearning = summary["unlearning"]!["models"]!.AsArray();
        Assert.Equal(3, unlearning.Count);
        foreach (var model in unlearning)
            foreach (var metric in new[] { "policies_forget pass@1", "policies_retain pass@1", "forget_perplexity perplexity", "retain_heldout_perplexity perplexity",
                         "general_perplexity_documents perplexity", "truth_ratio_forget truth_ratio", "truth_ratio_forget forget_quality" })
                Assert.True(model!["metrics"]![metric]!["value"] is JsonValue v && v.TryGetValue(out double d) && double.IsFinite(d), $"{model["model"]}: {metric}");
        // Against itself the never-saw model's truth ratios are indistinguishable: forget quality 1.
        Assert.Equal(1.0, (double)unlearning[1]!["metrics"]!["truth_ratio_forget forget_quality"]!["value"]!, 9);
        Assert.True((long)unlearning[2]!["steps"]! >= 1);
        Assert.True((double)summary["unlearning"]!["forget_target_loss"]! > 0);

        var md = File.ReadAllText(Path.Combine(dir.Path, "report.md"));
        Assert.Contains("## Distillation: the specialist taught to a student half its depth", md);
        Assert.Contains("## Unlearning: a quarter of the store policies", md);
        Assert.Matches(@"\| student, sft \(hard labels\) \| [\d,]+ \| 2 \| \d+ steps \| [\d.]+ ± [\d.]+ \|", md);
        Assert.Matches(@"\| the never-saw model \| - \| [\d.]+( ± [\d.]+)? \|", md);
        Assert.Contains("### Verdicts", md); // the usual report is all still there
        var html = File.ReadAllText(Path.Combine(dir.Path, "report.html"));
        Assert.Contains("<h2>Distillation: the specialist taught to a student half its depth</h2>", html);
        Assert.Contains("<h2>Unlearning: a quarter of the store policies</h2>", html);
        Assert.Contains("<h2>Agent benchmark</h2>", html);

        // Again: the quickstart and every extension stage are reused, and the numbers are the same.
        var second = HoneCli.Run(Args());
        Assert.True(second.ExitCode == 0, second.ToString());
        Assert.Contains("== the quickstart's stages: finished earlier in", second.Stderr);
        Assert.DoesNotContain("== LoRA supervised fine-tuning", second.Stderr);
        Assert.Contains("== distillation: the student trained on the hard labels (sft): finished earlier", second.Stderr);
        Assert.Contains("== unlearning: the never-saw model (the specialist's recipe without the forget policies): finished earlier", second.Stderr);
        Assert.DoesNotContain("== distillation: the student trained on the hard labels (sft)\n", second.Stderr);
        var again = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "quickstart.json")))!;
        Assert.Equal(summary["distillation"]!.ToJsonString(), again["distillation"]!.ToJsonString());
        Assert.Equal(summary["unlearning"]!.ToJsonString(), again["unlearning"]!.ToJsonString());

        // Another α: only the distilled student trains and is evaluated again.
        var third = HoneCli.Run(Args("--kd-ratio", "0.2"));
        Assert.True(third.ExitCode == 0, third.ToString());
        Assert.Contains("== distillation: the student distilled from base + LoRA specialist\n", third.Stderr);
        Assert.Contains("== distillation: the student trained on the hard labels (sft): finished earlier", third.Stderr);
        var changed = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "quickstart.json")))!;
        Assert.Equal(0.2, (double)changed["distillation"]!["settings"]!["kd_ratio"]!);
        Assert.Contains("distill α 0.2", (string)changed["distillation"]!["models"]![3]!["model"]!);
    }

    [Fact]
    public void Distillation_and_unlearning_are_refused_on_a_given_model()
    {
        using var dir = new TempDirectory();
        var r = HoneCli.Run("quickstart", "--model", dir.File("model"), "--out", dir.File("run"), "--unlearn");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("run on the generated default", r.Stderr);
    }
}
