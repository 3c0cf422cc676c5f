using System.Runtime.InteropServices;

namespace Hone.Tensors;

/// <summary>A zeroed, 64-byte aligned block of native memory (weights, activations, KV cache).
/// Native so the GC never moves or scans it and SIMD loads are aligned.</summary>
public sealed unsafe class NativeBuffer : IDisposable
{
    public const int Alignment = 64;
    byte* _ptr;

    public long Length { get; }

    public NativeBuffer(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        Length = bytes;
        if (bytes >= HugePageBytes && OperatingSystem.IsLinux())
        {
            // Large buffers (weights, KV cache, activations) ask for 2 MiB pages: streaming through 4 KiB pages costs a
            // page walk every 4 KiB, and on this VM 2–4 MB buffers in small pages made copies and norms 3–10× slower.
            // Aligned to 2 MiB, every whole 2 MiB of the buffer is advised; a partial last one keeps small pages
            // (rounding the size up instead cost up to 70% more memory for a 2.4 MB buffer). Clearing faults them in.
            _ptr = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, (nuint)HugePageBytes);
            _ = MemoryAdvise(_ptr, (nuint)(bytes & ~(HugePageBytes - 1)), AdviseHugePage); // best effort: without THP it stays 4 KiB pages
        }
        else _ptr = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), Alignment);
        NativeMemory.Clear(_ptr, (nuint)bytes);
        if (bytes > 0) GC.AddMemoryPressure(bytes);
    }

    const long HugePageBytes = 2 << 20;
    const int AdviseHugePage = 14; // MADV_HUGEPAGE

    [DllImport("libc", EntryPoint = "madvise")]
    static extern int MemoryAdvise(void* address, nuint length, int advice);

    public byte* Pointer => _ptr != null ? _ptr : throw new ObjectDisposedException(nameof(NativeBuffer));

    public float* AsFloats => (float*)Pointer;

    public Span<float> Floats(long offsetFloats, int count)
    {
        if (offsetFloats < 0 || (offsetFloats + count) * 4 > Length) throw new ArgumentOutOfRangeException(nameof(offsetFloats));
        return new Span<float>(Pointer + offsetFloats * 4, count);
    }

    public Span<byte> Bytes(long offset, int count)
    {
        if (offset < 0 || offset + count > Length) throw new ArgumentOutOfRangeException(nameof(offset));
        return new Span<byte>(Pointer + offset, count);
    }

    public void Clear() => NativeMemory.Clear(Pointer, (nuint)Length);

    public void Dispose()
    {
        if (_ptr == null) return;
        NativeMemory.AlignedFree(_ptr);
        _ptr = null;
        if (Length > 0) GC.RemoveMemoryPressure(Length);
        GC.SuppressFinalize(this);
    }

    ~NativeBuffer() { if (_ptr != null) NativeMemory.AlignedFree(_ptr); }

    /// <summary>Round <paramref name="bytes"/> up to the buffer alignment (for carving named views out of one buffer).</summary>
    public static long Align(long bytes) => (bytes + Alignment - 1) & ~(long)(Alignment - 1);
}
