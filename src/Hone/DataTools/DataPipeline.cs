using System.Diagnostics;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using Hone.Tensors;
using Hone.Formats;

namespace Hone.DataTools;

/// <summary>Malformed lines: an error naming file and line, or with SkipBadLines a count and the first few messages.</summary>
public sealed class BadLineLog(string file, bool skip)
{
    public const int MaxExamples = 5;
    readonly List<string> _examples = [];

    public long Count { get; private set; }
    public IReadOnlyList<string> Examples => _examples;

    public void Report(long line, string message)
    {
        if (!skip) throw new DataFormatException(file, line, message + " (--skip-bad-lines skips such lines)");
        Count++;
        if (_examples.Count < MaxExamples) _examples.Add($"{file}:{line}: {message}");
    }
}

/// <summary>
/// The loop every tool runs: read a batch of lines, work on them in parallel on a <see cref="WorkerPool"/> (parsing,
/// hashing, scoring — per-record results go into arrays indexed by position in the batch), then consume the results
/// in file order on the calling thread (decisions, writing). Batches are bounded in lines and bytes, so memory does
/// not depend on the file size. Progress goes to a callback at most every two seconds.
/// </summary>
internal sealed unsafe class DataPipeline : IDisposable
{
    public const int DefaultMaxLines = 4096;
    public const int DefaultMaxBytes = 8 << 20;

    readonly JsonlReader _reader;
    readonly WorkerPool _pool;
    readonly bool _ownsPool;
    readonly string _tool;
    readonly Action<string>? _progress;
    readonly CancellationToken _cancel;
    readonly int _maxLines, _maxBytes;
    readonly Stopwatch _clock = Stopwatch.StartNew();
    double _lastReport;
    Action<int, int>? _body;
    int _next, _count;

    public LineBatch Batch { get; } = new();
    public int Threads => _pool.Threads;
    public int MaxLines => _maxLines;
    public long RecordsRead { get; private set; }

    public DataPipeline(JsonlReader reader, int threads, string tool, Action<string>? progress, CancellationToken cancel,
        int maxLines = DefaultMaxLines, int maxBytes = DefaultMaxBytes, WorkerPool? pool = null)
    {
        _reader = reader;
        _ownsPool = pool == null;
        _pool = pool ?? new WorkerPool(WorkerPool.ResolveThreadCount(threads));
        _tool = tool;
        _progress = progress;
        _cancel = cancel;
        _maxLines = maxLines;
        _maxBytes = maxBytes;
    }

    /// <summary>Read the next batch; false at the end of the file.</summary>
    public bool Next()
    {
        _cancel.ThrowIfCancellationRequested();
        Report(false);
        if (!_reader.ReadBatch(Batch, _maxLines, _maxBytes)) { Report(true); return false; }
        RecordsRead += Batch.Count;
        return true;
    }

    /// <summary>Run body(index in batch, worker) for every line of the batch, spread over the pool's threads.</summary>
    public void ForEach(Action<int, int> body) => For(Batch.Count, body);

    public void For(int count, Action<int, int> body)
    {
        _body = body;
        _count = count;
        _next = 0;
        var handle = GCHandle.Alloc(this);
        try { _pool.Run(&Job, (void*)GCHandle.ToIntPtr(handle)); }
        catch (AggregateException e) when (e.InnerException != null) { ExceptionDispatchInfo.Capture(e.InnerException).Throw(); }
        finally { handle.Free(); _body = null; }
    }

    static void Job(void* context, int thread, int threads)
    {
        var self = (DataPipeline)GCHandle.FromIntPtr((nint)context).Target!;
        var body = self._body!;
        int i;
        while ((i = Interlocked.Increment(ref self._next) - 1) < self._count) body(i, thread);
    }

    void Report(bool final)
    {
        if (_progress == null) return;
        double now = _clock.Elapsed.TotalSeconds;
        if (final ? now < 2 : now - _lastReport < 2) return;
        _lastReport = now;
        long done = _reader.Position, total = Math.Max(1, _reader.Length);
        _progress($"{_tool}: {100.0 * done / total:F0}% ({Megabytes(done)} of {Megabytes(total)} MB, {RecordsRead:N0} records, {Megabytes((long)(done / Math.Max(now, 1e-9)))} MB/s)");
    }

    static string Megabytes(long bytes) => bytes < 10_000_000 ? $"{bytes / 1e6:F1}" : $"{bytes / 1e6:F0}";

    public void Dispose()
    {
        if (_ownsPool) _pool.Dispose();
    }
}

/// <summary>Checks shared by the tools.</summary>
internal static class DataChecks
{
    public static void DistinctOutput(string input, params string?[] outputs)
    {
        var full = Path.GetFullPath(input);
        var seen = new HashSet<string>();
        foreach (var o in outputs)
        {
            if (o == null) continue;
            var f = Path.GetFullPath(o);
            if (f == full) throw new ArgumentException($"{o}: the output would overwrite the input");
            if (!seen.Add(f)) throw new ArgumentException($"{o}: named as two different outputs");
        }
    }
}
