using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace Hone.Formats;

/// <summary>A read-only memory mapping of a whole file; tensor data is read in place from it.</summary>
public sealed unsafe class MappedFile : IDisposable
{
    readonly MemoryMappedFile? _map;
    readonly MemoryMappedViewAccessor? _view;
    byte* _pointer;

    /// <summary>The path as given (a symbolic link stays named as the user named it).</summary>
    public string Path { get; }
    public long Length { get; }

    public MappedFile(string path)
    {
        Path = path;
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
        // The length comes from the open handle, not from the directory entry: for a symbolic link (the Hugging Face
        // hub cache is all links) the entry's length is the link's, while the handle's is the target's, and the two
        // cannot disagree with what is mapped.
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None);
        try
        {
            Length = stream.Length;
            if (Length == 0) { stream.Dispose(); return; }
            _map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref _pointer);
            _pointer += _view.PointerOffset;
        }
        catch
        {
            _view?.Dispose();
            if (_map != null) _map.Dispose(); else stream.Dispose();
            throw;
        }
    }

    public byte* Pointer => _pointer != null || Length == 0 ? _pointer : throw new ObjectDisposedException(Path);

    const int AdviseDontNeed = 4; // MADV_DONTNEED

    [DllImport("libc", EntryPoint = "madvise")]
    static extern int MemoryAdvise(void* address, nuint length, int advice);

    /// <summary>
    /// Let the kernel drop the resident pages of [address, address + length) of a read-only mapping (the whole pages
    /// inside it): mapped pages count as the process's resident memory until dropped, so a pass that reads a model once,
    /// tensor by tensor (a merge), holds about one tensor's pages instead of the whole file's, and an expert cache holds
    /// its slots rather than every expert it ever read. The data stays readable: a later read faults it back in from
    /// the page cache. Best effort, Linux only.
    /// </summary>
    public static void ReleasePages(byte* address, long length)
    {
        if (!OperatingSystem.IsLinux() || length <= 0) return;
        long page = Environment.SystemPageSize;
        long start = ((long)address + page - 1) & ~(page - 1), end = ((long)address + length) & ~(page - 1);
        if (end > start) _ = MemoryAdvise((void*)start, (nuint)(end - start), AdviseDontNeed);
    }

    public void Dispose()
    {
        if (_view != null && _pointer != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _pointer = null;
        }
        _view?.Dispose();
        _map?.Dispose();
    }
}
