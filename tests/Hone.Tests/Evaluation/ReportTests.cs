using System.Net;
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

    /// <summary>A results record as `hone eval` writes one (the fields the report reads).</summary>
    static JsonObject Record(string task, string kind, params (string Metric, double Value, double? Stderr, bool Higher)[] metrics) => new()
    {
        ["task"] = task, ["kind"] = kind, ["n"] = 40,
        ["metrics"] = new JsonObject(metrics.Select(m => KeyValuePair.Create(m.Metric, (JsonNode?)new JsonObject
        {
            ["value"] = m.Value, ["stderr"] = m.Stderr, ["stderr_method"] = "analytical", ["higher_is_better"] = m.Higher,
        }))),
        ["protocol"] = new JsonObject { ["data"] = task + ".jsonl" },
        ["details"] = new JsonObject(),
    };

    static JsonObject Sample(int item, string question, JsonNode? reference, string answer, string outcome, int passed) => new()
    {
        ["item"] = item, ["question"] = question, ["reference"] = reference?.DeepClone(), ["answer"] = answer, ["outcome"] = outcome, ["passed"] = passed, ["n"] = 4,
    };

    /// <summary>A quickstart-shaped before/after pair: domain perplexity falling three decades, general perplexity
    /// rising (forgetting), pass@1 rising beyond noise and pass@4 within it, a one-document perplexity without a
    /// standard error, and answers to the same questions.</summary>
    static string MakeBeforeAfter(TempDirectory dir)
    {
        var run = Path.Combine(dir.Path, "sft");
        Directory.CreateDirectory(run);
        JsonObject Qa(double pass1, double pass4, params JsonObject[] samples)
        {
            var r = Record("domain_qa", "sampled", ("pass@1", pass1, 0.05, true), ("pass@4", pass4, 0.1, true));
            r["details"]!["samples"] = new JsonArray(samples.Select(x => (JsonNode)x).ToArray());
            return r;
        }
        var reference = new JsonObject { ["contains"] = new JsonArray("1234", "shipped"), ["regex"] = "(?i)order" };
        EvalResults.Write(Path.Combine(run, "eval-before.json"), EvalResults.Document(
        [
            Record("domain_perplexity", "perplexity", ("perplexity", 3117, 40, false)),
            Record("general_perplexity", "perplexity", ("perplexity", 5.9, 0.1, false)),
            Record("story_perplexity", "perplexity", ("perplexity", 40, null, false)),
            Qa(0.1, 0.3,
                Sample(0, "Where is my order 1234?", reference, "I don't know.", "missing_fact", 0),
                Sample(1, "Can I return shoes?", "30 days", "Shoes are shoes.", "fail", 1)),
        ]));
        EvalResults.Write(Path.Combine(run, "eval-after.json"), EvalResults.Document(
        [
            Record("domain_perplexity", "perplexity", ("perplexity", 3.13, 0.05, false)),
            Record("general_perplexity", "perplexity", ("perplexity", 8.0, 0.12, false)),
            Record("story_perplexity", "perplexity", ("perplexity", 12, null, false)),
            Qa(0.6, 0.4,
                Sample(0, "Where is my order 1234?", reference, "Your order 1234 has shipped.", "pass", 3),
                Sample(1, "Can I return a hat?", "30 days", "Yes, within 30 days.", "pass", 4)),
        ]));
        return run;
    }

    static (string Html, string Markdown, List<string> Svgs) Report(TempDirectory dir, params string[] runs)
    {
        var output = dir.File("report.html");
        var r = HoneCli.Run(["report", .. runs, "--out", output]);
        Assert.True(r.ExitCode == 0, r.ToString());
        var html = File.ReadAllText(output);
        var svgs = Regex.Matches(html, "<svg .*?</svg>", RegexOptions.Singleline).Select(m => m.Value).ToList();
        return (html, File.ReadAllText(Path.ChangeExtension(output, ".md")), svgs);
    }

    static string Title(string svg) => XElement.Parse(svg).Elements().First(e => (string?)e.Attribute("class") == "title").Value;

    [Fact]
    public void Perplexity_spanning_decades_is_drawn_on_a_log_axis_with_power_of_ten_ticks()
    {
        Assert.Equal([1, 10, 100, 1000, 10000], SvgCharts.LogTicks(3.13, 3117));
        Assert.Equal([1, 2, 5, 10], SvgCharts.LogTicks(5.9, 8.0));              // within one decade: 2 and 5 between
        Assert.Equal([0.001, 0.01, 0.1, 1], SvgCharts.LogTicks(0.002, 0.5));

        using var dir = new TempDirectory();
        var (_, _, svgs) = Report(dir, MakeBeforeAfter(dir));
        var chart = svgs.Single(s => Title(s).StartsWith("Perplexity — log scale"));
        var svg = XElement.Parse(chart);
        var ticks = svg.Elements().Where(e => (string?)e.Attribute("class") == "tick").Select(e => e.Value).ToList();
        foreach (var decade in new[] { "1", "10", "100", "1000", "10000" }) Assert.Contains(decade, ticks);
        // Every task's perplexity is on it, before and after, and the 3.13 bar is as readable as the 3117 one: on a
        // linear axis up to 3117 it would be a tenth of a pixel high.
        foreach (var task in new[] { "domain_perplexity", "general_perplexity", "story_perplexity" }) Assert.Contains(task, ticks);
        var heights = svg.Elements().Where(e => e.Name.LocalName == "rect" && e.Attribute("opacity") != null)
            .Select(e => double.Parse((string)e.Attribute("height")!, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(6, heights.Count);
        Assert.All(heights, h => Assert.True(h > 20, $"bar height {h}"));
        // Gridlines are evenly spaced: 10 → 100 spans the same height as 100 → 1000.
        var gridY = svg.Elements().Where(e => (string?)e.Attribute("class") == "grid")
            .Select(e => double.Parse((string)e.Attribute("y1")!, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(5, gridY.Count);
        Assert.Equal(gridY[0] - gridY[1], gridY[2] - gridY[3], tolerance: 0.02);
    }

    [Fact]
    public void Pretraining_and_fine_tuning_losses_get_separate_charts()
    {
        using var dir = new TempDirectory();
        string Run(string name, string stage, string method, double from, double to)
        {
            var run = Path.Combine(dir.Path, name);
            Directory.CreateDirectory(run);
            File.WriteAllLines(Path.Combine(run, "metrics.jsonl"), Enumerable.Range(1, 30).Select(s =>
                new JsonObject { ["step"] = s, ["loss"] = from + (to - from) * s / 30 }.ToJsonString()));
            File.WriteAllText(Path.Combine(run, "train_summary.json"), new JsonObject { ["steps"] = 30, ["stage"] = stage, ["method"] = method }.ToJsonString());
            return run;
        }
        var (html, md, svgs) = Report(dir, Run("base", "cpt", "full", 7.5, 2.5), Run("sft", "sft", "lora", 1.2, 0.3));
        Assert.Equal(2, svgs.Count);
        Assert.Equal("Pretraining loss: base (full)", Title(svgs[0]));
        Assert.Equal("Fine-tuning loss: sft (LoRA)", Title(svgs[1]));
        foreach (var svg in svgs) Assert.Single(Regex.Matches(svg, "<polyline"));
        // Each axis fits its own run: the fine-tuning curve fills its chart's height (226 px) instead of lying flat
        // under the pretraining losses (on one axis from 0.3 to 7.5 it would span about 28 px).
        double Span(string svg)
        {
            var ys = ((string)XElement.Parse(svg).Elements().Single(e => e.Name.LocalName == "polyline").Attribute("points")!).Split(' ')
                .Select(p => double.Parse(p.Split(',')[1], System.Globalization.CultureInfo.InvariantCulture)).ToList();
            return ys.Max() - ys.Min();
        }
        Assert.All(svgs, svg => Assert.True(Span(svg) > 150, $"the curve spans {Span(svg)} px"));
        Assert.Contains("Each stage has its own axis", html);
        Assert.Contains("| base | pretraining, full |", md);
        Assert.Contains("| sft | fine-tuning, lora |", md);
    }

    [Fact]
    public void Verdicts_say_per_metric_what_changed_and_whether_beyond_noise()
    {
        using var dir = new TempDirectory();
        var (html, md, _) = Report(dir, MakeBeforeAfter(dir));
        string[] expected =
        [
            "domain perplexity improved 3117 → 3.13 (−99.9%, ÷996), beyond 2 standard errors",
            "general perplexity worsened 5.9 → 8 (+36%), beyond 2 standard errors: forgetting",
            "story perplexity improved 40 → 12 (−70%, ÷3.3); no standard error to judge it against noise",
            "domain qa: pass@1 improved 0.1 → 0.6 (+0.5), beyond 2 standard errors",
            "domain qa: pass@4: no clear change, 0.3 → 0.4 (+0.1), within 2 standard errors",
        ];
        var items = Regex.Matches(html, "<li class=\"(\\w+)\">(.*?)</li>").Select(m => (Class: m.Groups[1].Value, Text: WebUtility.HtmlDecode(m.Groups[2].Value))).ToList();
        Assert.Equal(expected, items.Select(i => i.Text));
        Assert.Equal(["better", "worse", "better", "better", "unclear"], items.Select(i => i.Class));
        foreach (var line in expected) Assert.Contains("- " + line + "\n", md);
        Assert.Contains("after against before", md);
    }

    [Fact]
    public void Verdicts_collapse_a_task_that_did_not_move_and_call_a_tiny_unmeasured_change_about_unchanged()
    {
        List<JsonObject> Run(double general) =>
        [
            Record("general_perplexity", "perplexity", ("perplexity", general, null, false)),
            Record("orders", "sampled", ("pass@1", 0, 0, true), ("pass^1", 0, 0, true)),
        ];
        var verdicts = Verdicts.For(ResultsComparison.Compare([Run(122.48), Run(122.62)]));
        Assert.Equal(["general perplexity about unchanged, 122 → 123 (+0.11%); no standard error to judge it against noise", "orders: pass@1, pass^1 unchanged at 0"],
            verdicts.Select(v => v.Text));
        Assert.All(verdicts, v => Assert.Equal(VerdictDirection.Unclear, v.Direction));
        // Beyond 1% without an error estimate, a worse general perplexity is called forgetting.
        Assert.Equal("general perplexity worsened 13.8 → 61.5 (+346%, ×4.5); no standard error to judge it against noise: forgetting",
            Verdicts.For(ResultsComparison.Compare([Run(13.8), Run(61.5)]))[0].Text);
    }

    [Fact]
    public void Answers_before_and_after_are_shown_side_by_side_for_the_same_questions()
    {
        using var dir = new TempDirectory();
        var (html, md, _) = Report(dir, MakeBeforeAfter(dir));
        var table = Regex.Match(html, "<h4>domain_qa</h4><table class=\"samples\">(.*?)</table>", RegexOptions.Singleline).Groups[1].Value;
        var rows = Regex.Matches(table, "<tr>(.*?)</tr>", RegexOptions.Singleline).Select(m =>
            Regex.Matches(m.Groups[1].Value, "<t[hd]>(.*?)</t[hd]>", RegexOptions.Singleline).Select(c => WebUtility.HtmlDecode(Regex.Replace(c.Groups[1].Value, "<.*?>", ""))).ToList()).ToList();
        Assert.Equal(["question", "reference", "before", "after"], rows[0]);
        Assert.Equal(["Where is my order 1234?", "contains: 1234, shipped\nregex: (?i)order",
            "I don't know.\n[✗ missing_fact; 0 of 4 samples passed]", "Your order 1234 has shipped.\n[✓ pass; 3 of 4 samples passed]"], rows[1]);
        // The second item asked something else after: no false pairing.
        Assert.Equal("(not asked the same question)", rows[2][3]);
        Assert.Contains("| Where is my order 1234? | contains: 1234, shipped<br>regex: (?i)order | I don&#39;t know.<br>[✗ missing_fact; 0 of 4 samples passed] | " +
                        "Your order 1234 has shipped.<br>[✓ pass; 3 of 4 samples passed] |", md);
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
