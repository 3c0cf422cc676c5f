using System.Runtime.InteropServices;

namespace Hone.Tensors.Emitted;

/// <summary>
/// Machine code placed in its own pages: mapped writable, filled, then switched to read+execute (never both, W^X).
/// Linux x64 only (mmap/mprotect from libc). The pages live for the rest of the process: kernels are emitted once.
/// </summary>
public sealed unsafe partial class ExecutableMemory
{
    const int ProtectRead = 1, ProtectWrite = 2, ProtectExecute = 4;
    const int MapPrivate = 0x02, MapAnonymous = 0x20;

    /// <summary>The first byte of the code.</summary>
    public byte* Pointer { get; }
    public int Length { get; }

    ExecutableMemory(byte* pointer, int length) { Pointer = pointer; Length = length; }

    /// <summary>True where this process can map executable pages the way <see cref="TryCreate"/> does.</summary>
    public static bool IsPlatformSupported =>
        OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64;

    /// <summary>Copy <paramref name="code"/> into fresh executable pages; null (with the reason) when the platform or
    /// the kernel's policy (SELinux execmem, seccomp) refuses.</summary>
    public static ExecutableMemory? TryCreate(ReadOnlySpan<byte> code, out string? failure)
    {
        failure = null;
        if (!IsPlatformSupported) { failure = "executable memory is implemented for Linux x64 only"; return null; }
        if (code.IsEmpty) { failure = "no code"; return null; }
        nuint size = (nuint)((code.Length + 4095) & ~4095);
        nint address = Mmap(0, size, ProtectRead | ProtectWrite, MapPrivate | MapAnonymous, -1, 0);
        if (address == -1 || address == 0) { failure = $"mmap failed (errno {Marshal.GetLastPInvokeError()})"; return null; }
        code.CopyTo(new Span<byte>((void*)address, code.Length));
        if (Mprotect(address, size, ProtectRead | ProtectExecute) != 0)
        {
            failure = $"mprotect to read+execute failed (errno {Marshal.GetLastPInvokeError()})";
            Munmap(address, size);
            return null;
        }
        return new ExecutableMemory((byte*)address, code.Length);
    }

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial nint Mmap(nint address, nuint length, int protection, int flags, int fileDescriptor, nint offset);

    [LibraryImport("libc", EntryPoint = "mprotect", SetLastError = true)]
    private static partial int Mprotect(nint address, nuint length, int protection);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    private static partial int Munmap(nint address, nuint length);
}
