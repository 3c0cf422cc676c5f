using Hone.Formats;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Transforms;
using Xunit;

namespace Hone.Tests.Transforms;

/// <summary>hone imatrix and hone convert --imatrix through the command line.</summary>
public class ImatrixCliTests
{
    [Fact]
    public void Imatrix_then_convert_with_it_and_one_line_refusals()
    {
        using var dir = new TempDirectory();
        var model = TinyChatModel.Path;
        var text = string.Join(" ", Enumerable.Range(0, 200).Select(i => $"Order {i} ships in {i % 5 + 1} days and the customer is told so."));
        File.WriteAllText(dir.File("calib.txt"), text);
        var r = HoneCli.Run("imatrix", model, "--data", dir.File("calib.txt"), "--out", dir.File("a.gguf"), "--ctx", "32", "--chunks", "3", "--threads", "2");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("3 chunks", r.Stdout);
        var m = ImportanceMatrix.Read(dir.File("a.gguf"));
        Assert.Equal((3, 32), (m.ChunkCount, m.ChunkSize));
        Assert.Equal(TinyChatModel.Layers * 7, m.Entries.Count);
        Assert.All(m.Entries.Values, e => Assert.Equal(3 * 32, e.Counts[0])); // every row of every chunk, in every layer

        // Merge with itself: sums and counts double.
        r = HoneCli.Run("imatrix", "--in-file", dir.File("a.gguf"), "--in-file", dir.File("a.gguf"), "--out", dir.File("aa.gguf"));
        Assert.True(r.ExitCode == 0, r.ToString());
        var aa = ImportanceMatrix.Read(dir.File("aa.gguf"));
        Assert.Equal(6, aa.ChunkCount);
        Assert.All(aa.Entries.Values, e => Assert.Equal(6 * 32, e.Counts[0]));

        r = HoneCli.Run("convert", model, "--out", dir.File("q.gguf"), "--type", "q4_0", "--type-for", "ffn_down=q8_0", "--imatrix", dir.File("a.gguf"));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("tensors quantized with importance weights", r.Stdout);
        Assert.Contains("token_embd.weight", r.Stdout); // named among the tensors quantized unweighted
        using (var g = GgufFile.Open(dir.File("q.gguf")))
        {
            Assert.Equal(TensorType.Q8_0, g.Tensors.Single(t => t.Name == "blk.0.ffn_down.weight").Type);
            Assert.Equal(TensorType.Q4_0, g.Tensors.Single(t => t.Name == "blk.0.ffn_up.weight").Type);
        }

        // Refusals: one line naming the file (and the tensor where one is at fault), exit 1, nothing written.
        File.WriteAllText(dir.File("junk.gguf"), "not an importance matrix");
        r = HoneCli.Run("convert", model, "--out", dir.File("never.gguf"), "--type", "q4_0", "--imatrix", dir.File("junk.gguf"));
        Assert.Equal(1, r.ExitCode);
        var line = Assert.Single(r.Stderr.Trim().Split('\n'));
        Assert.Contains("junk.gguf", line);
        Assert.Contains("not an importance matrix", line);
        r = HoneCli.Run("convert", model, "--out", dir.File("never.gguf"), "--type", "q4_0", "--type-for", "ffn_dwn=q8_0");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("matches no 2D weight", r.Stderr);
        Assert.False(File.Exists(dir.File("never.gguf")));
        r = HoneCli.Run("imatrix", "--in-file", dir.File("a.gguf"), "--out", dir.File("x.gguf"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--data", r.Stderr);
    }
}
