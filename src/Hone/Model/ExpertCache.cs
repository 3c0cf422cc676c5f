using System.Globalization;
using Hone.Formats;
using Hone.Tensors;
using Hone.Tensors.Emitted;

namespace Hone.Model;

/// <summary>What an <see cref="ExpertCache"/> did: fetches answered from resident experts (hits) and from the file
/// (misses, each reading one expert's three matrices).</summary>
public sealed record ExpertCacheStatistics(ExpertCachePolicy Policy, long BudgetBytes, long SlotBytes, int Slots, int Experts, long Hits, long Misses, long BytesRead)
{
    public long Fetches => Hits + Misses;
    public double HitRate => Fetches == 0 ? 0 : (double)Hits / Fetches;

    /// <summary>The cache's policy and size, for a command's output.</summary>
    public string Resident =>
        $"expert cache ({Policy.ToString().ToLowerInvariant()}): {Slots} of {Experts} experts resident ({MemoryBudget.Text((long)Slots * SlotBytes)} of a {MemoryBudget.Text(BudgetBytes)} budget)";

    /// <summary>One line for a command's output.</summary>
    public string Summary => $"{Resident}, {Fetches:N0} fetches, hit rate {HitRate:P1}, {MemoryBudget.Text(BytesRead)} read from the file";
}

/// <summary>How a mixture of experts is opened with an expert cache: the budget as the command line gives it
/// (<see cref="ExpertCache.ParseBudget"/>) and the eviction policy.</summary>
public sealed record ExpertCacheOptions(string Budget, ExpertCachePolicy Policy = ExpertCachePolicy.Frequency);

/// <summary>Which resident expert a miss evicts.</summary>
public enum ExpertCachePolicy
{
    /// <summary>The one fetched least often (counts halve every few thousand fetches, so popularity can shift; ties
    /// go to the least recently used), and only for an expert fetched more often than it: hot experts stay, and a
    /// prefill that sweeps every expert of every layer passes through one slot instead of flushing them all.</summary>
    Frequency,
    /// <summary>The least recently used.</summary>
    Recency,
}

/// <summary>
/// Keeps a memory budget's worth of a mixture of experts' experts resident and leaves the rest in the checkpoint's
/// memory mapping (weights loaded with <see cref="WeightLoadOptions.ExpertsInPlace"/>). The budget is split into equal
/// slots, one expert (its gate, up and down) each, preallocated once; a fetch of an expert not resident evicts one
/// chosen by the <see cref="ExpertCachePolicy"/>, brings the new one in from the mapping — as the packed copy the fast GEMM streams (Q8_0 and
/// F32 under fast precision) or a copy of its stored bytes — and gives the mapped pages back to the system, so what the
/// process holds is the slots, not the file. Results are bit-identical to a fully resident model: the same kernels run
/// on the same values. Not thread-safe: one model's forward passes, one at a time.
/// </summary>
public sealed unsafe class ExpertCache : IDisposable
{
    readonly LlamaWeights _weights;
    readonly WorkerPool _pool;
    readonly ComputePrecision _precision;
    readonly NativeBuffer _memory;                 // [Slots · SlotBytes]
    readonly int[] _owner;                         // [Slots] layer·E + expert held by the slot, or −1
    readonly long[] _lastUse;                      // [Slots] the tick of its last fetch (−1: never used)
    readonly int[] _slotOf;                        // [L·E] the slot holding the expert, or −1
    readonly bool[] _checked;                      // [L·E] its values were checked finite on a first fetch
    readonly int[] _fetches;                       // [L·E] fetches of the expert, halved every DecayFetches
    readonly (WeightMatrix Gate, WeightMatrix Up, WeightMatrix Down)[] _resident; // [Slots]
    long _tick, _hits, _misses, _bytesRead;

    public long BudgetBytes { get; }
    public long SlotBytes { get; }
    public int Slots { get; }
    public ExpertCachePolicy Policy { get; }
    /// <summary>How many fetches pass between halvings of the frequency counts.</summary>
    public int DecayFetches { get; }

    /// <param name="budgetBytes">memory the resident experts may take; at least one expert's <see cref="ExpertBytes"/></param>
    /// <param name="precision">the model's precision: under fast precision Q8_0 and F32 experts are held as the GEMM's
    /// packed copy, otherwise as their stored bytes</param>
    public ExpertCache(LlamaWeights weights, long budgetBytes, WorkerPool pool, ComputePrecision precision,
        ExpertCachePolicy policy = ExpertCachePolicy.Frequency)
    {
        var c = weights.Config;
        if (!c.IsMixtureOfExperts) throw new ArgumentException("an expert cache needs a mixture of experts; this model is dense");
        if (weights.MappedExpertBytes == 0)
            throw new ArgumentException("an expert cache needs the experts left in the checkpoint's mapping (load with ExpertsInPlace)");
        _weights = weights; _pool = pool; _precision = precision;
        SlotBytes = ExpertBytes(weights, precision);
        if (budgetBytes < SlotBytes)
            throw new ArgumentException($"an expert cache of {MemoryBudget.Text(budgetBytes)} holds no expert: one takes {MemoryBudget.Text(SlotBytes)}");
        int experts = SparseLayers(c) * c.Experts;
        Slots = (int)Math.Min(budgetBytes / SlotBytes, experts);
        BudgetBytes = budgetBytes;
        _memory = new NativeBuffer(checked(Slots * SlotBytes));
        _owner = new int[Slots]; Array.Fill(_owner, -1);
        _lastUse = new long[Slots]; Array.Fill(_lastUse, -1);
        _slotOf = new int[c.Layers * c.Experts]; Array.Fill(_slotOf, -1);
        _checked = new bool[c.Layers * c.Experts];
        _fetches = new int[c.Layers * c.Experts];
        Policy = policy;
        DecayFetches = Math.Max(4096, 16 * experts);
        _resident = new (WeightMatrix, WeightMatrix, WeightMatrix)[Slots];
    }

    /// <summary>The cache a command line's options ask for (<see cref="ParseBudget"/>; a budget above what all experts
    /// take holds them all), refused before allocating when the machine has not the memory.</summary>
    public static ExpertCache Open(LlamaWeights weights, ExpertCacheOptions options, WorkerPool pool, ComputePrecision precision)
    {
        long all = AllExpertsBytes(weights, precision), budget = ParseBudget(options.Budget, all);
        MemoryBudget.Require(Math.Min(budget, all), $"--expert-cache {options.Budget}");
        return new ExpertCache(weights, budget, pool, precision, options.Policy);
    }

    /// <summary>Whether a checkpoint tensor (canonical name) is a routed expert's projection: what stays in the file
    /// under an expert cache.</summary>
    public static bool IsExpertProjection(string name) =>
        TensorNames.TryParseGguf(name, out var p) && p.Role is TensorRole.ExpertGate or TensorRole.ExpertUp or TensorRole.ExpertDown;

    /// <summary>A slot's size: the largest of the sparse layers' experts as held resident (gate, up and down, each
    /// 64-byte aligned).</summary>
    public static long ExpertBytes(LlamaWeights weights, ComputePrecision precision)
    {
        long most = 0;
        foreach (var l in weights.Layers)
            if (l.IsSparse)
                most = Math.Max(most, ResidentBytes(l.ExpertGate![0], precision) + ResidentBytes(l.ExpertUp![0], precision) + ResidentBytes(l.ExpertDown![0], precision));
        return most;
    }

    /// <summary>What all experts would take resident: the budget at which the cache holds every one.</summary>
    public static long AllExpertsBytes(LlamaWeights weights, ComputePrecision precision) =>
        ExpertBytes(weights, precision) * SparseLayers(weights.Config) * weights.Config.Experts;

    static int SparseLayers(ModelConfig c) => Enumerable.Range(0, c.Layers).Count(c.IsSparseLayer);

    /// <summary>Bytes of the packed copy the fast GEMM would build for this weight, or its stored bytes.</summary>
    static long ResidentBytes(WeightMatrix m, ComputePrecision precision) => NativeBuffer.Align(PackedBytes(m, precision) is long p and > 0 ? p : m.ByteLength);

    static long PackedBytes(WeightMatrix m, ComputePrecision precision) => precision != ComputePrecision.Fast ? 0 : m.Type switch
    {
        TensorType.Q8_0 => WeightGemm.PackedBytes(m.Type, m.Rows, m.Cols),
        TensorType.F32 => Gemm.PackedWeightsBytes(m.Rows, m.Cols),
        _ => 0,
    };

    /// <summary>Expert <paramref name="expert"/> of layer <paramref name="layer"/>, resident until a later fetch evicts
    /// it (use it before the next fetch).</summary>
    public (WeightMatrix Gate, WeightMatrix Up, WeightMatrix Down) Fetch(int layer, int expert)
    {
        int key = layer * _weights.Config.Experts + expert;
        if (++_fetches[key] == int.MaxValue || (_hits + _misses + 1) % DecayFetches == 0)
            for (int i = 0; i < _fetches.Length; i++) _fetches[i] >>= 1;
        int slot = _slotOf[key];
        if (slot >= 0)
        {
            _hits++;
            _lastUse[slot] = ++_tick;
            return _resident[slot];
        }
        _misses++;
        slot = Victim(key);
        if (_owner[slot] >= 0) _slotOf[_owner[slot]] = -1;
        _owner[slot] = -1;
        var l = _weights.Layers[layer];
        byte* memory = _memory.Pointer + slot * SlotBytes;
        var gate = BringIn(l.ExpertGate![expert], ref memory, key);
        var up = BringIn(l.ExpertUp![expert], ref memory, key);
        var down = BringIn(l.ExpertDown![expert], ref memory, key);
        _checked[key] = true;
        _resident[slot] = (gate, up, down);
        _owner[slot] = key;
        _slotOf[key] = slot;
        _lastUse[slot] = ++_tick;
        return _resident[slot];
    }

    /// <summary>Where a missed expert goes: an empty slot, else the slot of the resident the policy evicts. Under the
    /// frequency policy the last slot is a passing place: an expert fetched no more often than the coldest resident is
    /// brought in there and does not displace it (TinyLFU's admission), so a sweep over more experts than fit leaves
    /// the resident ones in place instead of flushing them.</summary>
    int Victim(int key)
    {
        bool frequency = Policy == ExpertCachePolicy.Frequency && Slots >= 2;
        int kept = frequency ? Slots - 1 : Slots, victim = 0;
        for (int s = 0; s < kept; s++)
        {
            if (_owner[s] < 0) return s;
            bool before = frequency && _fetches[_owner[s]] != _fetches[_owner[victim]]
                ? _fetches[_owner[s]] < _fetches[_owner[victim]]
                : _lastUse[s] < _lastUse[victim];
            if (before) victim = s;
        }
        return frequency && _fetches[key] <= _fetches[_owner[victim]] ? Slots - 1 : victim;
    }

    /// <summary>One mapped matrix into the slot at <paramref name="memory"/> (advanced past it), as a matrix the
    /// kernels use: the stored bytes stay where they are and the packed copy lives in the slot, or the stored bytes are
    /// copied into the slot.</summary>
    WeightMatrix BringIn(WeightMatrix mapped, ref byte* memory, int key)
    {
        if (!_checked[key]) CheckFinite(mapped);
        WeightMatrix resident;
        long packedBytes = PackedBytes(mapped, _precision);
        if (packedBytes > 0)
        {
            resident = new WeightMatrix(mapped.Name, mapped.Type, mapped.Rows, mapped.Cols, mapped.Data);
            if (mapped.Type == TensorType.Q8_0)
                resident.UsePacked(WeightGemm.TryPack(_pool, mapped.Type, mapped.Data, mapped.RowBytes, mapped.Rows, mapped.Cols, memory), null);
            else
                resident.UsePacked(null, Gemm.TryPackWeights(_pool, (float*)mapped.Data, mapped.RowBytes / 4, mapped.Rows, mapped.Cols, memory));
        }
        else
        {
            Buffer.MemoryCopy(mapped.Data, memory, mapped.ByteLength, mapped.ByteLength);
            resident = new WeightMatrix(mapped.Name, mapped.Type, mapped.Rows, mapped.Cols, memory);
            resident.UsePacked(null, null); // never packed beside the slot: the slot is its only resident copy
        }
        _bytesRead += mapped.ByteLength;
        MappedFile.ReleasePages(mapped.Data, mapped.ByteLength);
        memory += ResidentBytes(mapped, _precision);
        return resident;
    }

    void CheckFinite(WeightMatrix m)
    {
        var row = new float[m.Cols];
        fixed (float* r = row)
            for (int i = 0; i < m.Rows; i++)
            {
                m.ReadRow(i, r);
                for (int j = 0; j < m.Cols; j++)
                    if (!float.IsFinite(r[j]))
                        throw new ModelFormatException(_weights.MappedFrom ?? "the checkpoint",
                            $"non-finite value {(float.IsNaN(r[j]) ? "NaN" : r[j] > 0 ? "+inf" : "-inf")} at [{i}, {j}]", $"tensor '{m.Name}'");
            }
    }

    public ExpertCacheStatistics Statistics =>
        new(Policy, BudgetBytes, SlotBytes, Slots, SparseLayers(_weights.Config) * _weights.Config.Experts, _hits, _misses, _bytesRead);

    /// <summary>Forget the counts (not the resident experts): to measure a phase after a warm-up.</summary>
    public void ResetStatistics() { _hits = 0; _misses = 0; _bytesRead = 0; }

    public void Dispose() => _memory.Dispose();

    /// <summary>
    /// A budget as the command line gives it: bytes with an optional unit (K, M, G: powers of 1,024; "KiB", "MB" and
    /// the like read the same), or a percentage of all experts' resident size (<paramref name="allExperts"/>).
    /// </summary>
    public static long ParseBudget(string text, long allExperts, string option = "--expert-cache")
    {
        string t = text.Trim();
        string Example() => $"{option}: '{text}' is not a memory size (examples: 512M, 2G, 1.5GiB, 50%)";
        if (t.EndsWith('%'))
        {
            if (!double.TryParse(t[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out double percent) || !double.IsFinite(percent)
                || percent <= 0 || percent > 100)
                throw new ArgumentException($"{option}: a percentage of the experts' size must be above 0 and at most 100, found '{text}'");
            return (long)Math.Ceiling(allExperts * percent / 100);
        }
        string u = t.ToUpperInvariant();
        foreach (var suffix in new[] { "IB", "B" })
            if (u.EndsWith(suffix)) { u = u[..^suffix.Length]; break; }
        long factor = u.EndsWith('K') ? 1L << 10 : u.EndsWith('M') ? 1L << 20 : u.EndsWith('G') ? 1L << 30 : 1;
        if (factor > 1) u = u[..^1];
        if (!double.TryParse(u, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) || !double.IsFinite(value) || value <= 0)
            throw new ArgumentException(Example());
        double bytes = value * factor;
        if (bytes > long.MaxValue / 2) throw new ArgumentException($"{option}: '{text}' is more memory than any machine has");
        return (long)bytes;
    }
}
