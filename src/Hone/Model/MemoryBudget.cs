namespace Hone.Model;

/// <summary>How much memory this process may use, to refuse a run whose buffers cannot fit before allocating any.</summary>
public static class MemoryBudget
{
    /// <summary>The memory available to the process: physical memory, or the container's limit when there is one.</summary>
    public static long AvailableBytes => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes is long b and > 0 ? b : long.MaxValue;

    /// <summary>Throw when <paramref name="bytes"/> (a lower bound of what an operation allocates) exceed the memory
    /// available; <paramref name="what"/> says what needs it and how to need less.</summary>
    public static void Require(long bytes, string what)
    {
        long available = AvailableBytes;
        if (bytes > available)
            throw new ArgumentException($"{what} needs at least {Text(bytes)}, more than the {Text(available)} this machine has");
    }

    public static string Text(long bytes) => bytes == long.MaxValue ? "more than 8 EiB" : bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F1} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F1} MiB",
        _ => $"{bytes / 1024.0:F1} KiB",
    };
}
