using System.Runtime.InteropServices;
using Hone.Tensors;

namespace Hone.Training;

/// <summary>One trainable tensor: a view of its values (in the weight arena or an adapter) and of its gradient.</summary>
/// <param name="Rows">rows (1 for vectors)</param>
/// <param name="WeightDecay">false for norms and biases (as Hugging Face's Trainer does)</param>
public sealed unsafe class Parameter(string name, nint value, nint gradient, int rows, int cols, bool weightDecay)
{
    public string Name { get; } = name;
    public float* Value => (float*)value;
    public float* Gradient => (float*)gradient;
    public int Rows { get; } = rows;
    public int Cols { get; } = cols;
    public long Count => (long)Rows * Cols;
    public bool WeightDecay { get; } = weightDecay;
    public Span<float> Values => new(Value, checked((int)Count));
    public Span<float> Gradients => new(Gradient, checked((int)Count));
}

/// <summary>Gradients of all trainable parameters in one buffer, with named views.</summary>
public sealed unsafe class GradientArena : IDisposable
{
    readonly NativeBuffer _buffer;
    long _used;

    public GradientArena(long floats) => _buffer = new NativeBuffer(floats * 4 + 64 * 64);

    public nint Take(long floats)
    {
        long bytes = NativeBuffer.Align(floats * 4);
        if (_used + bytes > _buffer.Length) throw new InvalidOperationException("gradient arena overflow");
        var p = (nint)(_buffer.Pointer + _used);
        _used += bytes;
        return p;
    }

    /// <summary>Zero the used part, split over the pool's threads (half a GiB for a 135M model's full fine-tune).</summary>
    public void Clear(WorkerPool pool)
    {
        var job = new ClearJob { Start = _buffer.Pointer, Bytes = _used };
        pool.Run(&ClearWorker, &job);
    }

    struct ClearJob { public byte* Start; public long Bytes; }

    static void ClearWorker(void* context, int thread, int threads)
    {
        ref var job = ref *(ClearJob*)context;
        long pages = (job.Bytes + 4095) / 4096;
        long start = pages * thread / threads * 4096, end = Math.Min(job.Bytes, pages * (thread + 1) / threads * 4096);
        for (long at = start; at < end; at += int.MaxValue) NativeMemory.Clear(job.Start + at, (nuint)Math.Min(int.MaxValue, end - at));
    }
    public void Dispose() => _buffer.Dispose();
}
