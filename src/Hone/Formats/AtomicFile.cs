namespace Hone.Formats;

/// <summary>Write-then-rename: outputs and checkpoints never exist half-written under their final name.</summary>
public static class AtomicFile
{
    /// <summary>A hidden temporary sibling of <paramref name="path"/> (".NAME.PID.GUID.tmp" in the same directory, which
    /// is created), on the same file system so that the final move is a rename.</summary>
    public static string TemporarySibling(string path)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        return Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
    }

    public static void Write(string path, Action<Stream> write)
    {
        var full = Path.GetFullPath(path);
        var temp = TemporarySibling(full);
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>Open a temporary file beside <paramref name="path"/> for a writer that commits several outputs together
    /// (train and validation halves, an output and its report): nothing appears under a final name until Commit,
    /// and disposing an uncommitted file deletes it.</summary>
    public static PendingFile Begin(string path) => new(path);

    public static void WriteAllText(string path, string text) =>
        Write(path, s => { using var w = new StreamWriter(s, new System.Text.UTF8Encoding(false), leaveOpen: true); w.Write(text); });

    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        var copy = bytes.ToArray();
        Write(path, s => s.Write(copy));
    }
}

/// <summary>A file being written under a temporary name; see <see cref="AtomicFile.Begin"/>.</summary>
public sealed class PendingFile : IDisposable
{
    readonly string _temp;
    FileStream? _stream;
    bool _committed;

    public string Path { get; }
    public Stream Stream => _stream ?? throw new ObjectDisposedException(Path);

    internal PendingFile(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
        _temp = AtomicFile.TemporarySibling(Path);
        _stream = new FileStream(_temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
    }

    /// <summary>Flush to disk and move the file to its final name.</summary>
    public void Commit()
    {
        if (_committed) return;
        var stream = _stream ?? throw new ObjectDisposedException(Path);
        stream.Flush(flushToDisk: true);
        stream.Dispose();
        _stream = null;
        File.Move(_temp, Path, overwrite: true);
        _committed = true;
    }

    public void Dispose()
    {
        if (_committed) return;
        _stream?.Dispose();
        _stream = null;
        try { File.Delete(_temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
