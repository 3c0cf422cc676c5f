using Hone.Tensors;

namespace Hone.Training;

/// <summary>One tokenized training example: ids and which of them are targets (predicted from the ids before them).</summary>
public sealed record TrainingExample(int[] Ids, bool[] IsTarget)
{
    public int TargetCount => IsTarget.Count(t => t);
}

/// <summary>
/// Turns examples into fixed [T]-token rows, epoch after epoch, in a seeded order: a global row stream where row k
/// comes from epoch k / R, so a run's position is one number and resuming at it reproduces the same batches.
/// Packing concatenates the (shuffled) examples and cuts windows of T+1 tokens advancing by T; otherwise each
/// example is one row, truncated, padded with targets −1. Rows without a target are left out.
/// Memory: the examples themselves, plus per epoch an order and one number per row; a row's tokens are copied out
/// of the examples when it is asked for.
/// </summary>
public sealed class TrainingRows
{
    readonly List<TrainingExample> _examples;
    readonly int _sequence, _pad;
    readonly bool _packing;
    readonly ulong _seed;
    readonly int _rowsPerEpoch;
    Epoch? _epoch;

    /// <summary>One epoch's layout: the example order, where each example starts in the concatenation (packing), and
    /// each row's start position (packing) or example index (one row per example).</summary>
    sealed record Epoch(int Number, int[] Order, long[] Starts, long[] Rows);

    public TrainingRows(List<TrainingExample> examples, int sequence, bool packing, int padId, ulong seed)
    {
        if (examples.Count == 0) throw new ArgumentException("no training examples");
        if (sequence < 1) throw new ArgumentOutOfRangeException(nameof(sequence), "a row needs at least one token");
        _examples = examples; _sequence = sequence; _packing = packing; _pad = padId; _seed = seed;
        _epoch = Layout(0, ShuffledOrder(0));
        _rowsPerEpoch = _epoch.Rows.Length;
        if (_rowsPerEpoch == 0)
            throw new ArgumentException(packing ? $"the data is too short for even one window of {sequence + 1} tokens"
                                                : $"no example has a target within its first {sequence + 1} tokens");
    }

    public int RowsPerEpoch => _rowsPerEpoch;
    public int Sequence => _sequence;
    /// <summary>Whether rows are packed windows (a new set each epoch) rather than one example each (the same set every epoch).</summary>
    public bool Packing => _packing;

    /// <summary>Row <paramref name="index"/> of the global stream (fresh arrays of [T] each).</summary>
    public (int[] Tokens, int[] Targets) Row(long index)
    {
        var (tokens, targets, _) = RowWithLength(index);
        return (tokens, targets);
    }

    /// <summary>Row <paramref name="index"/> and how many of its tokens are not padding (T for a packed row).</summary>
    public (int[] Tokens, int[] Targets, int Length) RowWithLength(long index)
    {
        int epoch = (int)(index / _rowsPerEpoch);
        if (_epoch == null || _epoch.Number != epoch) _epoch = Layout(epoch, ShuffledOrder(epoch));
        // An epoch of packed windows can have a few target-free windows more or less than epoch 0: wrap around it.
        var rows = _epoch.Rows;
        return Materialize(_epoch, rows[(int)(index % _rowsPerEpoch % rows.Length)]);
    }

    /// <summary>Without packing: the example row <paramref name="index"/> of the global stream comes from.</summary>
    public int ExampleOf(long index)
    {
        if (_packing) throw new InvalidOperationException("a packed row holds several examples");
        int epoch = (int)(index / _rowsPerEpoch);
        if (_epoch == null || _epoch.Number != epoch) _epoch = Layout(epoch, ShuffledOrder(epoch));
        return (int)_epoch.Rows[(int)(index % _rowsPerEpoch % _epoch.Rows.Length)];
    }

    /// <summary>Without packing: each example that makes a row (a target within its first T+1 tokens), as its index
    /// and row, in file order.</summary>
    public IEnumerable<(int Example, int[] Tokens, int[] Targets, int Length)> ExampleRows()
    {
        if (_packing) throw new InvalidOperationException("a packed row holds several examples");
        var layout = Layout(-1, Enumerable.Range(0, _examples.Count).ToArray());
        foreach (long row in layout.Rows)
        {
            var (tokens, targets, length) = Materialize(layout, row);
            yield return ((int)row, tokens, targets, length);
        }
    }

    public int ExampleCount => _examples.Count;

    /// <summary>All rows once, in file order (validation), with how many of their tokens are not padding.</summary>
    public IEnumerable<(int[] Tokens, int[] Targets, int Length)> InOrder()
    {
        var layout = Layout(-1, Enumerable.Range(0, _examples.Count).ToArray());
        foreach (long row in layout.Rows) yield return Materialize(layout, row);
    }

    int[] ShuffledOrder(int epoch)
    {
        var order = Enumerable.Range(0, _examples.Count).ToArray();
        var rng = new Xoshiro256(_seed * 0x9E3779B97F4A7C15UL + (ulong)epoch);
        for (int i = order.Length - 1; i > 0; i--) { int j = rng.NextInt(i + 1); (order[i], order[j]) = (order[j], order[i]); }
        return order;
    }

    Epoch Layout(int number, int[] order)
    {
        int t = _sequence;
        var rows = new List<long>();
        if (!_packing)
        {
            foreach (int index in order)
            {
                var e = _examples[index];
                int n = Math.Min(e.Ids.Length, t + 1);
                if (n > 1 && e.IsTarget.AsSpan(1, n - 1).Contains(true)) rows.Add(index);
            }
            return new Epoch(number, order, [], rows.ToArray());
        }
        var starts = new long[order.Length + 1];
        for (int i = 0; i < order.Length; i++) starts[i + 1] = starts[i] + _examples[order[i]].Ids.Length;
        long total = starts[^1];
        // A window [start, start + T] has a target when any of its positions start+1 .. start+T is one: walk the
        // targets once and note, for each window, whether it saw one.
        int example = 0;
        for (long start = 0; start + t + 1 <= total; start += t)
        {
            while (starts[example + 1] <= start + 1) example++;
            bool any = false;
            for (int i = example; !any && i < order.Length && starts[i] <= start + t; i++)
            {
                var mask = _examples[order[i]].IsTarget;
                long from = Math.Max(start + 1, starts[i]) - starts[i], to = Math.Min(start + t, starts[i + 1] - 1) - starts[i];
                if (to >= from) any = mask.AsSpan((int)from, (int)(to - from + 1)).Contains(true);
            }
            if (any) rows.Add(start);
        }
        return new Epoch(number, order, starts, rows.ToArray());
    }

    (int[] Tokens, int[] Targets, int Length) Materialize(Epoch epoch, long row)
    {
        int t = _sequence;
        var tokens = new int[t];
        var targets = new int[t];
        if (!_packing)
        {
            var e = _examples[(int)row];
            Array.Fill(tokens, _pad);
            Array.Fill(targets, -1);
            int n = Math.Min(e.Ids.Length, t + 1);
            e.Ids.AsSpan(0, Math.Min(n, t)).CopyTo(tokens);
            for (int j = 0; j + 1 < n; j++) if (e.IsTarget[j + 1]) targets[j] = e.Ids[j + 1];
            return (tokens, targets, Math.Min(n, t));
        }
        // Positions row .. row + T of the concatenation: token j is position row + j, target j is position row + j + 1.
        int i = Array.BinarySearch(epoch.Starts, row);
        if (i < 0) i = ~i - 1;
        while (epoch.Starts[i + 1] <= row) i++;
        for (int j = 0; j <= t; j++)
        {
            long position = row + j;
            while (epoch.Starts[i + 1] <= position) i++;
            var e = _examples[epoch.Order[i]];
            int k = (int)(position - epoch.Starts[i]);
            if (j < t) tokens[j] = e.Ids[k];
            if (j > 0) targets[j - 1] = e.IsTarget[k] ? e.Ids[k] : -1;
        }
        return (tokens, targets, t);
    }
}
