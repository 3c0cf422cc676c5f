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
/// example is one row, truncated, padded with targets −1.
/// </summary>
public sealed class TrainingRows
{
    readonly List<TrainingExample> _examples;
    readonly int _sequence, _pad;
    readonly bool _packing;
    readonly ulong _seed;
    int _epochBuilt = -1;
    List<(int[] Tokens, int[] Targets)> _epochRows = new();
    readonly int _rowsPerEpoch;

    public TrainingRows(List<TrainingExample> examples, int sequence, bool packing, int padId, ulong seed)
    {
        if (examples.Count == 0) throw new ArgumentException("no training examples");
        _examples = examples; _sequence = sequence; _packing = packing; _pad = padId; _seed = seed;
        _rowsPerEpoch = BuildEpoch(0).Count;
        if (_rowsPerEpoch == 0) throw new ArgumentException($"the data is too short for even one window of {sequence + 1} tokens");
    }

    public int RowsPerEpoch => _rowsPerEpoch;
    public int Sequence => _sequence;

    /// <summary>Row <paramref name="index"/> of the global stream.</summary>
    public (int[] Tokens, int[] Targets) Row(long index)
    {
        int epoch = (int)(index / _rowsPerEpoch);
        if (epoch != _epochBuilt) { _epochRows = BuildEpoch(epoch); _epochBuilt = epoch; }
        return _epochRows[(int)(index % _rowsPerEpoch)];
    }

    /// <summary>All rows once, in file order (validation).</summary>
    public IEnumerable<(int[] Tokens, int[] Targets)> InOrder() => Build(Enumerable.Range(0, _examples.Count).ToArray());

    List<(int[], int[])> BuildEpoch(int epoch)
    {
        var order = Enumerable.Range(0, _examples.Count).ToArray();
        var rng = new Xoshiro256(_seed * 0x9E3779B97F4A7C15UL + (ulong)epoch);
        for (int i = order.Length - 1; i > 0; i--) { int j = rng.NextInt(i + 1); (order[i], order[j]) = (order[j], order[i]); }
        return Build(order).ToList();
    }

    IEnumerable<(int[], int[])> Build(int[] order)
    {
        int t = _sequence;
        if (!_packing)
        {
            foreach (var index in order)
            {
                var e = _examples[index];
                var tokens = new int[t];
                var targets = new int[t];
                Array.Fill(tokens, _pad);
                Array.Fill(targets, -1);
                int n = Math.Min(e.Ids.Length, t + 1);
                for (int j = 0; j < Math.Min(n, t); j++) tokens[j] = e.Ids[j];
                for (int j = 0; j + 1 < n; j++) if (e.IsTarget[j + 1]) targets[j] = e.Ids[j + 1];
                if (targets.Any(x => x >= 0)) yield return (tokens, targets);
            }
            yield break;
        }
        var ids = new List<int>();
        var mask = new List<bool>();
        foreach (var index in order) { ids.AddRange(_examples[index].Ids); mask.AddRange(_examples[index].IsTarget); }
        for (int start = 0; start + t + 1 <= ids.Count; start += t)
        {
            var tokens = new int[t];
            var targets = new int[t];
            for (int j = 0; j < t; j++)
            {
                tokens[j] = ids[start + j];
                targets[j] = mask[start + j + 1] ? ids[start + j + 1] : -1;
            }
            if (targets.Any(x => x >= 0)) yield return (tokens, targets);
        }
    }
}
