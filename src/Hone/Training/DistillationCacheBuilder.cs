using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Training;

/// <summary>A teacher-cache pass (hone distill cache): the teacher, and the trainer's options that decide its rows.</summary>
public sealed record DistillationCacheOptions
{
    /// <summary>The training run's options; only <see cref="DistillationCacheBuilder.RowSettings"/> are read from it.</summary>
    public required TrainOptions Run { get; init; }
    public required string Teacher { get; init; }
    public string? Adapter { get; init; }
    public int TopK { get; init; } = 32;
    public float Temperature { get; init; } = 2;
    public required string Out { get; init; }
    /// <summary>Worker threads (0 = every core).</summary>
    public int Threads { get; init; }
}

/// <summary>What a cache pass did: rows drawn by the run, distinct rows cached, target positions, the file's size, and
/// how much of the teacher's tempered probability the top-K hold (mean and least over the positions).</summary>
public sealed record DistillationCacheReport(string Output, long Rows, long Sequences, long Positions, long Bytes, double Seconds,
    double MeanTopMass, double LeastTopMass, string DataDescription);

/// <summary>
/// Writes a teacher cache: the teacher runs (inference, exact precision, every thread) over exactly the rows a training
/// run with the same data settings draws, and each target position's top-K ids and log-probabilities at T are stored.
/// Rows: with packing, the trainer cuts a new set of windows every epoch (the examples are reshuffled before they are
/// concatenated), so the cache holds the rows of the run's steps (max_steps, or epochs × rows per epoch), keyed by their
/// tokens: a run of as many steps or fewer finds every row. Without packing every epoch draws the same rows in another
/// order, so one epoch's rows cover any number of steps. Keying by row rather than by document keeps a packed window's
/// context (the documents before it in the window) exactly what the live teacher sees.
/// </summary>
public static unsafe class DistillationCacheBuilder
{
    /// <summary>The training settings that decide which rows a run draws: the cache is built with them, records them,
    /// and `hone distill cache` takes them as flags under the trainer's names.</summary>
    public static readonly IReadOnlyList<string> RowSettings =
        ["data", "val_data", "val_split", "replay_data", "seq_len", "packing", "train_on_prompt", "template", "skip_bad_lines", "max_samples", "seed",
         "max_steps", "epochs", "batch_size", "grad_accum"];

    /// <summary>The run options the data loader reads, for a cache of <paramref name="c"/>.</summary>
    public static TrainOptions RunOptions(DistillationCacheOptions c) => c.Run with
    {
        Model = c.Teacher, Teacher = c.Teacher, TeacherAdapter = c.Adapter, TeacherCache = null, Stage = TrainingStage.Distill, Out = c.Out,
        KdTemperature = c.Temperature,
    };

    /// <summary>The row settings of <paramref name="o"/> as JSON (paths made absolute, packing resolved).</summary>
    public static JsonObject RowOptions(TrainOptions o)
    {
        var json = new JsonObject();
        foreach (var key in RowSettings)
        {
            var setting = TrainOptions.Setting(key)!;
            object? value = key == "packing" ? o.Packing ?? o.Stage == TrainingStage.Cpt : setting.Get(o);
            json[key] = value switch
            {
                null => null,
                string s when setting.Kind == SettingKind.Path && s.Length > 0 => Path.GetFullPath(s),
                string s => s,
                bool b => b,
                int i => i,
                long l => l,
                ulong u => u,
                float f => f,
                double d => d,
                _ => value.ToString(),
            };
        }
        return json;
    }

    /// <summary>How many rows of the global row stream (from row 0) a run of <paramref name="o"/> draws, counting a
    /// row that repeats only once: with packing every row of its steps, without packing at most one epoch.</summary>
    public static long RowsOfRun(TrainOptions o, TrainingRows rows)
    {
        long steps = Trainer.TotalSteps(o, rows.RowsPerEpoch);
        long total = checked(steps * o.BatchSize * o.GradAccum);
        return rows.Packing ? total : Math.Min(total, rows.RowsPerEpoch);
    }

    public static DistillationCacheReport Build(DistillationCacheOptions c, Func<Checkpoint, TrainOptions, TrainingData> loadData, Action<string> info,
        Action<int, int>? progress = null, CancellationToken cancel = default)
    {
        var o = RunOptions(c);
        o.Validate();
        if (c.TopK < 1) throw new ArgumentException($"--top-k {c.TopK}: at least 1");
        if (!(c.Temperature > 0) || !float.IsFinite(c.Temperature) || c.Temperature > 100) throw new ArgumentException($"--temperature {c.Temperature}: in (0, 100]");
        if (c.Adapter != null && !File.Exists(Path.Combine(c.Adapter, "adapter_config.json")))
            throw new ArgumentException($"{c.Adapter}: not a PEFT adapter directory (adapter_config.json is missing) for --adapter");
        var clock = Stopwatch.StartNew();
        using var checkpoint = Checkpoint.Open(c.Teacher);
        var config = checkpoint.Config;
        int vocab = config.VocabSize;
        if (c.TopK > vocab) throw new ArgumentException($"--top-k {c.TopK} is more than the teacher's vocabulary of {vocab} ids (--top-k {vocab} keeps every id)");
        if (o.SeqLen > config.MaxPositions)
            throw new ArgumentException($"{checkpoint.Path}: seq_len (--seq-len) {o.SeqLen} is more than the teacher's context of {config.MaxPositions} tokens");
        var vocabularyHash = DistillationCache.VocabularyHash(checkpoint.LoadTokenizer(), vocab);
        var data = loadData(checkpoint, o);
        info(data.Description);
        var rows = data.Train;
        long rowCount = RowsOfRun(o, rows);
        if (rowCount > int.MaxValue) throw new ArgumentException($"the run draws {rowCount:N0} rows; a teacher cache holds at most {int.MaxValue:N0}");
        // First the keys alone (cheap): distinct rows and their target positions, so the size is known before the teacher runs.
        var distinct = new HashSet<UInt128>();
        long positions = 0;
        for (long r = 0; r < rowCount; r++)
        {
            var (tokens, targets, _) = rows.RowWithLength(r);
            if (distinct.Add(DistillationCache.Key(tokens, targets))) positions += targets.Count(t => t >= 0);
        }
        long expectedBytes = DistillationCache.RecordBytes(positions, c.TopK) + (long)distinct.Count * DistillationCache.IndexEntryBytes;
        info($"caching the teacher {checkpoint.Path}{(c.Adapter != null ? " + adapter " + c.Adapter : "")} over {rowCount:N0} rows " +
             $"({(rows.Packing ? "packed: the rows of every step" : "one per example: one epoch covers every step")}; {distinct.Count:N0} distinct), " +
             $"{positions:N0} target positions, top {c.TopK} of {vocab} ids at T = {c.Temperature:G4}: about {expectedBytes / 1048576.0:F1} MiB");

        var options = new JsonObject
        {
            ["teacher"] = Path.GetFullPath(c.Teacher), ["adapter"] = c.Adapter != null ? Path.GetFullPath(c.Adapter) : null,
            ["data"] = RowOptions(o), ["rows"] = rowCount, ["steps"] = Trainer.TotalSteps(o, rows.RowsPerEpoch),
        };
        using var pool = new WorkerPool(WorkerPool.ResolveThreadCount(c.Threads));
        using var teacher = ModelTeacher.Open(checkpoint, c.Adapter, pool, 1, o.SeqLen);
        using var writer = new DistillationCacheWriter(c.Out, c.TopK, c.Temperature, vocab, vocabularyHash, o.SeqLen, options);
        int t = o.SeqLen, k = c.TopK;
        var ids = new int[t * k];
        var logProbs = new float[t * k];
        var logRest = new float[t];
        var targetRows = new int[t];
        double topMass = 0, leastTopMass = 1;
        progress?.Invoke(0, (int)rowCount);
        for (long r = 0; r < rowCount; r++)
        {
            cancel.ThrowIfCancellationRequested();
            var (tokens, targets, _) = rows.RowWithLength(r);
            var key = DistillationCache.Key(tokens, targets);
            if (!writer.Contains(key))
            {
                teacher.Run(tokens, targets, 1, t);
                int p = 0;
                for (int i = 0; i < t; i++) if (targets[i] >= 0) targetRows[p++] = i;
                fixed (int* idp = ids, rowp = targetRows)
                fixed (float* lp = logProbs, rp = logRest)
                {
                    if (SelectTopK(pool, teacher.Logits, vocab, rowp, p, k, c.Temperature, idp, lp, rp) is int bad)
                        throw new InvalidOperationException($"{checkpoint.Path}: the teacher's logits at position {targetRows[bad]} of row {r} are not finite");
                }
                for (int i = 0; i < p; i++)
                {
                    double mass = k == vocab ? 1 : 1 - Math.Exp(logRest[i]);
                    topMass += mass;
                    leastTopMass = Math.Min(leastTopMass, mass);
                }
                writer.Add(key, p, ids.AsSpan(0, p * k), logProbs.AsSpan(0, p * k), logRest.AsSpan(0, p));
            }
            progress?.Invoke((int)(r + 1), (int)rowCount);
        }
        writer.Commit();
        long bytes = new FileInfo(writer.Path).Length;
        return new DistillationCacheReport(writer.Path, rowCount, writer.Sequences, writer.Positions, bytes, clock.Elapsed.TotalSeconds,
            topMass / Math.Max(1, writer.Positions), leastTopMass, data.Description);
    }

    struct SelectJob
    {
        public float* Logits;
        public int Vocab, TopK, Count;
        public double InverseTemperature;
        public int* Rows, Ids;
        public float* LogProbs, LogRest;
        public int* FirstBad;
    }

    /// <summary>
    /// For each of <paramref name="count"/> logit rows (<paramref name="rows"/>: their indices in <paramref name="logits"/>
    /// [*, V]), the K largest ids (larger logit first, the lower id first among equals) into ids [count, K], their
    /// log-probabilities at temperature T into logProbs [count, K] and the log of the other ids' mass into logRest [count]
    /// (−∞ when K = V), all in double before rounding to float. Rows are shared among the pool's threads. Returns the
    /// first row (of the count) with a non-finite logit, or null.
    /// </summary>
    public static int? SelectTopK(WorkerPool pool, float* logits, int vocab, int* rows, int count, int k, float temperature, int* ids, float* logProbs, float* logRest)
    {
        if (k < 1 || k > vocab) throw new ArgumentOutOfRangeException(nameof(k), $"top-k {k} must be between 1 and {vocab}");
        int firstBad = int.MaxValue;
        var job = new SelectJob
        {
            Logits = logits, Vocab = vocab, TopK = k, Count = count, InverseTemperature = 1.0 / temperature, Rows = rows, Ids = ids,
            LogProbs = logProbs, LogRest = logRest, FirstBad = &firstBad,
        };
        pool.Run(&SelectWorker, &job);
        return firstBad == int.MaxValue ? null : firstBad;
    }

    static void SelectWorker(void* context, int thread, int threads)
    {
        ref var j = ref *(SelectJob*)context;
        var (r0, r1) = WorkerPool.Share(j.Count, thread, threads);
        if (r1 <= r0) return;
        var heapValues = ArrayPool<float>.Shared.Rent(j.TopK);
        var heapIds = ArrayPool<int>.Shared.Rent(j.TopK);
        var chosen = ArrayPool<bool>.Shared.Rent(j.Vocab);
        Array.Clear(chosen, 0, j.Vocab);
        try
        {
            for (int r = r0; r < r1; r++)
                if (!SelectRow(j.Logits + (long)j.Rows[r] * j.Vocab, j.Vocab, j.TopK, j.InverseTemperature, j.Ids + (long)r * j.TopK, j.LogProbs + (long)r * j.TopK,
                        j.LogRest + r, heapValues, heapIds, chosen))
                {
                    // The first bad row of all threads (rare; a plain compare-and-swap loop).
                    int seen;
                    while (r < (seen = Volatile.Read(ref *j.FirstBad)) && Interlocked.CompareExchange(ref *j.FirstBad, r, seen) != seen) { }
                    return;
                }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(heapValues); ArrayPool<int>.Shared.Return(heapIds); ArrayPool<bool>.Shared.Return(chosen);
        }
    }

    /// <summary>One row: a heap of the K best seen so far (its root the worst of them), then the tempered log-softmax's
    /// values at them and the log of the rest's mass, each from its own maximum. <paramref name="chosen"/> [V] is all
    /// false on entry and on return.</summary>
    static bool SelectRow(float* z, int v, int k, double invT, int* ids, float* logProbs, float* logRest, float[] hv, int[] hi, bool[] chosen)
    {
        // Worse(a, b): a smaller logit, or an equal one with a larger id.
        bool Worse(int a, int b) => hv[a] < hv[b] || (hv[a] == hv[b] && hi[a] > hi[b]);
        void Swap(int a, int b) { (hv[a], hv[b]) = (hv[b], hv[a]); (hi[a], hi[b]) = (hi[b], hi[a]); }
        void SiftDown(int i, int n)
        {
            while (true)
            {
                int l = 2 * i + 1, r = l + 1, m = i;
                if (l < n && Worse(l, m)) m = l;
                if (r < n && Worse(r, m)) m = r;
                if (m == i) return;
                Swap(i, m);
                i = m;
            }
        }
        int count = 0;
        for (int i = 0; i < v; i++)
        {
            float x = z[i];
            if (!float.IsFinite(x)) return false;
            if (count < k)
            {
                hv[count] = x; hi[count] = i;
                for (int c = count++; c > 0 && Worse(c, (c - 1) / 2); c = (c - 1) / 2) Swap(c, (c - 1) / 2);
            }
            else if (x > hv[0] || (x == hv[0] && i < hi[0]))
            {
                hv[0] = x; hi[0] = i;
                SiftDown(0, k);
            }
        }
        // Pop the worst into the last slot, and so on: slot 0 ends with the best.
        for (int n = k; n > 0; n--)
        {
            ids[n - 1] = hi[0];
            logProbs[n - 1] = hv[0];
            hv[0] = hv[n - 1]; hi[0] = hi[n - 1];
            SiftDown(0, n - 1);
        }
        double max = logProbs[0], sum = 0;
        for (int i = 0; i < v; i++) sum += Math.Exp((z[i] - max) * invT);
        double logSum = Math.Log(sum);
        for (int j = 0; j < k; j++)
        {
            chosen[ids[j]] = true;
            logProbs[j] = (float)((logProbs[j] - max) * invT - logSum);
        }
        if (k == v) *logRest = float.NegativeInfinity;
        else
        {
            double maxRest = double.NegativeInfinity, sumRest = 0;
            for (int i = 0; i < v; i++) if (!chosen[i]) maxRest = Math.Max(maxRest, z[i]);
            for (int i = 0; i < v; i++) if (!chosen[i]) sumRest += Math.Exp((z[i] - maxRest) * invT);
            *logRest = (float)((maxRest - max) * invT + Math.Log(sumRest) - logSum);
        }
        for (int j = 0; j < k; j++) chosen[ids[j]] = false;
        return true;
    }

    /// <summary>The command that builds a cache for the run <paramref name="o"/> (its row settings that differ from the
    /// defaults as flags), given the teacher and adapter a cache was built from.</summary>
    public static string RebuildCommand(TrainOptions o, string teacher, string? adapter, int topK, float temperature, string cachePath)
    {
        var defaults = new TrainOptions { Stage = TrainingStage.Distill };
        var parts = new List<string> { "hone distill cache", Quote(teacher) };
        if (adapter != null) parts.AddRange(["--adapter", Quote(adapter)]);
        var run = RowOptions(o);
        var plain = RowOptions(defaults);
        foreach (var key in RowSettings)
        {
            var setting = TrainOptions.Setting(key)!;
            var value = run[key];
            if (key != "data" && JsonNode.DeepEquals(value, plain[key])) continue;
            if (value is null) continue;
            if (setting.Kind == SettingKind.Boolean) { if (value.GetValue<bool>()) parts.Add(setting.Flag); continue; }
            string text = setting.Kind == SettingKind.Path ? setting.Get(o)!.ToString()! : value.ToJsonString().Trim('"');
            parts.AddRange([setting.Flag, Quote(text)]);
        }
        parts.AddRange(["--top-k", topK.ToString(CultureInfo.InvariantCulture), "--temperature", temperature.ToString(CultureInfo.InvariantCulture), "--out", Quote(cachePath)]);
        return string.Join(" ", parts);
    }

    static string Quote(string s) => s.Length > 0 && s.All(ch => char.IsLetterOrDigit(ch) || "/._-+=:,@".Contains(ch)) ? s : "'" + s.Replace("'", "'\\''") + "'";
}
