using System.Globalization;

namespace Hone.Evaluation.Report;

/// <summary>Which way a metric moved: better or worse (beyond noise, or with no error estimate to judge by), or no clear change.</summary>
public enum VerdictDirection { Unclear, Better, Worse }

public sealed record Verdict(string Task, string Metric, string Text, VerdictDirection Direction);

/// <summary>
/// One line per metric saying what changed from the first results to the last, in words: "domain perplexity improved
/// 3117 → 3.13 (−99.9%, ÷996), beyond 2 standard errors"; "general perplexity worsened 5.9 → 8.04 (+36%), beyond 2
/// standard errors: forgetting". A change is called better or worse when it exceeds two standard errors of the
/// difference (√(se₁² + se₂²)); within them it is "no clear change". Without standard errors (one document) the
/// direction is given and the missing error estimate said, and a change under 1% (rates: under 0.01) is "about
/// unchanged". Rates in [0, 1] (accuracy, pass@k) change by points, everything else by percent. A worse result on a
/// task named "general…" is the forgetting fine-tuning can cause. A task whose metrics all kept one value gets one line.
/// </summary>
public static class Verdicts
{
    /// <summary>Relative change (rates: absolute) below which a change without a standard error reads "about unchanged".</summary>
    public const double SmallChange = 0.01;

    public static List<Verdict> For(IEnumerable<ComparisonRow> rows)
    {
        var verdicts = new List<Verdict>();
        foreach (var task in rows.GroupBy(r => r.Task))
        {
            var same = task.Select(r => r.Values.Count >= 2 && r.Values[0] is { } a && r.Values[^1] is { } b && a.Value == b.Value ? a.Value : (double?)null).ToList();
            if (same.Count > 1 && same.All(v => v != null) && same.Distinct().Count() == 1 && !task.Any(r => r.ProtocolDiffers))
            {
                string metrics = string.Join(", ", task.Select(r => r.Metric));
                verdicts.Add(new(task.Key, metrics, $"{task.Key.Replace('_', ' ')}: {metrics} unchanged at {Number(same[0]!.Value)}", VerdictDirection.Unclear));
            }
            else verdicts.AddRange(task.Select(Of).OfType<Verdict>());
        }
        return verdicts;
    }

    /// <summary>The verdict from the first value to the last, or null when either is missing.</summary>
    public static Verdict? Of(ComparisonRow row)
    {
        if (row.Values.Count < 2 || row.Values[0] is not { } first || row.Values[^1] is not { } last) return null;
        double a = first.Value, b = last.Value;
        string name = Name(row.Task, row.Metric);
        string protocol = row.ProtocolDiffers ? " (the protocols differ: not directly comparable)" : "";
        if (a == b) return new(row.Task, row.Metric, $"{name} unchanged at {Number(a)}{protocol}", VerdictDirection.Unclear);
        bool better = b > a == row.HigherIsBetter;
        string change = Change(a, b, IsRate(row));
        var delta = row.Deltas[^1];
        string text;
        VerdictDirection direction;
        if (delta?.StandardError is double se && se > 0)
        {
            if (delta.Value.Significant)
            {
                direction = better ? VerdictDirection.Better : VerdictDirection.Worse;
                text = $"{name} {(better ? "improved" : "worsened")} {Number(a)} → {Number(b)} ({change}), beyond 2 standard errors";
            }
            else
            {
                direction = VerdictDirection.Unclear;
                text = $"{name}: no clear change, {Number(a)} → {Number(b)} ({change}), within 2 standard errors";
            }
        }
        else if ((IsRate(row) || a == 0 ? Math.Abs(b - a) : Math.Abs(b - a) / Math.Abs(a)) < SmallChange)
        {
            direction = VerdictDirection.Unclear;
            text = $"{name} about unchanged, {Number(a)} → {Number(b)} ({change}); no standard error to judge it against noise";
        }
        else
        {
            direction = better ? VerdictDirection.Better : VerdictDirection.Worse;
            text = $"{name} {(better ? "improved" : "worsened")} {Number(a)} → {Number(b)} ({change}); no standard error to judge it against noise";
        }
        if (direction == VerdictDirection.Worse && IsGeneral(row.Task)) text += ": forgetting";
        return new(row.Task, row.Metric, text + protocol, direction);
    }

    /// <summary>"domain_perplexity" + "perplexity" → "domain perplexity"; "domain_task" + "pass@1" → "domain task: pass@1".</summary>
    public static string Name(string task, string metric)
    {
        string words = task.Replace('_', ' ');
        return words.Contains(metric.Replace('_', ' '), StringComparison.OrdinalIgnoreCase) ? words : $"{words}: {metric}";
    }

    static bool IsRate(ComparisonRow row) => row.HigherIsBetter && row.Values.All(v => v is not { } x || x.Value is >= 0 and <= 1);

    static bool IsGeneral(string task) =>
        task.Split(['_', '-', ' ', ':', '.'], StringSplitOptions.RemoveEmptyEntries).Any(w => w.Equals("general", StringComparison.OrdinalIgnoreCase));

    /// <summary>Rates by their difference; other values by percent, with the factor when it is 2 or more.</summary>
    static string Change(double a, double b, bool rate)
    {
        if (rate || a == 0) return Signed(b - a, Number(Math.Abs(b - a)));
        double percent = (b - a) / Math.Abs(a) * 100, m = Math.Abs(percent);
        string text = Signed(percent, m.ToString(m < 1 ? "0.##" : m < 10 ? "0.#" : m < 99 ? "0" : m < 100 ? "0.#" : "0", CultureInfo.InvariantCulture) + "%");
        if (a > 0 && b > 0)
        {
            double factor = Math.Max(a, b) / Math.Min(a, b);
            if (factor >= 2) text += $", {(b > a ? "×" : "÷")}{factor.ToString(factor < 10 ? "0.#" : "0", CultureInfo.InvariantCulture)}";
        }
        return text;
    }

    static string Signed(double delta, string magnitude) => (delta < 0 ? "−" : "+") + magnitude;

    /// <summary>Three significant digits, whole numbers from 100 up: 3117, 3.13, 0.417, 0.05.</summary>
    public static string Number(double v)
    {
        if (!double.IsFinite(v)) return "–";
        return Math.Abs(v) >= 100 ? v.ToString("0", CultureInfo.InvariantCulture) : v.ToString("G3", CultureInfo.InvariantCulture);
    }
}
