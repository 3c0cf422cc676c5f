using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Formats;

namespace Hone.Evaluation.Report;

/// <summary>A corpus perplexity distribution and the band the filter kept (written by the quickstart as corpus_ppl.json,
/// or built from a scored JSONL).</summary>
public sealed record CorpusScores(string Name, IReadOnlyList<double> Values, double? KeptLow, double? KeptHigh, string? Protocol);

/// <param name="Tables">sections of their own after the evaluation: models against metrics, each with its protocol (the
/// quickstart's distillation and unlearning comparisons)</param>
public sealed record ReportOptions(IReadOnlyList<string> RunDirectories, string Output, string Title = "Hone report",
    IReadOnlyList<string>? ExtraResults = null, IReadOnlyList<CorpusScores>? Corpora = null, IReadOnlyList<ReportTable>? Tables = null);

/// <summary>A section of models (rows) against metrics (columns), the protocol in <paramref name="Note"/> above the table
/// and <paramref name="Finding"/> (what the numbers say, if anything) below it.</summary>
public sealed record ReportTable(string Title, string Note, IReadOnlyList<string> Columns, IReadOnlyList<ReportTableRow> Rows, string? Finding = null);

/// <param name="Cells">one per column: a value with its standard error, or text</param>
public sealed record ReportTableRow(string Label, IReadOnlyList<ReportCell> Cells);

public sealed record ReportCell(double? Value, double? StandardError = null, string? Text = null)
{
    public static ReportCell Of(string text) => new(null, null, text);
}

/// <summary>What went into a report, for the caller's summary.</summary>
public sealed record ReportSummary(string HtmlPath, string MarkdownPath, int Runs, int ResultFiles, int Charts);

/// <summary>
/// One self-contained HTML page (inline CSS and SVG, no scripts, no external resources) and a Markdown summary from
/// run directories: training curves from metrics.jsonl (a chart per training stage named in train_summary.json), the
/// run summary, from eval results files (eval*.json, eval/*.json) a verdict per metric, before/after bars (perplexity
/// on a log axis) and the answers both runs gave to the same questions, and corpus perplexity distributions from
/// corpus_ppl.json.
/// </summary>
public static class RunReport
{
    sealed record Run(string Directory, string Name, List<(double Step, double Loss)> Train, List<(double Step, double Loss)> Validation,
        JsonObject? Summary, List<(string Path, string Label, List<JsonObject> Records)> Results, List<CorpusScores> Corpora,
        List<RouterStep> Router);

    /// <summary>A logged step of mixture-of-experts training: the router losses and each sparse layer's routing.</summary>
    sealed record RouterStep(double Step, double Balance, double Z, JsonArray Layers);

    public static ReportSummary Write(ReportOptions o)
    {
        var runs = o.RunDirectories.Select(Load).ToList();
        var resultFiles = runs.SelectMany(r => r.Results).ToList();
        foreach (var extra in o.ExtraResults ?? [])
            resultFiles.Add((extra, Path.GetFileNameWithoutExtension(extra), EvalResults.Read(extra)));
        var corpora = runs.SelectMany(r => r.Corpora).Concat(o.Corpora ?? []).ToList();

        var html = new StringBuilder();
        var md = new StringBuilder();
        int charts = 0;
        html.Append("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
        html.Append($"<title>{E(o.Title)}</title><style>{Css}</style></head><body><main>");
        html.Append($"<h1>{E(o.Title)}</h1><p class=\"meta\">Generated {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC by Hone from {runs.Count} run director{(runs.Count == 1 ? "y" : "ies")}.</p>");
        md.AppendLine($"# {o.Title}").AppendLine();

        // Training: one chart per stage, so pretraining and fine-tuning losses (different text, different scales) each
        // get their own axis.
        var withTraining = runs.Where(r => r.Train.Count > 0).ToList();
        if (withTraining.Count > 0)
        {
            html.Append("<section><h2>Training</h2><div class=\"grid\">");
            var stages = TrainingCharts(withTraining);
            foreach (var (title, members) in stages)
            {
                var series = new List<SvgCharts.Series>();
                foreach (var r in members)
                {
                    string prefix = members.Count > 1 ? r.Name + " " : "";
                    series.Add(new SvgCharts.Series($"{prefix}train", Smooth(r.Train)));
                    if (r.Validation.Count > 0) series.Add(new SvgCharts.Series($"{prefix}validation", r.Validation, Markers: true, Dashed: true));
                }
                html.Append(Figure(SvgCharts.Line(title, "optimizer step", "cross-entropy (nats/token)", series),
                    "Training loss (smoothed over a window of 5 logged steps) and validation loss.")); charts++;
            }
            html.Append("</div>");
            if (stages.Count > 1)
                html.Append("<p class=\"note\">Each stage has its own axis: pretraining scores every token of general text, fine-tuning the tokens it " +
                            "trains on (by default the answers of conversations), so their losses are not on one scale.</p>");
            md.AppendLine("## Training").AppendLine().AppendLine("| run | stage | steps | tokens | seconds | final loss | best validation loss | trainable parameters |").AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- |");
            html.Append("<table><tr><th>run</th><th>stage</th><th>steps</th><th>tokens</th><th>time</th><th>final loss</th><th>best validation</th><th>trainable parameters</th></tr>");
            foreach (var r in withTraining)
            {
                var s = r.Summary;
                string Cell(string key, string format = "") => s?[key] is JsonValue v && v.TryGetValue(out double d) ? d.ToString(format, CultureInfo.InvariantCulture) : "–";
                string stage = StageName(r);
                html.Append($"<tr><td>{E(r.Name)}</td><td>{E(stage)}</td><td>{Cell("steps")}</td><td>{Cell("tokens", "N0")}</td><td>{Cell("seconds", "0.0")} s</td><td>{Cell("final_loss", "0.0000")}</td><td>{Cell("best_val_loss", "0.0000")}</td><td>{Cell("trainable_parameters", "N0")}</td></tr>");
                md.AppendLine($"| {r.Name} | {stage} | {Cell("steps")} | {Cell("tokens", "N0")} | {Cell("seconds", "0.0")} | {Cell("final_loss", "0.0000")} | {Cell("best_val_loss", "0.0000")} | {Cell("trainable_parameters", "N0")} |");
            }
            html.Append("</table>");
            md.AppendLine();
            charts += RouterSection(withTraining, html, md);
            html.Append("</section>");
        }

        // Evaluation.
        if (resultFiles.Count > 0)
        {
            html.Append("<section><h2>Evaluation</h2>");
            md.AppendLine("## Evaluation").AppendLine();
            var labels = resultFiles.Select(f => f.Label).ToList();
            if (resultFiles.Count >= 2)
            {
                var rows = ResultsComparison.Compare(resultFiles.Select(f => (IReadOnlyList<JsonObject>)f.Records).ToList());
                var verdicts = Verdicts.For(rows);
                if (verdicts.Count > 0)
                {
                    string from = $"{labels[^1]} against {labels[0]}";
                    html.Append($"<h3>Verdicts</h3><p class=\"note\">{E(from)}; better or worse when the change exceeds two standard errors of the difference.</p><ul class=\"verdicts\">");
                    md.AppendLine("### Verdicts").AppendLine().AppendLine($"{from}; better or worse when the change exceeds two standard errors of the difference.").AppendLine();
                    foreach (var v in verdicts)
                    {
                        html.Append($"<li class=\"{v.Direction.ToString().ToLowerInvariant()}\">{E(v.Text)}</li>");
                        md.AppendLine($"- {v.Text}");
                    }
                    html.Append("</ul>");
                    md.AppendLine();
                }
                html.Append("<div class=\"grid\">");
                foreach (var chart in ChartGroups(rows))
                {
                    string caption = chart.Rows.Any(r => r.ProtocolDiffers) ? "Protocols differ between these results: not directly comparable." : "";
                    if (chart.Log) caption = (caption + " Log scale: equal heights are equal factors (10 to 100 as 100 to 1000).").Trim();
                    if (chart.Rows.Count == 1)
                    {
                        var row = chart.Rows[0];
                        var bars = row.Values.Select((v, i) => (labels[i], v?.Value, v?.StandardError)).ToList();
                        html.Append(Figure(SvgCharts.Bars($"{row.Task}: {row.Metric}", row.Metric, bars, row.HigherIsBetter, chart.Log), caption.Length > 0 ? caption : null));
                    }
                    else
                    {
                        var values = chart.Rows.Select(r => r.Values.Select(v => (v?.Value, v?.StandardError)).ToArray()).ToList();
                        var groups = chart.Rows.Select(r => chart.ByTask ? r.Task : r.Metric).ToList();
                        html.Append(Figure(SvgCharts.GroupedBars(chart.Title, chart.ByTask ? chart.Rows[0].Metric : "", groups, labels, values, chart.Rows[0].HigherIsBetter, chart.Log),
                            (caption + " Whiskers: ±1 standard error; the values with their errors are in the table below.").Trim()));
                    }
                    charts++;
                }
                html.Append("</div>");
                html.Append("<table><tr><th>task</th><th>metric</th>");
                md.Append("| task | metric |");
                foreach (var l in labels) { html.Append($"<th>{E(l)}</th>"); md.Append($" {l} |"); }
                html.Append("<th>change</th></tr>");
                md.AppendLine(" change |").Append("| --- | --- |").Append(string.Concat(labels.Select(_ => " --- |"))).AppendLine(" --- |");
                foreach (var row in rows)
                {
                    string Value((double Value, double? StandardError)? v) => v is { } x ? $"{Num(x.Value)}{(x.StandardError is double se ? " ± " + Num(se) : "")}" : "–";
                    string change = row.Deltas.Count > 0 && row.Deltas[^1] is { } d
                        ? $"{(d.Delta >= 0 ? "+" : "")}{Num(d.Delta)}{(d.Significant ? (d.Delta > 0 == row.HigherIsBetter ? " (better)" : " (worse)") : d.StandardError is null ? (d.Delta == 0 ? "" : d.Delta > 0 == row.HigherIsBetter ? " (better; no error estimate)" : " (worse; no error estimate)") : " (within noise)")}"
                        : "–";
                    html.Append($"<tr><td>{E(row.Task)}</td><td>{E(row.Metric)}</td>{string.Concat(row.Values.Select(v => $"<td>{E(Value(v))}</td>"))}<td>{E(change)}</td></tr>");
                    md.AppendLine($"| {row.Task} | {row.Metric} |{string.Concat(row.Values.Select(v => $" {Value(v)} |"))} {change} |");
                }
                html.Append("</table><p class=\"note\">Change is the last column minus the first; “better”/“worse” when it exceeds two standard errors of the difference.</p>");
                md.AppendLine();
            }
            else
            {
                html.Append("<table><tr><th>task</th><th>metric</th><th>value</th></tr>");
                md.AppendLine("| task | metric | value |").AppendLine("| --- | --- | --- |");
                foreach (var r in resultFiles[0].Records)
                    if (r["metrics"] is JsonObject metrics)
                        foreach (var (name, m) in metrics)
                        {
                            string v = m?["value"] is JsonValue jv && jv.TryGetValue(out double d) ? Num(d) : "–";
                            html.Append($"<tr><td>{E((string?)r["task"] ?? "")}</td><td>{E(name)}</td><td>{E(v)}</td></tr>");
                            md.AppendLine($"| {(string?)r["task"]} | {name} | {v} |");
                        }
                html.Append("</table>");
                md.AppendLine();
            }
            Samples(html, md, resultFiles.Count >= 2 ? [resultFiles[0], resultFiles[^1]] : [resultFiles[0]]);
            html.Append("<details><summary>Protocols</summary>");
            foreach (var (path, label, records) in resultFiles)
                foreach (var r in records)
                    html.Append($"<h3>{E(label)} — {E((string?)r["task"] ?? "")}</h3><pre>{E(r["protocol"]?.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) ?? "")}</pre>");
            html.Append("</details></section>");
        }

        foreach (var table in o.Tables ?? []) TableSection(html, md, table);

        // Agent benchmark: pass^k by k, failure reasons and pass rates per task kind.
        var agentRuns = resultFiles.SelectMany(f => f.Records.Where(r => (string?)r["kind"] == "agent").Select(r => (f.Label, Record: r))).ToList();
        if (agentRuns.Count > 0) charts += AgentSection(html, md, agentRuns);

        // Data.
        if (corpora.Count > 0)
        {
            html.Append("<section><h2>Data</h2><div class=\"grid\">");
            md.AppendLine("## Data").AppendLine().AppendLine("| corpus | documents | median perplexity | kept band | kept |").AppendLine("| --- | --- | --- | --- | --- |");
            foreach (var c in corpora)
            {
                (double, double)? band = c.KeptLow is double lo && c.KeptHigh is double hi ? (lo, hi) : null;
                html.Append(Figure(SvgCharts.LogHistogram($"{c.Name}: perplexity per document", "perplexity (log scale)", c.Values, band),
                    c.Protocol != null ? $"Protocol: {c.Protocol}" : null));
                charts++;
                var sorted = c.Values.Order().ToList();
                double median = sorted.Count == 0 ? double.NaN : sorted[sorted.Count / 2];
                int kept = band is (double l, double h) ? c.Values.Count(v => v >= l && v <= h) : c.Values.Count;
                md.AppendLine($"| {c.Name} | {c.Values.Count} | {Num(median)} | {(band is (double l2, double h2) ? $"{Num(l2)} – {Num(h2)}" : "–")} | {kept} |");
            }
            html.Append("</div></section>");
            md.AppendLine();
        }
        if (charts == 0 && resultFiles.Count == 0 && (o.Tables ?? []).Count == 0)
            throw new ArgumentException("nothing to report: the run directories hold no metrics.jsonl, eval results or corpus_ppl.json");
        html.Append("</main></body></html>");
        string mdPath = Path.ChangeExtension(o.Output, ".md");
        AtomicFile.WriteAllText(o.Output, html.ToString());
        AtomicFile.WriteAllText(mdPath, md.ToString());
        return new ReportSummary(o.Output, mdPath, runs.Count, resultFiles.Count, charts);
    }

    static void TableSection(StringBuilder html, StringBuilder md, ReportTable t)
    {
        static string Cell(ReportCell c) => c.Text ?? (c.Value is double v ? Num(v) + (c.StandardError is double se && se > 0 ? " ± " + Num(se) : "") : "–");
        html.Append($"<section><h2>{E(t.Title)}</h2><p class=\"note\">{E(t.Note)}</p><table><tr><th>model</th>");
        html.Append(string.Concat(t.Columns.Select(c => $"<th>{E(c)}</th>"))).Append("</tr>");
        md.AppendLine($"## {t.Title}").AppendLine().AppendLine(t.Note).AppendLine()
          .AppendLine("| model |" + string.Concat(t.Columns.Select(c => $" {c} |"))).AppendLine("| --- |" + string.Concat(t.Columns.Select(_ => " --- |")));
        foreach (var row in t.Rows)
        {
            html.Append($"<tr><td>{E(row.Label)}</td>{string.Concat(row.Cells.Select(c => $"<td>{E(Cell(c))}</td>"))}</tr>");
            md.AppendLine($"| {row.Label} |" + string.Concat(row.Cells.Select(c => $" {Cell(c)} |")));
        }
        html.Append("</table>");
        md.AppendLine();
        if (t.Finding != null)
        {
            html.Append($"<p>{E(t.Finding)}</p>");
            md.AppendLine(t.Finding).AppendLine();
        }
        html.Append("</section>");
    }

    /// <summary>The agent benchmark's page: pass^k against k per result, then per result its failures by reason and its
    /// passes by task kind. Returns the number of charts.</summary>
    static int AgentSection(StringBuilder html, StringBuilder md, List<(string Label, JsonObject Record)> runs)
    {
        static double? Value(JsonObject r, string metric) => r["metrics"]?[metric]?["value"] is JsonValue v && v.TryGetValue(out double d) ? d : null;
        static int Trials(JsonObject r) => r["protocol"]?["trials"] is JsonValue v && v.TryGetValue(out int n) ? n : 1;
        string Name((string Label, JsonObject Record) run) => $"{run.Label}: {(string?)run.Record["task"]}";
        html.Append("<section><h2>Agent benchmark</h2>");
        md.AppendLine("## Agent benchmark").AppendLine();
        html.Append("<p class=\"note\">A simulated customer talks to the agent, which calls tools on a copy of the store. A trial passes when the final " +
                    "database equals the gold actions' and the agent told every required fact and made every required lookup. pass^k: the chance that all " +
                    "k trials of a task pass; pass@k: that at least one does.</p>");
        int charts = 0;
        var series = runs.Where(r => Trials(r.Record) > 1).Select(r => new SvgCharts.Series(Name(r),
            Enumerable.Range(1, Trials(r.Record)).Select(k => ((double)k, Value(r.Record, $"pass^{k}") ?? double.NaN)).Where(p => double.IsFinite(p.Item2)).ToList(), Markers: true)).ToList();
        if (series.Count > 0)
        {
            html.Append(Figure(SvgCharts.Line("pass^k: every one of k trials passes", "k (trials)", "pass^k", series),
                "A reliable agent keeps its pass^k as k grows; one that is right only sometimes falls towards zero."));
            charts++;
        }
        html.Append("<table><tr><th>result</th><th>agent</th><th>customer</th><th>tasks</th><th>trials</th><th>pass^1</th><th>pass^k (k = trials)</th><th>pass@k</th><th>failures</th></tr>");
        md.AppendLine("| result | agent | customer | tasks | trials | pass^1 | pass^k (k = trials) | pass@k | failures |").AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (var run in runs)
        {
            var r = run.Record;
            int n = Trials(r);
            string Cell(string metric)
            {
                var m = r["metrics"]?[metric];
                return m?["value"] is JsonValue v && v.TryGetValue(out double d) ? Num(d) + (m["stderr"] is JsonValue e && e.TryGetValue(out double se) ? " ± " + Num(se) : "") : "–";
            }
            string failures = r["details"]?["failure_reasons"] is JsonObject reasons && reasons.Count > 0
                ? string.Join(", ", reasons.Select(x => $"{x.Key} {x.Value}")) : "none";
            string customer = (string?)r["protocol"]?["customer"] ?? "";
            string cells = $"{Name(run)}|{(string?)r["model"]}|{customer}|{r["n"]}|{n}|{Cell("pass^1")}|{Cell($"pass^{n}")}|{Cell($"pass@{n}")}|{failures}";
            html.Append("<tr>" + string.Concat(cells.Split('|').Select(c => $"<td>{E(c)}</td>")) + "</tr>");
            md.AppendLine("| " + cells.Replace("|", " | ") + " |");
        }
        html.Append("</table>");
        md.AppendLine();
        var kinds = runs.SelectMany(r => (r.Record["details"]?["kinds"] as JsonObject)?.Select(k => k.Key) ?? []).Distinct().Order(StringComparer.Ordinal).ToList();
        if (kinds.Count > 0)
        {
            html.Append("<table><tr><th>task kind</th>" + string.Concat(runs.Select(r => $"<th>{E(Name(r))}: trials passed</th>")) + "</tr>");
            md.AppendLine("| task kind |" + string.Concat(runs.Select(r => $" {Name(r)}: trials passed |"))).AppendLine("| --- |" + string.Concat(runs.Select(_ => " --- |")));
            foreach (var kind in kinds)
            {
                var cells = runs.Select(r => r.Record["details"]?["kinds"]?[kind] is JsonObject k ? $"{k["passed"]} / {k["trials"]}" : "–").ToList();
                html.Append($"<tr><td>{E(kind)}</td>" + string.Concat(cells.Select(c => $"<td>{E(c)}</td>")) + "</tr>");
                md.AppendLine($"| {kind} |" + string.Concat(cells.Select(c => $" {c} |")));
            }
            html.Append("</table>");
            md.AppendLine();
        }
        html.Append("</section>");
        return charts;
    }

    static Run Load(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"{dir}: no such run directory");
        var train = new List<(double, double)>();
        var validation = new List<(double, double)>();
        var router = new List<RouterStep>();
        var metrics = Path.Combine(dir, "metrics.jsonl");
        if (File.Exists(metrics))
        {
            int line = 0;
            foreach (var text in File.ReadLines(metrics))
            {
                line++;
                if (text.Trim().Length == 0) continue;
                JsonNode? n;
                try { n = JsonNode.Parse(text); }
                catch (JsonException e) { throw new ModelFormatException(metrics, $"line {line}: not valid JSON: {e.Message}"); }
                if (n?["step"] is not JsonValue sv || !sv.TryGetValue(out double step)) continue;
                if (n["loss"] is JsonValue lv && lv.TryGetValue(out double loss)) train.Add((step, loss));
                if (n["val_loss"] is JsonValue vv && vv.TryGetValue(out double val)) validation.Add((step, val));
                if (n["routing"] is JsonArray layers && n["router_aux_loss"] is JsonValue av && av.TryGetValue(out double balance))
                    router.Add(new RouterStep(step, balance, n["router_z_loss"] is JsonValue zv && zv.TryGetValue(out double z) ? z : double.NaN, layers));
            }
        }
        JsonObject? summary = null;
        var summaryPath = Path.Combine(dir, "train_summary.json");
        if (File.Exists(summaryPath)) summary = JsonNode.Parse(File.ReadAllText(summaryPath)) as JsonObject;
        var results = new List<(string, string, List<JsonObject>)>();
        var candidates = Directory.GetFiles(dir, "eval*.json").Concat(Directory.Exists(Path.Combine(dir, "eval")) ? Directory.GetFiles(Path.Combine(dir, "eval"), "*.json") : []);
        foreach (var file in candidates.Order(StringComparer.Ordinal).OrderBy(f => Order(Path.GetFileNameWithoutExtension(f))))
            results.Add((file, Path.GetFileNameWithoutExtension(file).Replace("eval-", "").Replace("eval_", ""), EvalResults.Read(file)));
        var corpora = new List<CorpusScores>();
        var corpusPath = Path.Combine(dir, "corpus_ppl.json");
        if (File.Exists(corpusPath)) corpora.AddRange(ReadCorpora(corpusPath));
        return new Run(dir, Path.GetFileName(Path.GetFullPath(dir).TrimEnd('/')), train, validation, summary, results, corpora, router);
    }

    /// <summary>"before" sorts before "after", otherwise by name.</summary>
    static int Order(string name) => name.Contains("before") ? 0 : name.Contains("after") ? 2 : 1;

    public static List<CorpusScores> ReadCorpora(string path)
    {
        var root = JsonNode.Parse(File.ReadAllText(path));
        var items = root is JsonArray a ? a.ToList() : [root];
        return items.Select(n => new CorpusScores((string?)n!["name"] ?? "corpus",
            n["values"]!.AsArray().Select(v => (double)v!).ToList(), (double?)n["kept_low"], (double?)n["kept_high"], (string?)n["protocol"])).ToList();
    }

    public static JsonObject CorpusJson(CorpusScores c) => new()
    {
        ["name"] = c.Name, ["values"] = new JsonArray(c.Values.Select(v => (JsonNode)Math.Round(v, 4)).ToArray()),
        ["kept_low"] = c.KeptLow, ["kept_high"] = c.KeptHigh, ["protocol"] = c.Protocol,
    };

    static List<(double X, double Y)> Smooth(List<(double Step, double Loss)> points)
    {
        var result = new List<(double, double)>();
        for (int i = 0; i < points.Count; i++)
        {
            int from = Math.Max(0, i - 4);
            result.Add((points[i].Step, points.Skip(from).Take(i - from + 1).Average(p => p.Loss)));
        }
        return result;
    }

    /// <summary>A comparison chart: its rows, whether its groups are tasks (one metric across tasks) or metrics (one
    /// task's metrics), and whether its value axis is logarithmic.</summary>
    sealed record Chart(string Title, List<ComparisonRow> Rows, bool ByTask, bool Log);

    /// <summary>Charts for comparison rows: every task's perplexity on one log axis (values span decades: 3117 before
    /// fine-tuning, 3.1 after); a task's rates (all values in [0, 1], same direction, such as pass@k and pass^k) in
    /// one grouped chart; another metric shared by several tasks (bits per byte) in one chart across them; the rest a
    /// chart each.</summary>
    static List<Chart> ChartGroups(List<ComparisonRow> rows)
    {
        static bool Rate(ComparisonRow r) => r.HigherIsBetter && r.Values.All(v => v is not { } x || x.Value is >= 0 and <= 1);
        static bool Perplexity(ComparisonRow r) => r.Metric.Contains("perplexity", StringComparison.OrdinalIgnoreCase);
        var charts = new List<Chart>();
        var placed = new HashSet<ComparisonRow>(ReferenceEqualityComparer.Instance);
        void Add(Chart c) { charts.Add(c); placed.UnionWith(c.Rows); }
        foreach (var metric in rows.Where(Perplexity).GroupBy(r => r.Metric))
            Add(new Chart(metric.Key == "perplexity" ? "Perplexity" : metric.Key, metric.ToList(), ByTask: true, Log: true));
        foreach (var task in rows.Where(r => !placed.Contains(r)).GroupBy(r => r.Task))
        {
            var rates = task.Where(Rate).ToList();
            if (rates.Count >= 2) Add(new Chart(task.Key, rates, ByTask: false, Log: false));
        }
        foreach (var metric in rows.Where(r => !placed.Contains(r)).GroupBy(r => r.Metric))
            if (metric.Select(r => r.Task).Distinct().Count() >= 2)
                Add(new Chart(metric.Key, metric.ToList(), ByTask: true, Log: false));
        foreach (var row in rows.Where(r => !placed.Contains(r)).ToList()) Add(new Chart($"{row.Task}: {row.Metric}", [row], ByTask: false, Log: false));
        return charts;
    }

    /// <summary>Runs grouped by training stage (from train_summary.json), one chart each: runs of one stage share an
    /// axis; a run whose stage is unknown gets its own.</summary>
    static List<(string Title, List<Run> Runs)> TrainingCharts(List<Run> runs)
    {
        var charts = new List<(string, List<Run>)>();
        foreach (var group in runs.GroupBy(r => (string?)r.Summary?["stage"] ?? "\0" + r.Directory))
        {
            var members = group.ToList();
            string stage = group.Key.StartsWith('\0') ? "Training loss" : StageTitle(group.Key);
            charts.Add(($"{stage}: {string.Join(", ", members.Select(r => r.Name + Method(r)))}", members));
        }
        return charts;

        static string Method(Run r) => (string?)r.Summary?["method"] switch
        {
            null => "",
            "lora" => " (LoRA)",
            "dora" => " (DoRA)",
            "qlora" => " (QLoRA)",
            var m => $" ({m})",
        };
    }

    static string StageTitle(string stage) => stage switch
    {
        "cpt" => "Pretraining loss",
        "sft" => "Fine-tuning loss",
        _ => $"Training loss ({stage})",
    };

    static string StageName(Run r) => (string?)r.Summary?["stage"] switch
    {
        "cpt" => "pretraining",
        "sft" => "fine-tuning",
        null => "–",
        var other => other,
    } + ((string?)r.Summary?["method"] is string m ? $", {m}" : "");

    /// <summary>Answers side by side: per task, the first items the results recorded (question, reference, and each
    /// file's answer when both asked the same question).</summary>
    static void Samples(StringBuilder html, StringBuilder md, IReadOnlyList<(string Path, string Label, List<JsonObject> Records)> files)
    {
        var first = files[0];
        bool pair = files.Count > 1;
        bool heading = false;
        foreach (var record in first.Records)
        {
            string task = (string?)record["task"] ?? "";
            var samples = EvalSamples.Of(record).Take(ShownSamples).ToList();
            if (samples.Count == 0) continue;
            var other = pair ? files[1].Records.FirstOrDefault(r => (string?)r["task"] == task) is { } o ? EvalSamples.Of(o) : [] : [];
            if (!heading)
            {
                string title = pair ? $"Answers: {first.Label} and {files[1].Label}" : "Answers";
                html.Append($"<h3>{E(title)}</h3><p class=\"note\">The same questions put to both; each answer is the first the model gave, with how it was judged.</p>");
                md.AppendLine($"### {title}").AppendLine();
                heading = true;
            }
            html.Append($"<h4>{E(task)}</h4><table class=\"samples\"><tr><th>question</th><th>reference</th><th>{E(first.Label)}</th>{(pair ? $"<th>{E(files[1].Label)}</th>" : "")}</tr>");
            md.AppendLine($"#### {task}").AppendLine().AppendLine($"| question | reference | {first.Label} |{(pair ? $" {files[1].Label} |" : "")}")
                .AppendLine(pair ? "| --- | --- | --- | --- |" : "| --- | --- | --- |");
            foreach (var sample in samples)
            {
                string question = QuestionText(sample);
                var match = other.FirstOrDefault(x => (int?)x["item"] == (int?)sample["item"] && QuestionText(x) == question);
                string reference = ReferenceText(sample["reference"]);
                string before = AnswerText(sample);
                string after = !pair ? "" : match != null ? AnswerText(match) : "(not asked the same question)";
                html.Append($"<tr><td><div class=\"text\">{E(question)}</div></td><td><div class=\"text\">{E(reference)}</div></td><td><div class=\"text\">{E(before)}</div></td>");
                if (pair) html.Append($"<td><div class=\"text\">{E(after)}</div></td>");
                html.Append("</tr>");
                md.AppendLine($"| {Md(question)} | {Md(reference)} | {Md(before)} |{(pair ? $" {Md(after)} |" : "")}");
            }
            html.Append("</table>");
            md.AppendLine();
        }
    }

    const int ShownSamples = 3;

    static string QuestionText(JsonObject sample)
    {
        string question = (string?)sample["question"] ?? "";
        if (sample["choices"] is JsonArray choices)
            question += "\n" + string.Join("\n", choices.Select((c, i) => $"{(char)('A' + i)}. {(string?)c}"));
        return question;
    }

    /// <summary>A reference in words: a string as is, several acceptable ones joined by " | ", a checker's target
    /// object (facts: contains, regex, forbidden) as its fields.</summary>
    static string ReferenceText(JsonNode? reference) => reference switch
    {
        null => "–",
        JsonValue v when v.TryGetValue(out string? s) => s,
        JsonArray a => string.Join(" | ", a.Select(ReferenceText)),
        JsonObject o => string.Join("\n", o.Select(p => $"{p.Key}: {(p.Value is JsonArray list ? string.Join(", ", list.Select(ReferenceText)) : ReferenceText(p.Value))}")),
        _ => reference.ToJsonString(),
    };

    /// <summary>The answer and how it was judged: right or wrong (multiple choice), the checker's outcome and how many
    /// of the samples passed (sampled), or the scores (generate).</summary>
    static string AnswerText(JsonObject sample)
    {
        string answer = (string?)sample["answer"] ?? "";
        string judged = sample switch
        {
            _ when sample["correct"] is JsonValue c && c.TryGetValue(out bool right) => right ? "✓ right" : "✗ wrong",
            _ when sample["outcome"] is JsonValue o && o.TryGetValue(out string? outcome) =>
                $"{(outcome == "pass" ? "✓" : "✗")} {outcome}{(sample["n"] is JsonValue n && (int)n > 1 ? $"; {(int?)sample["passed"]} of {(int)n} samples passed" : "")}",
            _ when sample["scores"] is JsonObject scores => string.Join(", ", scores.Select(p => $"{p.Key} {(p.Value is JsonValue v && v.TryGetValue(out double d) ? Num(d) : "–")}")),
            _ => "",
        };
        return judged.Length == 0 ? answer : $"{answer}\n[{judged}]";
    }

    /// <summary>Text in a Markdown table cell: HTML escaped, pipes escaped, line breaks as &lt;br&gt;.</summary>
    static string Md(string text) => WebUtility.HtmlEncode(text).Replace("|", "\\|").Replace("\r", "").Replace("\n", "<br>");

    /// <summary>Mixture-of-experts runs: the load-balancing loss over the steps, each sparse layer's routing entropy, and
    /// the expert loads of the last logged step. Returns the charts drawn.</summary>
    static int RouterSection(List<Run> runs, StringBuilder html, StringBuilder md)
    {
        int charts = 0;
        var routed = runs.Where(r => r.Router.Count > 0).ToList();
        if (routed.Count == 0) return 0;
        html.Append("<h3>Routing</h3><div class=\"grid\">");
        md.AppendLine("### Routing").AppendLine();
        var balance = routed.Select(r => new SvgCharts.Series(routed.Count > 1 ? r.Name : "load balancing", r.Router.Select(x => (x.Step, x.Balance)).ToList())).ToList();
        html.Append(Figure(SvgCharts.Line("Load-balancing loss", "optimizer step", "loss (k when balanced)", balance),
            "Hugging Face's load-balancing loss over every sparse layer's tokens, before its coefficient: k (experts per token) when " +
            "the router spreads tokens evenly, up to k·E when one expert takes them all.")); charts++;
        foreach (var r in routed)
        {
            var layers = r.Router[^1].Layers.Select(l => (int?)l?["layer"] ?? -1).ToList();
            var entropy = layers.Select(layer => new SvgCharts.Series($"layer {layer}", r.Router.Select(x =>
                (x.Step, x.Layers.FirstOrDefault(l => (int?)l?["layer"] == layer)?["entropy"] is JsonValue v && v.TryGetValue(out double e) ? e : double.NaN)).ToList())).ToList();
            double max = r.Router[^1].Layers[0]?["max_entropy"] is JsonValue mv && mv.TryGetValue(out double m) ? m : double.NaN;
            html.Append(Figure(SvgCharts.Line($"{r.Name}: routing entropy", "optimizer step", "nats", entropy),
                $"Mean entropy of each sparse layer's routing distribution; ln E = {Num(max)} when the router cannot tell experts apart, 0 when it is certain.")); charts++;
        }
        html.Append("</div>");
        foreach (var r in routed)
        {
            var last = r.Router[^1];
            int experts = last.Layers[0]?["load"] is JsonArray a ? a.Count : 0;
            string header = string.Concat(Enumerable.Range(0, experts).Select(e => $"<th>expert {e}</th>"));
            // Expert-choice routing drops rows no expert took; top-k routing never does.
            bool dropping = last.Layers.Any(l => l?["dropped"] is JsonValue dv && dv.TryGetValue(out double x) && x > 0);
            html.Append($"<p class=\"note\">{E(r.Name)}: each expert's share of the routed tokens at step {Num(last.Step)} (even: {Num(100.0 / Math.Max(1, experts))}%).</p>");
            html.Append($"<table><tr><th>layer</th>{header}<th>entropy</th><th>balance loss</th>{(dropping ? "<th>tokens dropped</th>" : "")}</tr>");
            md.AppendLine($"{r.Name}: expert loads at step {Num(last.Step)}").AppendLine()
              .AppendLine("| layer | " + string.Join(" | ", Enumerable.Range(0, experts).Select(e => $"expert {e}")) + " | entropy | balance loss |" + (dropping ? " tokens dropped |" : ""))
              .AppendLine("| --- |" + string.Concat(Enumerable.Repeat(" --- |", experts + 2 + (dropping ? 1 : 0))));
            foreach (var layer in last.Layers)
            {
                var loads = (layer?["load"] as JsonArray ?? []).Select(v => (double?)v ?? double.NaN).Select(v => $"{v * 100:0.0}%").ToList();
                string entropy = Num((double?)layer?["entropy"] ?? double.NaN), loss = Num((double?)layer?["balance_loss"] ?? double.NaN);
                string dropped = dropping ? $"{((double?)layer?["dropped"] ?? 0) * 100:0.0}%" : "";
                html.Append($"<tr><td>{layer?["layer"]}</td>{string.Concat(loads.Select(l => $"<td>{l}</td>"))}<td>{entropy}</td><td>{loss}</td>{(dropping ? $"<td>{dropped}</td>" : "")}</tr>");
                md.AppendLine($"| {layer?["layer"]} | {string.Join(" | ", loads)} | {entropy} | {loss} |" + (dropping ? $" {dropped} |" : ""));
            }
            html.Append("</table>");
            md.AppendLine();
        }
        return charts;
    }

    static string Figure(string svg, string? caption) =>
        svg.Length == 0 ? "" : $"<figure>{svg}{(caption != null ? $"<figcaption>{E(caption)}</figcaption>" : "")}</figure>";

    static string Num(double v) => double.IsFinite(v)
        ? Math.Abs(v) >= 1000 ? v.ToString("0", CultureInfo.InvariantCulture) : v.ToString("0.####", CultureInfo.InvariantCulture)
        : "–";

    static string E(string s) => WebUtility.HtmlEncode(s);

    const string Css = """
        body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f8fafc;color:#0f172a}
        main{max-width:1340px;margin:0 auto;padding:24px}
        h1{margin:0 0 4px}h2{border-bottom:1px solid #cbd5e1;padding-bottom:4px;margin-top:32px}
        .meta,.note{color:#475569;font-size:14px}
        section{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:8px 20px 16px;margin-top:20px}
        .grid{display:flex;flex-wrap:wrap;gap:12px}
        figure{margin:8px 0}figcaption{font-size:13px;color:#475569;max-width:640px}
        svg{background:#fff;max-width:100%;height:auto}
        svg .title{font-size:14px;font-weight:600;fill:#0f172a}svg .tick{font-size:11px;fill:#475569}
        svg .label{font-size:12px;fill:#334155}svg .legend{font-size:12px;fill:#0f172a}svg .value{font-size:11px;fill:#0f172a}
        svg .grid{stroke:#e2e8f0;stroke-width:1}svg .axis{stroke:#64748b;stroke-width:1}svg .whisker{stroke:#0f172a;stroke-width:1.5}
        table{border-collapse:collapse;margin:12px 0;font-size:14px}th,td{border:1px solid #e2e8f0;padding:4px 10px;text-align:left}
        th{background:#f1f5f9}pre{background:#f1f5f9;padding:8px;overflow:auto;font-size:12px}
        ul.verdicts{padding-left:20px}ul.verdicts li{margin:4px 0}ul.verdicts li.better::marker{color:#16a34a}ul.verdicts li.worse::marker{color:#dc2626}
        ul.verdicts li.better{color:#14532d}ul.verdicts li.worse{color:#7f1d1d}
        table.samples td{vertical-align:top;max-width:420px}table.samples .text{white-space:pre-wrap;max-height:240px;overflow:auto;font-size:13px}
        """;
}
