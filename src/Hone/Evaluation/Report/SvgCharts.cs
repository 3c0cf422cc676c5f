using System.Globalization;
using System.Net;
using System.Text;

namespace Hone.Evaluation.Report;

/// <summary>Small, dependency-free SVG charts (line, grouped bars with error bars, histogram) for the HTML report.</summary>
public static class SvgCharts
{
    public static readonly string[] Palette = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#65a30d", "#db2777"];

    public sealed record Series(string Name, IReadOnlyList<(double X, double Y)> Points, bool Markers = false, bool Dashed = false);

    const int Width = 640, Height = 300, Left = 60, Right = 16, Top = 30, Bottom = 44;

    static string F(double v) => v.ToString("0.##", CultureInfo.InvariantCulture);
    static string E(string s) => WebUtility.HtmlEncode(s);

    /// <summary>"Nice" tick values covering [min, max].</summary>
    public static List<double> Ticks(double min, double max, int count = 5)
    {
        if (!(max > min)) { max = min + 1; }
        double raw = (max - min) / count, magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = new[] { 1, 2, 2.5, 5, 10 }.Select(m => m * magnitude).First(s => s >= raw);
        var ticks = new List<double>();
        for (double t = Math.Ceiling(min / step) * step; t <= max + step * 1e-9; t += step) ticks.Add(Math.Round(t, 12));
        return ticks;
    }

    /// <summary>Ticks for a log10 axis covering [min, max] (both positive): every power of ten from the decade at or
    /// below min to the one at or above max (1, 10, 100, 1000 …), with 2 and 5 between them when two decades or fewer
    /// are spanned (a short axis would otherwise have two ticks).</summary>
    public static List<double> LogTicks(double min, double max)
    {
        if (!(min > 0) || !(max >= min)) throw new ArgumentException($"a log axis needs 0 < min ≤ max, got {min} and {max}");
        int a = (int)Math.Floor(Math.Log10(min) + 1e-9), b = (int)Math.Ceiling(Math.Log10(max) - 1e-9);
        if (b <= a) b = a + 1;
        var ticks = new List<double>();
        for (int k = a; k <= b; k++)
        {
            double decade = Decade(k);
            ticks.Add(decade);
            if (b - a <= 2 && k < b) { ticks.Add(Math.Round(2 * decade, 12)); ticks.Add(Math.Round(5 * decade, 12)); }
        }
        return ticks;
    }

    /// <summary>10^k exactly as written in decimal (Math.Pow(10, -3) is not 0.001).</summary>
    static double Decade(int k) => k >= 0 ? Math.Pow(10, k) : double.Parse("1e" + k.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);

    static string Label(double v)
    {
        double a = Math.Abs(v);
        if (a < 1e-12) return "0"; // never "-0"
        if (a != 0 && (a >= 1e5 || a < 1e-3)) return v.ToString("0.#E0", CultureInfo.InvariantCulture);
        return v.ToString(a >= 100 ? "0" : a >= 10 ? "0.#" : "0.###", CultureInfo.InvariantCulture);
    }

    static void Frame(StringBuilder sb, string title, string xLabel, string yLabel, List<double> xTicks, Func<double, double> sx,
        List<double> yTicks, Func<double, double> sy, Func<double, string>? xText = null)
    {
        sb.Append($"<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {Width} {Height}\" width=\"{Width}\" height=\"{Height}\" role=\"img\" aria-label=\"{E(title)}\">");
        sb.Append($"<text x=\"{Width / 2}\" y=\"18\" text-anchor=\"middle\" class=\"title\">{E(title)}</text>");
        foreach (var t in yTicks)
        {
            double y = sy(t);
            sb.Append($"<line x1=\"{Left}\" x2=\"{Width - Right}\" y1=\"{F(y)}\" y2=\"{F(y)}\" class=\"grid\"/>");
            sb.Append($"<text x=\"{Left - 6}\" y=\"{F(y + 4)}\" text-anchor=\"end\" class=\"tick\">{E(Label(t))}</text>");
        }
        foreach (var t in xTicks)
        {
            double x = sx(t);
            sb.Append($"<line x1=\"{F(x)}\" x2=\"{F(x)}\" y1=\"{Height - Bottom}\" y2=\"{Height - Bottom + 4}\" class=\"axis\"/>");
            sb.Append($"<text x=\"{F(x)}\" y=\"{Height - Bottom + 16}\" text-anchor=\"middle\" class=\"tick\">{E(xText?.Invoke(t) ?? Label(t))}</text>");
        }
        sb.Append($"<line x1=\"{Left}\" x2=\"{Width - Right}\" y1=\"{Height - Bottom}\" y2=\"{Height - Bottom}\" class=\"axis\"/>");
        sb.Append($"<line x1=\"{Left}\" x2=\"{Left}\" y1=\"{Top}\" y2=\"{Height - Bottom}\" class=\"axis\"/>");
        sb.Append($"<text x=\"{(Left + Width - Right) / 2}\" y=\"{Height - 6}\" text-anchor=\"middle\" class=\"label\">{E(xLabel)}</text>");
        sb.Append($"<text x=\"14\" y=\"{(Top + Height - Bottom) / 2}\" text-anchor=\"middle\" class=\"label\" transform=\"rotate(-90 14 {(Top + Height - Bottom) / 2})\">{E(yLabel)}</text>");
    }

    static void Legend(StringBuilder sb, IReadOnlyList<string> names)
    {
        double x = Left + 8;
        for (int i = 0; i < names.Count; i++)
        {
            sb.Append($"<rect x=\"{F(x)}\" y=\"{Top + 2}\" width=\"10\" height=\"10\" fill=\"{Palette[i % Palette.Length]}\"/>");
            sb.Append($"<text x=\"{F(x + 14)}\" y=\"{Top + 11}\" class=\"legend\">{E(names[i])}</text>");
            x += 24 + 6.5 * names[i].Length;
        }
    }

    public static string Line(string title, string xLabel, string yLabel, IReadOnlyList<Series> series)
    {
        var all = series.SelectMany(s => s.Points).Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).ToList();
        if (all.Count == 0) return "";
        double x0 = all.Min(p => p.X), x1 = all.Max(p => p.X), y0 = all.Min(p => p.Y), y1 = all.Max(p => p.Y);
        double pad = (y1 - y0) * 0.08 + 1e-9;
        bool nonNegative = y0 >= 0;
        y0 -= pad;
        if (nonNegative && y0 < 0) y0 = 0;
        y1 += pad;
        var xTicks = Ticks(x0, x1); var yTicks = Ticks(y0, y1);
        double xa = Math.Min(x0, xTicks.First()), xb = Math.Max(x1, xTicks.Last()), ya = Math.Min(y0, yTicks.First()), yb = Math.Max(y1, yTicks.Last());
        double Sx(double v) => Left + (v - xa) / Math.Max(xb - xa, 1e-12) * (Width - Left - Right);
        double Sy(double v) => Height - Bottom - (v - ya) / Math.Max(yb - ya, 1e-12) * (Height - Top - Bottom);
        var sb = new StringBuilder();
        Frame(sb, title, xLabel, yLabel, xTicks, Sx, yTicks, Sy);
        for (int i = 0; i < series.Count; i++)
        {
            var s = series[i];
            string color = Palette[i % Palette.Length];
            var pts = s.Points.Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).ToList();
            if (pts.Count > 1)
                sb.Append($"<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{(s.Dashed ? " stroke-dasharray=\"6 4\"" : "")} points=\"{string.Join(" ", pts.Select(p => $"{F(Sx(p.X))},{F(Sy(p.Y))}"))}\"/>");
            if (s.Markers || pts.Count == 1)
                foreach (var p in pts) sb.Append($"<circle cx=\"{F(Sx(p.X))}\" cy=\"{F(Sy(p.Y))}\" r=\"3.5\" fill=\"{color}\"><title>{E(s.Name)}: {E(Label(p.Y))} at {E(Label(p.X))}</title></circle>");
        }
        Legend(sb, series.Select(s => s.Name).ToList());
        sb.Append("</svg>");
        return sb.ToString();
    }

    /// <summary>Bars for one metric across result sets, with ±1 standard error whiskers and value labels.</summary>
    public static string Bars(string title, string yLabel, IReadOnlyList<(string Name, double? Value, double? Error)> bars, bool higherIsBetter,
        bool logScale = false) =>
        GroupedBars(title, yLabel, bars.Select(b => b.Name).ToList(), [""], bars.Select(b => new[] { (b.Value, b.Error) }).ToArray(), higherIsBetter, logScale);

    /// <summary>Grouped bars: one group per x label, one colored bar per series inside it (a legend when there are
    /// several series), ±1 standard error whiskers and value labels above the whiskers.</summary>
    /// <param name="values">[group][series] value and standard error (null: missing)</param>
    /// <param name="logScale">a log10 value axis with ticks at powers of ten, for quantities that span decades
    /// (perplexity 3117 before and 3.1 after); bars rise from the lowest decade. Needs positive values (else linear).</param>
    public static string GroupedBars(string title, string yLabel, IReadOnlyList<string> groups, IReadOnlyList<string> series,
        IReadOnlyList<(double? Value, double? Error)[]> values, bool higherIsBetter, bool logScale = false)
    {
        var present = values.SelectMany(g => g).Where(b => b.Value is double v && double.IsFinite(v)).ToList();
        if (present.Count == 0) return "";
        double Err((double? Value, double? Error) b) => b.Error is double e && double.IsFinite(e) ? e : 0;
        double top = present.Max(b => b.Value!.Value + Err(b)), bottom = Math.Min(0, present.Min(b => b.Value!.Value - Err(b)));
        logScale &= present.All(b => b.Value > 0);
        List<double> yTicks;
        Func<double, double> Sy;
        double ya;
        if (logScale)
        {
            // Whiskers reaching to zero or below are cut at the axis' foot.
            double low = present.Min(b => b.Value!.Value - Err(b) > 0 ? b.Value!.Value - Err(b) : b.Value!.Value);
            yTicks = LogTicks(low, top);
            double la = Math.Log10(yTicks.First()), lb = Math.Log10(yTicks.Last());
            lb += (lb - la) * 0.12; // headroom for the value labels
            ya = yTicks.First();
            Sy = v => Height - Bottom - (Math.Log10(Math.Max(v, ya)) - la) / (lb - la) * (Height - Top - Bottom);
            title += " — log scale";
        }
        else
        {
            if (top - bottom < 1e-9) top = bottom + 1; // all zero: still draw a sensible axis
            yTicks = Ticks(bottom, top * 1.15);
            // Headroom above the tallest whisker for its label.
            double a = Math.Min(bottom, yTicks.First()), b = Math.Max(top + (top - a) * 0.12, yTicks.Last());
            ya = a;
            Sy = v => Height - Bottom - (v - a) / Math.Max(b - a, 1e-12) * (Height - Top - Bottom);
        }
        double slot = (double)(Width - Left - Right) / groups.Count;
        double barWidth = Math.Min(series.Count == 1 ? 80 : 56, slot * 0.8 / series.Count);
        var sb = new StringBuilder();
        Frame(sb, title + (higherIsBetter ? " (higher is better)" : " (lower is better)"), "", yLabel, [], _ => 0, yTicks, Sy);
        if (series.Count > 1) Legend(sb, series);
        for (int g = 0; g < groups.Count; g++)
        {
            double center = Left + slot * (g + 0.5);
            sb.Append($"<text x=\"{F(center)}\" y=\"{Height - Bottom + 16}\" text-anchor=\"middle\" class=\"tick\">{E(groups[g])}</text>");
            for (int k = 0; k < series.Count; k++)
            {
                var (value, error) = values[g][k];
                if (value is not double v || !double.IsFinite(v)) continue;
                double cx = center + (k - (series.Count - 1) / 2.0) * barWidth * 1.1;
                string color = Palette[(series.Count == 1 ? g : k) % Palette.Length];
                string name = series.Count == 1 ? groups[g] : $"{groups[g]}, {series[k]}";
                double y = Sy(v), zero = Sy(logScale ? ya : Math.Max(ya, 0)), labelY = Math.Min(y, zero);
                sb.Append($"<rect x=\"{F(cx - barWidth / 2)}\" y=\"{F(Math.Min(y, zero))}\" width=\"{F(barWidth)}\" height=\"{F(Math.Abs(zero - y))}\" fill=\"{color}\" opacity=\"0.85\"><title>{E(name)}: {E(Label(v))}</title></rect>");
                if (error is double e && e > 0 && double.IsFinite(e))
                {
                    double ey0 = Sy(v - e), ey1 = Sy(v + e), w = Math.Min(6, barWidth / 3);
                    sb.Append($"<line x1=\"{F(cx)}\" x2=\"{F(cx)}\" y1=\"{F(ey0)}\" y2=\"{F(ey1)}\" class=\"whisker\"/>");
                    sb.Append($"<line x1=\"{F(cx - w)}\" x2=\"{F(cx + w)}\" y1=\"{F(ey0)}\" y2=\"{F(ey0)}\" class=\"whisker\"/><line x1=\"{F(cx - w)}\" x2=\"{F(cx + w)}\" y1=\"{F(ey1)}\" y2=\"{F(ey1)}\" class=\"whisker\"/>");
                    labelY = Math.Min(labelY, ey1);
                }
                // Grouped bars are narrow: their label is the value alone (the error is in the table and the tooltip).
                string label = Label(v) + (series.Count == 1 && error is double se && se > 0 ? " ± " + Label(se) : "");
                sb.Append($"<text x=\"{F(cx)}\" y=\"{F(Math.Max(Top + 12, labelY - 5))}\" text-anchor=\"middle\" class=\"value\">{E(label)}</text>");
            }
        }
        sb.Append("</svg>");
        return sb.ToString();
    }

    /// <summary>Histogram of values on a log10 axis (perplexities span decades), with an optional kept band shaded.</summary>
    public static string LogHistogram(string title, string xLabel, IReadOnlyList<double> values, (double Low, double High)? band, int bins = 40)
    {
        var logs = values.Where(v => v > 0 && double.IsFinite(v)).Select(Math.Log10).ToList();
        if (logs.Count == 0) return "";
        double a = logs.Min(), b = logs.Max();
        if (b - a < 1e-9) { a -= 0.5; b += 0.5; }
        var counts = new int[bins];
        foreach (var l in logs) counts[Math.Min(bins - 1, (int)((l - a) / (b - a) * bins))]++;
        double Sx(double v) => Left + (v - a) / (b - a) * (Width - Left - Right);
        var yTicks = Ticks(0, counts.Max());
        double yb = Math.Max(counts.Max(), yTicks.Last());
        double Sy(double v) => Height - Bottom - v / Math.Max(yb, 1) * (Height - Top - Bottom);
        var xTicks = Ticks(a, b, 6);
        var sb = new StringBuilder();
        Frame(sb, title, xLabel, "documents", xTicks.Where(t => t >= a && t <= b).ToList(), Sx, yTicks, Sy, t => Label(Math.Pow(10, t)));
        if (band is (double lo, double hi) && lo > 0 && hi > lo)
        {
            double x0 = Sx(Math.Clamp(Math.Log10(lo), a, b)), x1 = Sx(Math.Clamp(Math.Log10(hi), a, b));
            sb.Append($"<rect x=\"{F(x0)}\" y=\"{Top}\" width=\"{F(Math.Max(0, x1 - x0))}\" height=\"{Height - Top - Bottom}\" fill=\"#16a34a\" opacity=\"0.12\"/>");
            sb.Append($"<text x=\"{F((x0 + x1) / 2)}\" y=\"{Top + 12}\" text-anchor=\"middle\" class=\"legend\">kept {E(Label(lo))} – {E(Label(hi))}</text>");
        }
        double w = (double)(Width - Left - Right) / bins;
        for (int i = 0; i < bins; i++)
        {
            if (counts[i] == 0) continue;
            double binStart = a + (b - a) * i / bins, mid = Math.Pow(10, binStart + (b - a) / bins / 2);
            bool kept = band is not (double l, double h) || (mid >= l && mid <= h);
            sb.Append($"<rect x=\"{F(Left + i * w + 0.5)}\" y=\"{F(Sy(counts[i]))}\" width=\"{F(w - 1)}\" height=\"{F(Height - Bottom - Sy(counts[i]))}\" fill=\"{(kept ? Palette[0] : "#9ca3af")}\"><title>{counts[i]} around {E(Label(mid))}</title></rect>");
        }
        sb.Append("</svg>");
        return sb.ToString();
    }
}
