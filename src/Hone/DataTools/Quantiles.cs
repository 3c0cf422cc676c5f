namespace Hone.DataTools;

/// <summary>Summary of a length (or any) distribution. Quantiles are exact (all values kept, then sorted), linearly
/// interpolated between order statistics as NumPy's default ("type 7") does.</summary>
public sealed record Distribution(long Count, double Min, double Median, double P90, double Max, double Mean)
{
    public static Distribution? Of(NumberColumn values)
    {
        if (values.Count == 0) return null;
        var sorted = values.ToSortedArray();
        double sum = 0;
        foreach (var v in sorted) sum += v;
        return new Distribution(sorted.Length, sorted[0], Quantiles.OfSorted(sorted, 0.5), Quantiles.OfSorted(sorted, 0.9), sorted[^1], sum / sorted.Length);
    }
}

public static class Quantiles
{
    /// <summary>The q-quantile of ascending values: position q·(n−1), interpolating between its neighbours.</summary>
    public static double OfSorted(ReadOnlySpan<double> sorted, double q)
    {
        if (sorted.Length == 0) throw new ArgumentException("no values");
        if (q is < 0 or > 1 || double.IsNaN(q)) throw new ArgumentOutOfRangeException(nameof(q), "a quantile is between 0 and 1");
        double position = q * (sorted.Length - 1);
        int below = (int)Math.Floor(position);
        if (below >= sorted.Length - 1) return sorted[^1];
        double fraction = position - below;
        return sorted[below] + fraction * (sorted[below + 1] - sorted[below]);
    }
}

/// <summary>
/// Numbers appended one at a time, kept in 64K-value chunks so growing never copies or needs one large block;
/// 8 bytes a value. Exact quantiles of a streamed column cost this much and no more: the records themselves are
/// never kept.
/// </summary>
public sealed class NumberColumn
{
    const int ChunkSize = 1 << 16;
    readonly List<double[]> _chunks = [];
    int _used = ChunkSize;

    public long Count { get; private set; }

    public void Add(double value)
    {
        if (_used == ChunkSize) { _chunks.Add(new double[ChunkSize]); _used = 0; }
        _chunks[^1][_used++] = value;
        Count++;
    }

    /// <summary>All values, sorted ascending, in one new array (the chunks are released as they are copied).</summary>
    public double[] ToSortedArray()
    {
        var all = new double[Count];
        long at = 0;
        for (int c = 0; c < _chunks.Count; c++)
        {
            int n = (int)Math.Min(ChunkSize, Count - at);
            Array.Copy(_chunks[c], 0, all, at, n);
            at += n;
        }
        _chunks.Clear();
        _used = ChunkSize;
        Count = 0;
        Array.Sort(all);
        return all;
    }
}
