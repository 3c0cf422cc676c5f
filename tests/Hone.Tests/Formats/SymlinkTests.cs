using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Tests.Model;
using Xunit;

namespace Hone.Tests.Formats;

/// <summary>Weights reached through symbolic links, as the Hugging Face hub cache lays them out
/// (snapshots/REV/model.safetensors → ../../blobs/SHA): the mapping must be the target's, not the link's.</summary>
public class SymlinkTests
{

    static float[] Logits(string path, int[] tokens) => ModelLogits.Of(path, tokens);

    /// <summary>A hub-cache-shaped copy of a fixture directory: every file a relative link into blobs/.</summary>
    static string HubCache(TempDirectory dir, string variant)
    {
        var blobs = Directory.CreateDirectory(Path.Combine(dir.Path, "models--test--tiny", "blobs")).FullName;
        var snapshot = Directory.CreateDirectory(Path.Combine(dir.Path, "models--test--tiny", "snapshots", "0123abcd")).FullName;
        int i = 0;
        foreach (var f in Directory.GetFiles(ReferenceLogitsTests.FixturePath(variant)))
        {
            var blob = Path.Combine(blobs, $"blob{i++}");
            File.Copy(f, blob);
            File.CreateSymbolicLink(Path.Combine(snapshot, Path.GetFileName(f)), Path.Combine("..", "..", "blobs", Path.GetFileName(blob)));
        }
        return snapshot;
    }

    [SkippableFact]
    public void Hub_cache_of_symlinks_loads_with_the_same_logits()
    {
        Skip.IfNot(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS(), "symbolic links without privileges");
        using var dir = new TempDirectory();
        var snapshot = HubCache(dir, "llama-hf-f32");
        Assert.NotNull(new FileInfo(Path.Combine(snapshot, "model.safetensors")).LinkTarget);
        var r = HoneCli.Run("inspect", snapshot, "--check");
        Assert.True(r.ExitCode == 0, r.ToString());
        var (tokens, _) = ReferenceLogitsTests.Expected("llama-hf-f32");
        Assert.Equal(Logits(ReferenceLogitsTests.FixturePath("llama-hf-f32"), tokens), Logits(snapshot, tokens));
        // inspect lists the blob's size, not the link's
        Assert.Contains("model.safetensors (88,728 bytes)", r.Stdout);
    }

    [SkippableFact]
    public void Gguf_through_a_symlink_loads_with_the_same_logits()
    {
        Skip.IfNot(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS(), "symbolic links without privileges");
        using var dir = new TempDirectory();
        var link = dir.File("linked.gguf");
        File.CreateSymbolicLink(link, ReferenceLogitsTests.FixturePath("llama-gguf-f32"));
        var r = HoneCli.Run("inspect", link, "--check");
        Assert.True(r.ExitCode == 0, r.ToString());
        var (tokens, _) = ReferenceLogitsTests.Expected("llama-gguf-f32");
        Assert.Equal(Logits(ReferenceLogitsTests.FixturePath("llama-gguf-f32"), tokens), Logits(link, tokens));
    }

    [SkippableFact]
    public void Dangling_symlink_is_a_clean_error()
    {
        Skip.IfNot(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS(), "symbolic links without privileges");
        using var dir = new TempDirectory();
        var model = CorruptFileTests.CopyFixture(dir, "llama-hf-f32");
        var weights = Path.Combine(model, "model.safetensors");
        File.Delete(weights);
        File.CreateSymbolicLink(weights, Path.Combine(dir.Path, "no-such-blob"));
        CorruptFileTests.AssertCleanFailure(HoneCli.Run("inspect", model), "model.safetensors");
    }
}
