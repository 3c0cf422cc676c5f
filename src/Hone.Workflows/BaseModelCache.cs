using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Formats;

namespace Hone.Workflows;

/// <summary>
/// The quickstart's generated base model, built once and reused. The base is a pure function of its recipe (shape,
/// steps, learning rate, seed, scale, threads), of the data it is trained on and of the code that trains it, so the
/// key hashes all three: the recipe text, the bytes of every input file (the generated corpora: a change to a
/// generator changes them) and the module ids of the engine's assemblies (a deterministic build gives the same id for
/// the same source, so any change to the code that could move a number makes a new entry). An entry holds the
/// pretrained base and its initialization folder, and a manifest with the SHA-256 of every file, checked on every use;
/// a damaged entry is reported and built again, never used.
/// </summary>
public static class BaseModelCache
{
    /// <summary>$HONE_CACHE, else $XDG_CACHE_HOME/hone, else ~/.cache/hone.</summary>
    public static string DefaultDirectory()
    {
        if (Environment.GetEnvironmentVariable("HONE_CACHE") is { Length: > 0 } hone) return hone;
        if (Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg) return Path.Combine(xdg, "hone");
        return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "hone");
    }

    /// <summary>The entry's name: 16 hex digits of SHA-256 over the recipe, the input files and the code version.</summary>
    public static string Key(string recipe, IEnumerable<string> inputFiles)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Add(string text) { var bytes = Encoding.UTF8.GetBytes(text); hash.AppendData(BitConverter.GetBytes(bytes.Length)); hash.AppendData(bytes); }
        Add(recipe);
        foreach (var assembly in new[] { typeof(Hone.Tensors.Xoshiro256).Assembly, typeof(Hone.Training.Trainer).Assembly, typeof(BaseModelCache).Assembly })
            Add(assembly.GetName().Name + " " + assembly.ManifestModule.ModuleVersionId.ToString("N"));
        var buffer = new byte[1 << 16];
        foreach (var file in inputFiles)
        {
            Add(Path.GetFileName(file));
            using var stream = File.OpenRead(file);
            hash.AppendData(BitConverter.GetBytes(stream.Length));
            for (int n; (n = stream.Read(buffer)) > 0;) hash.AppendData(buffer, 0, n);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset())[..16];
    }

    static string Entry(string cacheDirectory, string key) => Path.Combine(cacheDirectory, "quickstart-base", key);

    /// <summary>Copies a verified entry's folders into place; false (with the reason logged) when there is none or it
    /// is damaged, in which case the caller builds the base and <see cref="Store"/>s it.</summary>
    public static bool TryRestore(string cacheDirectory, string key, IReadOnlyDictionary<string, string> folders, Action<string> log)
    {
        string entry = Entry(cacheDirectory, key);
        if (!Directory.Exists(entry)) return false;
        string manifestPath = Path.Combine(entry, "manifest.json");
        string? problem = Verify(entry, manifestPath, folders.Keys);
        if (problem != null)
        {
            log($"   cached base model {entry} is damaged ({problem}); building it again");
            TryDelete(entry);
            return false;
        }
        foreach (var (name, target) in folders)
        {
            if (Directory.Exists(target)) Directory.Delete(target, recursive: true);
            CopyFolder(Path.Combine(entry, name), target);
        }
        return true;
    }

    /// <summary>Stores the built folders under the key: copied to a temporary folder, hashed into the manifest, then
    /// renamed into place (a concurrent run that got there first wins; ours is dropped).</summary>
    public static void Store(string cacheDirectory, string key, string recipe, IReadOnlyDictionary<string, string> folders, Action<string> log)
    {
        string entry = Entry(cacheDirectory, key);
        string temporary = entry + $".tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            Directory.CreateDirectory(temporary);
            var files = new JsonObject();
            foreach (var (name, source) in folders)
            {
                CopyFolder(source, Path.Combine(temporary, name));
                foreach (var file in Directory.EnumerateFiles(Path.Combine(temporary, name), "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
                    files[Path.GetRelativePath(temporary, file).Replace('\\', '/')] = Sha256(file);
            }
            var manifest = new JsonObject { ["key"] = key, ["recipe"] = recipe, ["files"] = files };
            File.WriteAllText(Path.Combine(temporary, "manifest.json"), manifest.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
            if (Directory.Exists(entry)) { TryDelete(temporary); return; }
            Directory.Move(temporary, entry);
            log($"   base model cached in {entry} (later runs with the same recipe, data and code reuse it)");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The run itself is complete; only the reuse is lost, and the reason is said.
            log($"   could not cache the base model in {entry}: {e.Message}");
            TryDelete(temporary);
        }
    }

    static string? Verify(string entry, string manifestPath, IEnumerable<string> folders)
    {
        if (!File.Exists(manifestPath)) return "no manifest.json";
        JsonObject files;
        try
        {
            files = JsonNode.Parse(File.ReadAllText(manifestPath))?["files"] as JsonObject ?? throw new FormatException("no \"files\" object");
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or FormatException)
        {
            return $"manifest.json: {e.Message}";
        }
        foreach (var folder in folders)
            if (!files.Any(f => f.Key.StartsWith(folder + "/", StringComparison.Ordinal))) return $"no files of {folder}/";
        foreach (var (relative, expected) in files)
        {
            string path = Path.Combine(entry, relative);
            if (relative.Contains("..", StringComparison.Ordinal) || !File.Exists(path)) return $"{relative} is missing";
            if (Sha256(path) != (string?)expected) return $"{relative} does not match its SHA-256";
        }
        return null;
    }

    static string Sha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    static void CopyFolder(string source, string target)
    {
        Directory.CreateDirectory(target);
        foreach (var file in Directory.EnumerateFiles(source))
            File.Copy(file, Path.Combine(target, Path.GetFileName(file)), overwrite: true);
        foreach (var folder in Directory.EnumerateDirectories(source))
            CopyFolder(folder, Path.Combine(target, Path.GetFileName(folder)));
    }

    static void TryDelete(string folder)
    {
        try { if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
