using Hone.Tensors;
using Xunit;

namespace Hone.Tests.Tensors;

public unsafe class NativeBufferTests
{
    /// <summary>Small buffers and large ones (2 MiB-aligned, advised for huge pages) are zeroed, aligned and writable
    /// to their last byte, and report the length asked for rather than the rounded allocation.</summary>
    [Theory]
    [InlineData(0L)] [InlineData(1L)] [InlineData(4095L)] [InlineData((4L << 20) - 1)] [InlineData(4L << 20)] [InlineData((5L << 20) + 3)]
    public void Buffers_of_every_size_are_zeroed_aligned_and_writable(long bytes)
    {
        using var buffer = new NativeBuffer(bytes);
        Assert.Equal(bytes, buffer.Length);
        Assert.Equal(0, (long)buffer.Pointer % NativeBuffer.Alignment);
        if (bytes >= 4L << 20 && OperatingSystem.IsLinux()) Assert.Equal(0, (long)buffer.Pointer % (2L << 20));
        for (long i = 0; i < bytes; i += 4093) Assert.Equal(0, buffer.Pointer[i]);
        if (bytes == 0) return;
        Assert.Equal(0, buffer.Pointer[bytes - 1]);
        buffer.Pointer[bytes - 1] = 7;
        buffer.Pointer[0] = 9;
        buffer.Clear();
        Assert.Equal(0, buffer.Pointer[bytes - 1] | buffer.Pointer[0]);
    }
}
