using System.IO.MemoryMappedFiles;

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

    /// <summary>Give the whole pages inside [start, start + length) of a mapping back to the system (Linux madvise
    /// DONTNEED; elsewhere nothing): they leave the process's resident set, stay in the page cache, and read the same
    /// when touched again. What an expert cache calls after bringing an expert in from the file.</summary>
    public static void DropPages(byte* start, long length)
    {
        if (!OperatingSystem.IsLinux() || length <= 0) return;
        long page = Environment.SystemPageSize;
        long first = ((long)start + page - 1) & ~(page - 1), end = ((long)start + length) & ~(page - 1);
        if (end > first) _ = MemoryAdvise((void*)first, (nuint)(end - first), AdviseDontNeed);
    }

    const int AdviseDontNeed = 4; // MADV_DONTNEED

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "madvise")]
    static extern int MemoryAdvise(void* address, nuint length, int advice);

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
