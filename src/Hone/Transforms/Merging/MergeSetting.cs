using System.Globalization;
using Hone.Formats;

namespace Hone.Transforms.Merging;

/// <summary>
/// A numeric merge parameter as mergekit's configurations give it: a number; a gradient (a list of numbers,
/// interpolated across the layers); or a list of conditions ({filter: self_attn, value: …}, …, {value: …}) where the
/// first whose filter is a substring of the tensor's Hugging Face name (or that has no filter) gives the value.
/// </summary>
public sealed class MergeSetting
{
    readonly double? _number;
    readonly double[]? _gradient;
    readonly IReadOnlyList<(string? Filter, MergeSetting Value)>? _conditions;

    MergeSetting(double? number, double[]? gradient, IReadOnlyList<(string?, MergeSetting)>? conditions)
    {
        _number = number; _gradient = gradient; _conditions = conditions;
    }

    public static MergeSetting Of(double value) => new(value, null, null);

    /// <summary>A gradient: values spread evenly over t ∈ [0, 1].</summary>
    public static MergeSetting Gradient(params double[] values) =>
        values.Length > 0 ? new(null, values, null) : throw new ArgumentException("a gradient needs at least one value");

    public static MergeSetting Filtered(IReadOnlyList<(string? Filter, MergeSetting Value)> conditions) => new(null, null, conditions);

    /// <summary>
    /// The value for a tensor at position <paramref name="t"/> ∈ [0, 1] (mergekit's evaluate_setting): a gradient of n
    /// values is read at x = t·(n − 1), linearly between values ⌊x⌋ and min(⌊x⌋ + 1, n − 1); null when no condition
    /// matches.
    /// </summary>
    public double? Evaluate(string tensorName, double t)
    {
        if (_number is double v) return v;
        if (_gradient is { } g)
        {
            double scaled = t * (g.Length - 1);
            int i0 = (int)Math.Floor(scaled);
            i0 = Math.Clamp(i0, 0, g.Length - 1);
            int i1 = Math.Min(g.Length - 1, i0 + 1);
            double fraction = scaled - i0;
            return (1 - fraction) * g[i0] + fraction * g[i1];
        }
        foreach (var (filter, value) in _conditions!)
            if (filter == null || tensorName.Contains(filter, StringComparison.Ordinal))
                return value.Evaluate(tensorName, t);
        return null;
    }

    /// <summary>
    /// mergekit's position of a tensor along the model: layer l of L at l/(L − 1) (1 for a one-layer model), the
    /// embedding before the layers at 0, the final norm and output head after them at 1.
    /// </summary>
    public static double Position(int layer, int layers, bool afterLayers) =>
        layer < 0 ? (afterLayers ? 1 : 0) : layers > 1 ? (double)layer / (layers - 1) : 1;

    /// <summary>A setting from its configuration node: a number, a list of numbers, or a list of filter/value mappings.</summary>
    public static MergeSetting Read(ConfigNode node, string key)
    {
        if (node.Entries != null) throw node.Error($"{key} must be a number, a list of numbers (a gradient across the layers) or a list of filter/value conditions");
        if (node.Items == null) return Of(Number(node, key));
        if (node.Items.Count == 0) throw node.Error($"{key}: an empty list gives no value");
        if (node.Items.All(i => i.Entries == null && i.Items == null))
            return Gradient(node.Items.Select(i => Number(i, $"an item of {key}")).ToArray());
        var conditions = new List<(string?, MergeSetting)>();
        foreach (var item in node.Items)
        {
            var entry = item.Mapping($"a condition of {key}", ["filter", "value"]);
            if (!entry.TryGetValue("value", out var value)) throw item.Error($"a condition of {key} needs a value");
            string? filter = entry.TryGetValue("filter", out var f) && !f.IsNull ? f.Text("filter") : null;
            conditions.Add((filter, Read(value, key)));
        }
        return Filtered(conditions);
    }

    static double Number(ConfigNode node, string key)
    {
        if (node.IsNull) throw node.Error($"{key} has no value");
        string text = node.Text(key);
        if (text is "true" or "True") return 1;
        if (text is "false" or "False") return 0;
        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v)
            ? v : throw node.Error($"{key} must be a number, not '{text}'");
    }

    public override string ToString() =>
        _number is double v ? v.ToString(CultureInfo.InvariantCulture)
        : _gradient != null ? $"[{string.Join(", ", _gradient.Select(x => x.ToString(CultureInfo.InvariantCulture)))}]"
        : string.Join("; ", _conditions!.Select(c => $"{c.Filter ?? "*"}: {c.Value}"));
}
