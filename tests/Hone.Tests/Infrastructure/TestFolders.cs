namespace Hone.Tests.Infrastructure;

/// <summary>Folders the shared test fixtures build once per test process (tiny models, adapters): deleted when the
/// process exits, so repeated runs do not fill the temp folder.</summary>
public static class TestFolders
{
    /// <summary>Returns <paramref name="directory"/>, deleted (best effort) when the test process exits.</summary>
    public static string DeletedAtExit(string directory)
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { if (Directory.Exists(directory)) Directory.Delete(directory, true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        };
        return directory;
    }
}
