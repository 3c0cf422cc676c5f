using System.CommandLine;
using Hone.Evaluation.Report;

namespace Hone.Cli.Commands;

internal static class ReportCommand
{
    public static Command Create()
    {
        var runs = new Argument<string[]>("runs") { Description = "run directories (metrics.jsonl, train_summary.json, eval*.json or eval/*.json, corpus_ppl.json)", Arity = ArgumentArity.OneOrMore };
        var output = new Option<string>("--out", "-o") { Description = "the HTML file (a Markdown summary is written next to it)", DefaultValueFactory = _ => "report.html" };
        var title = new Option<string>("--title") { Description = "page title", DefaultValueFactory = _ => "Hone report" };
        var results = new Option<string[]>("--results") { Description = "more eval results files to compare (in order)", AllowMultipleArgumentsPerToken = true };
        var cmd = new Command("report",
            "Write one self-contained HTML page (inline SVG) and a Markdown summary from run directories: a verdict per metric (what " +
            "changed from the first results to the last, and whether beyond 2 standard errors), loss curves with a chart per training " +
            "stage, before/after metric bars with standard errors (perplexity on a log axis), answers to the same questions before " +
            "and after, and corpus perplexity distributions with the kept band.")
        {
            runs, output, title, results,
        };
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            var summary = RunReport.Write(new ReportOptions(r.GetValue(runs)!, r.GetValue(output)!, r.GetValue(title)!, r.GetValue(results)));
            Console.WriteLine($"wrote {summary.HtmlPath} and {summary.MarkdownPath} ({summary.Runs} runs, {summary.ResultFiles} results files, {summary.Charts} charts)");
            return 0;
        }));
        return cmd;
    }
}
