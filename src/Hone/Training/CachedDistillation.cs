using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Training;

/// <summary>
/// Distillation from a teacher cache (hone train --stage distill --teacher-cache FILE): each micro-batch's rows are
/// looked up by key, their records scattered to the target positions, and the loss is
/// <see cref="BucketDistillation"/>'s: (1 − α)·CE + α·T²·D over the cache's K ids plus one rest bucket, the student's
/// distribution over the cache's vocabulary (the first ids of a wider student's, renormalized, as the live teacher does).
/// </summary>
public sealed unsafe class CachedDistillationLoss : IDistillationLoss, IDisposable
{
    readonly DistillationCacheFile _cache;
    readonly NativeBuffer _ids, _logProbs, _logRest;   // [B·T, K] int32, [B·T, K], [B·T]
    readonly int[] _recordIds;                          // one record: [T, K]
    readonly float[] _recordLogProbs, _recordRest;      // [T, K], [T]
    readonly int _rows, _topK;

    public DistillationSettings Settings { get; }
    public DistillationCacheFile Cache => _cache;
    public DistillationSums Sums { get; private set; }

    public CachedDistillationLoss(DistillationCacheFile cache, DistillationSettings settings, int maxBatch, int maxSequence)
    {
        _cache = cache; Settings = settings; _topK = cache.Header.TopK;
        _rows = checked(maxBatch * maxSequence);
        long cells = checked((long)_rows * _topK);
        _ids = new NativeBuffer(cells * 4);
        _logProbs = new NativeBuffer(cells * 4);
        _logRest = new NativeBuffer((long)_rows * 4);
        _recordIds = new int[checked(maxSequence * _topK)];
        _recordLogProbs = new float[_recordIds.Length];
        _recordRest = new float[maxSequence];
    }

    public void ResetSums() => Sums = default;

    public void Begin(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, int sequence)
    {
        if ((long)batch * sequence > _rows || sequence > _recordRest.Length)
            throw new ArgumentException($"batch {batch}×{sequence} exceeds the cache reader's allocated {_rows / _recordRest.Length}×{_recordRest.Length}");
        int k = _topK;
        var ids = new Span<int>(_ids.Pointer, _rows * k);
        var logProbs = new Span<float>(_logProbs.AsFloats, _rows * k);
        var logRest = new Span<float>(_logRest.AsFloats, _rows);
        for (int b = 0; b < batch; b++)
        {
            var rowTargets = targets.Slice(b * sequence, sequence);
            int count = 0;
            foreach (var t in rowTargets) if (t >= 0) count++;
            if (count == 0) continue;
            int entry = _cache.Find(DistillationCache.Key(tokens.Slice(b * sequence, sequence), rowTargets));
            if (entry < 0)
                throw new DataFormatException(_cache.Path, 0, $"a row of this micro-batch is not in the teacher cache: it was built for other data settings; rebuild it with hone distill cache and this run's data options");
            if (_cache.PositionsOf(entry) != count)
                throw new DataFormatException(_cache.Path, 0, $"the cache's record of a row has {_cache.PositionsOf(entry)} target positions, the row {count}: damaged; rebuild it with hone distill cache");
            _cache.Read(entry, _recordIds, _recordLogProbs, _recordRest);
            int q = 0;
            for (int t = 0; t < sequence; t++)
            {
                if (rowTargets[t] < 0) continue;
                int row = b * sequence + t;
                _recordIds.AsSpan(q * k, k).CopyTo(ids.Slice(row * k, k));
                _recordLogProbs.AsSpan(q * k, k).CopyTo(logProbs.Slice(row * k, k));
                logRest[row] = _recordRest[q];
                q++;
            }
        }
    }

    public double ForwardBackward(WorkerPool pool, int firstRow, int rows, float* logits, int v, ReadOnlySpan<int> targets, float scale)
    {
        var sums = BucketDistillation.ForwardBackward(pool, logits, rows, v, _cache.Header.VocabSize, (int*)_ids.Pointer + (long)firstRow * _topK,
            _logProbs.AsFloats + (long)firstRow * _topK, _logRest.AsFloats + firstRow, _topK, targets, scale, Settings.Ratio, Settings.Temperature, Settings.Divergence);
        Sums += sums;
        return (1 - (double)Settings.Ratio) * sums.CrossEntropy + Settings.Ratio * sums.Divergence;
    }

    /// <summary>Frees the buffers; the cache file stays open (its opener disposes it).</summary>
    public void Dispose()
    {
        _ids.Dispose(); _logProbs.Dispose(); _logRest.Dispose();
    }
}

/// <summary>The trainer's distillation stage from a teacher cache: the file's checks against the student and the
/// run before the data loads, the rows the run will draw checked present before the weights load, then the loss.</summary>
public static class CachedDistillationRun
{
    /// <summary>Open the cache and check it against the student (vocabulary, tokenizer) and the run (temperature,
    /// seq_len); the caller disposes the file.</summary>
    public static DistillationCacheFile Check(TrainOptions o, Checkpoint student, ITrainingReporter reporter)
    {
        var cache = DistillationCacheFile.Open(o.TeacherCache!);
        try
        {
            var h = cache.Header;
            string Rebuild(TrainOptions run, float temperature) => DistillationCacheBuilder.RebuildCommand(run, Teacher(h), Adapter(h), h.TopK, temperature, cache.Path);
            if (h.VocabSize > student.Config.VocabSize)
                throw new DataFormatException(cache.Path, 0, $"the cache holds the teacher over {h.VocabSize} ids, more than the student's {student.Config.VocabSize}; " +
                    "a cached teacher needs the student's vocabulary (or a prefix of it): use the live --teacher, which slices both to the shared ids");
            var studentHash = DistillationCache.VocabularyHash(student.LoadTokenizer(), h.VocabSize);
            if (!studentHash.AsSpan().SequenceEqual(h.VocabularyHash))
                throw new DataFormatException(cache.Path, 0, $"the cache's teacher has another tokenizer than the student {student.Path} (the token strings of ids 0..{h.VocabSize - 1} differ); " +
                    "distillation needs the same tokenizer");
            if (h.Temperature != (float)o.KdTemperature)
                throw new DataFormatException(cache.Path, 0, $"the cache holds the teacher at temperature {h.Temperature:G6}, this run's kd_temperature is {o.KdTemperature:G6}: " +
                    $"pass --kd-temperature {h.Temperature:G6}, or rebuild the cache for T = {o.KdTemperature:G6}: {Rebuild(o, (float)o.KdTemperature)}");
            if (h.SeqLen != o.SeqLen)
                throw new DataFormatException(cache.Path, 0, $"the cache was built with seq_len {h.SeqLen}, this run's is {o.SeqLen}: rebuild with {Rebuild(o, h.Temperature)}");
            if (h.VocabSize < student.Config.VocabSize)
                reporter.Info($"distill: the cache covers the first {h.VocabSize} of the student's {student.Config.VocabSize} ids: the student's distribution is renormalized over them");
            return cache;
        }
        catch { cache.Dispose(); throw; }
    }

    static string Teacher(DistillationCacheHeader h) => h.Options["teacher"]?.GetValue<string>() ?? "TEACHER";
    static string? Adapter(DistillationCacheHeader h) => h.Options["adapter"]?.GetValue<string>();

    /// <summary>Every row the run draws (<see cref="DistillationCacheBuilder.RowsOfRun"/>) must be in the cache; if
    /// some are not, the error says how many, where the first is, which data settings differ from the cache's, and the
    /// command that rebuilds it.</summary>
    public static void CheckCoverage(DistillationCacheFile cache, TrainOptions o, TrainingRows rows)
    {
        long needed = DistillationCacheBuilder.RowsOfRun(o, rows);
        long missing = 0, first = -1;
        for (long r = 0; r < needed; r++)
        {
            var (tokens, targets, _) = rows.RowWithLength(r);
            if (cache.Find(DistillationCache.Key(tokens, targets)) >= 0) continue;
            if (missing++ == 0) first = r;
        }
        if (missing == 0) return;
        var h = cache.Header;
        var built = h.Options["data"] as JsonObject;
        var run = DistillationCacheBuilder.RowOptions(o);
        var differences = new List<string>();
        foreach (var key in DistillationCacheBuilder.RowSettings)
        {
            var was = built?[key];
            if (!JsonNode.DeepEquals(was, run[key]))
                differences.Add($"{key} {Show(was)} in the cache, {Show(run[key])} here");
        }
        long rowsPerStep = (long)o.BatchSize * o.GradAccum;
        throw new DataFormatException(cache.Path, 0,
            $"{missing:N0} of the {needed:N0} rows this run draws are not in the teacher cache (the first: row {first}, in step {first / rowsPerStep + 1}); " +
            (differences.Count > 0 ? "settings that differ: " + string.Join(", ", differences)
                : "the data settings are the cache's, so the rows' tokens differ: the data files changed since, or the teacher's chat template renders them otherwise than the student's (give both the same --template)") +
            $"; rebuild with {DistillationCacheBuilder.RebuildCommand(o, Teacher(h), Adapter(h), h.TopK, h.Temperature, cache.Path)}");
    }

    static string Show(JsonNode? value) => value == null ? "unset" : value.ToJsonString();

    /// <summary>Hook the cached loss into the student; the caller disposes the loss, then the file.</summary>
    public static CachedDistillationLoss Start(TrainOptions o, DistillationCacheFile cache, TrainableLlama student, ITrainingReporter reporter)
    {
        var s = o.DistillationSettings;
        // A micro-batch's records: ids and log-probs [B·T, K], rests [B·T].
        MemoryBudget.Require(checked((long)o.BatchSize * o.SeqLen * (8L * cache.Header.TopK + 4)),
            $"the teacher cache's records of a micro-batch ({o.BatchSize}×{o.SeqLen} positions × {cache.Header.TopK} ids)");
        var loss = new CachedDistillationLoss(cache, s, o.BatchSize, o.SeqLen);
        student.LogitsLoss = loss;
        var h = cache.Header;
        reporter.Info($"distill: teacher cache {cache.Path} ({Teacher(h)}{(Adapter(h) is string a ? " + adapter " + a : "")}; top {h.TopK} of {h.VocabSize} ids at T = {h.Temperature:G3}, " +
                      $"{h.Sequences:N0} rows, {h.Positions:N0} positions); loss = {1 - s.Ratio:G3}·CE + {s.Ratio:G3}·T²·{DistillationRun.DivergenceText(s.Divergence)} " +
                      $"over the {h.TopK} ids and the rest; validation loss is the plain cross-entropy");
        return loss;
    }
}
