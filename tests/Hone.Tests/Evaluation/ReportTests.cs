using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Hone.Evaluation;
using Hone.Evaluation.Report;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Evaluation;

public class ReportTests
{
    static JsonObject Results(double acc, double ppl) => EvalResults.Document(new[]
    {
        new JsonObject
        {
            ["task"] = "domain_qa", ["kind"] = "sampled", ["n"] = 50,
            ["metrics"] = new JsonObject
            {
                ["pass@1"] = new JsonObject { ["value"] = acc, ["stderr"] = 0.05, ["stderr_method"] = "analytical", ["higher_is_better"] = true },
            },
            ["protocol"] = new JsonObject { ["n"] = 4 },
        },
        new JsonObject
        {
            ["task"] = "domain_ppl", ["kind"] = "perplexity", ["n"] = 1,
            ["metrics"] = new JsonObject { ["perplexity"] = new JsonObject { ["value"] = ppl, ["stderr"] = null, ["higher_is_better"] = false } },
            ["protocol"] = new JsonObject { ["ctx"] = 256 },
        },
    });

    static string MakeRun(TempDirectory dir)
    {
        var run = Path.Combine(dir.Path, "run");
        Directory.CreateDirectory(run);
        File.WriteAllLines(Path.Combine(run, "metrics.jsonl"), Enumerable.Range(1, 40).Select(s =>
            s % 10 == 0 ? new JsonObject { ["step"] = s, ["val_loss"] = 3.0 / s + 0.5 }.ToJsonString()
                        : new JsonObject { ["step"] = s, ["loss"] = 3.0 / s + 0.4, ["lr"] = 1e-3, ["tokens_per_s"] = 1000 }.ToJsonString()));
        File.WriteAllText(Path.Combine(run, "train_summary.json"), new JsonObject { ["steps"] = 40, ["tokens"] = 40960, ["seconds"] = 12.5, ["final_loss"] = 0.475, ["best_val_loss"] = 0.6, ["trainable_parameters"] = 1234 }.ToJsonString());
        EvalResults.Write(Path.Combine(run, "eval-before.json"), Results(0.1, 40));
        EvalResults.Write(Path.Combine(run, "eval-after.json"), Results(0.6, 12));
        var values = Enumerable.Range(0, 300).Select(i => Math.Exp(2 + 3.0 * i / 300)).ToList();
        File.WriteAllText(Path.Combine(run, "corpus_ppl.json"), RunReport.CorpusJson(new CorpusScores("corpus", values, 15, 120, "full")).ToJsonString());
        return run;
    }

    [Fact]
    public void Report_is_self_contained_html_with_svg_charts_and_a_markdown_summary()
    {
        using var dir = new TempDirectory();
        var run = MakeRun(dir);
        var output = dir.File("report.html");
        var r = HoneCli.Run("report", run, "--out", output, "--title", "Demo");
        Assert.True(r.ExitCode == 0, r.ToString());
        var html = File.ReadAllText(output);
        Assert.StartsWith("<!DOCTYPE html>", html);
        // No scripts, no external resources: the only URL is the SVG namespace.
        Assert.DoesNotContain("<script", html);
        Assert.Empty(Regex.Matches(html, @"(src|href)\s*=").Cast<Match>());
        var svgs = Regex.Matches(html, "<svg .*?</svg>", RegexOptions.Singleline).Select(m => m.Value).ToList();
        Assert.Equal(4, svgs.Count); // loss curve, two before/after bars, corpus histogram
        foreach (var svg in svgs) XElement.Parse(svg); // each chart is well-formed XML
        Assert.Contains("polyline", svgs[0]);
        Assert.Contains("kept 15 – 120", html);
        Assert.Contains("(better)", html); // pass@1 0.1 → 0.6 with se 0.05 each
        var md = File.ReadAllText(Path.ChangeExtension(output, ".md"));
        Assert.Contains("| domain_qa | pass@1 | 0.1 ± 0.05 | 0.6 ± 0.05 | +0.5 (better) |", md);
        Assert.Contains("| corpus | 300 |", md);
    }

    [Fact]
    public void Empty_run_directory_is_an_error()
    {
        using var dir = new TempDirectory();
        var r = HoneCli.Run("report", dir.Path, "--out", dir.File("r.html"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("nothing to report", r.Stderr);
    }
}
