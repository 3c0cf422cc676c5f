using System.IO.MemoryMappedFiles;

namespace Hone.Formats;

/// <summary>A read-only memory mapping of a whole file; tensor data is read in place from it.</summary>
public sealed unsafe class MappedFile : IDisposable
{
    readonly MemoryMappedFile? _map;
    readonly MemoryMappedViewAccessor? _view;
    byte* _pointer;

    public string Path { get; }
    public long Length { get; }

    public MappedFile(string path)
    {
        Path = path;
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"{path}: file not found", path);
        Length = info.Length;
        if (Length == 0) return;
        _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref _pointer);
        _pointer += _view.PointerOffset;
    }

    public byte* Pointer => _pointer != null || Length == 0 ? _pointer : throw new ObjectDisposedException(Path);

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
