using System.Globalization;

namespace Hone.Formats;

/// <summary>Numeric bounds and their messages, shared by the settings table and the CLI's own options.</summary>
public static class Limits
{
    /// <summary>"1 to 256", "at least 0", "in (0, 1]", or null when unbounded.</summary>
    public static string? Text(double min, double max, bool minExclusive = false, bool maxExclusive = false)
    {
        bool low = !double.IsNegativeInfinity(min), high = !double.IsPositiveInfinity(max);
        if (!low && !high) return null;
        if (low && high)
            return !minExclusive && !maxExclusive ? $"{Number(min)} to {Number(max)}"
                : $"in {(minExclusive ? "(" : "[")}{Number(min)}, {Number(max)}{(maxExclusive ? ")" : "]")}";
        return low ? (minExclusive ? $"above {Number(min)}" : $"at least {Number(min)}") : (maxExclusive ? $"below {Number(max)}" : $"at most {Number(max)}");
    }

    /// <summary>Null when <paramref name="value"/> is within the bounds (and finite), else "must be …, found …".</summary>
    public static string? Violation(double value, double min, double max, bool minExclusive = false, bool maxExclusive = false, string? reason = null)
    {
        if (!double.IsFinite(value)) return $"must be a finite number, found {Number(value)}";
        bool below = minExclusive ? value <= min : value < min;
        bool above = maxExclusive ? value >= max : value > max;
        return below || above ? $"must be {Text(min, max, minExclusive, maxExclusive)}{(reason != null ? $" ({reason})" : "")}, found {Number(value)}" : null;
    }

    public static string Number(double x) => x.ToString("G", CultureInfo.InvariantCulture);
}
