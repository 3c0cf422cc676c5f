using Xunit;

namespace Hone.Tests.Infrastructure;

/// <summary>
/// Locates the real test artifacts in ../shared/data (models, tokenizers, templates, datasets).
/// Tests that need them are [SkippableFact]s that call <see cref="Require"/>: skipped cleanly when the folder is absent.
/// Override with HONE_SHARED_DATA.
/// </summary>
public static class SharedData
{
    static readonly Lazy<string?> RootLazy = new(FindRoot);

    public static string? Root => RootLazy.Value;

    static string? FindRoot()
    {
        var env = Environment.GetEnvironmentVariable("HONE_SHARED_DATA");
        if (!string.IsNullOrEmpty(env) && Directory.Exists(env)) return env;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "shared", "data");
            if (File.Exists(Path.Combine(candidate, "SOURCES.md"))) return candidate;
        }
        return null;
    }

    /// <summary>Full path of a file or folder under shared/data, or skip the test when it is not there.</summary>
    public static string Require(string relative)
    {
        if (Root == null) throw new SkipException("shared/data is not present (set HONE_SHARED_DATA)");
        var path = Path.Combine(Root, relative);
        if (!File.Exists(path) && !Directory.Exists(path)) throw new SkipException($"shared/data/{relative} is not present");
        return path;
    }
}
