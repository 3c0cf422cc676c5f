using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Transforms;
using Hone.Transforms.Pruning;
using Xunit;

namespace Hone.Tests.Transforms;

/// <summary>Wanda: the zeros are exactly the lowest |W_ij|·‖X_j‖ of each row (or all but the best N of every M inputs),
/// recomputed here from the original weights and the importance matrix; the embedding and head stay whole.</summary>
public class SparsePrunerTests
{
    static (string Text, string Imatrix) Calibrate(TempDirectory dir)
    {
        string text = dir.File("calibration.txt"), imatrix = dir.File("m.imatrix.gguf");
        File.WriteAllText(text, string.Concat(Enumerable.Range(0, 80).Select(i => $"Order {i} ships in {i % 4 + 2} days. ")));
        var r = HoneCli.Run("imatrix", TinyChatModel.Path, "-f", text, "-o", imatrix, "--ctx", "32");
        Assert.True(r.ExitCode == 0, r.ToString());
        return (text, imatrix);
    }

    static float[] Scores(float[] w, int rows, int cols, float[] meanSquares) =>
        Enumerable.Range(0, rows * cols).Select(i => MathF.Abs(w[i]) * MathF.Sqrt(meanSquares[i % cols])).ToArray();

    [Theory]
    [InlineData(0.5, 0, 0, false)]
    [InlineData(0.3, 0, 0, false)]
    [InlineData(0, 2, 4, false)]
    [InlineData(0, 1, 4, false)]
    [InlineData(0.5, 0, 0, true)]
    [InlineData(0, 2, 4, true)]
    public void The_zeros_are_the_lowest_scores_of_each_row_or_group(double sparsity, int keep, int group, bool magnitude)
    {
        using var dir = new TempDirectory();
        var (_, imatrix) = Calibrate(dir);
        var report = SparsePruner.Prune(new SparsePruneOptions(TinyChatModel.Path, magnitude ? null : imatrix, dir.File("pruned"), sparsity, keep, group));
        using var before = Checkpoint.Open(TinyChatModel.Path);
        using var original = LlamaWeights.Load(before);
        using var after = Checkpoint.Open(dir.File("pruned"));
        using var pruned = LlamaWeights.Load(after);
        var importance = ImportanceMatrix.Read(imatrix);
        long zeroed = 0;
        var prunedByName = pruned.Matrices().ToDictionary(m => m.Name);
        foreach (var m in original.Matrices())
        {
            var w = m.ToFloatArray();
            var p = prunedByName[m.Name].ToFloatArray();
            if (m.Name == original.TokenEmbedding.Name || m.Name == original.Output.Name) { Assert.Equal(w, p); continue; }
            var scores = Scores(w, m.Rows, m.Cols, magnitude ? Enumerable.Repeat(1f, m.Cols).ToArray() : importance.ColumnWeights(m.Name, 0, m.Cols, imatrix)!);
            for (int r = 0; r < m.Rows; r++)
            {
                var idx = group > 0 ? null : Enumerable.Range(0, m.Cols).OrderBy(j => scores[r * m.Cols + j]).ThenBy(j => j).Take((int)Math.Floor(sparsity * m.Cols)).ToHashSet();
                for (int j = 0; j < m.Cols; j++)
                {
                    bool drop;
                    if (group > 0)
                    {
                        int g0 = j / group * group;
                        int above = Enumerable.Range(g0, group).Count(i => scores[r * m.Cols + i] > scores[r * m.Cols + j] || (scores[r * m.Cols + i] == scores[r * m.Cols + j] && i < j));
                        drop = above >= keep;
                    }
                    else drop = idx!.Contains(j);
                    Assert.Equal(drop ? 0f : w[r * m.Cols + j], p[r * m.Cols + j]);
                    if (drop) zeroed++;
                }
            }
        }
        Assert.Equal(zeroed, report.Zeroed);
        if (group > 0) Assert.Equal((double)(group - keep) / group, (double)report.Zeroed / report.Prunable, 9);
    }

    [Fact]
    public void A_projection_the_importance_matrix_lacks_and_bad_patterns_are_refused()
    {
        using var dir = new TempDirectory();
        var (text, imatrix) = Calibrate(dir);
        var importance = ImportanceMatrix.Read(imatrix);
        importance.Entries.Remove("blk.1.ffn_down.weight");
        string partial = dir.File("partial.imatrix.gguf");
        importance.Write(partial);
        var e = Assert.Throws<ModelFormatException>(() => SparsePruner.Prune(new SparsePruneOptions(TinyChatModel.Path, partial, dir.File("x"))));
        Assert.Contains("blk.1.ffn_down.weight", e.Message);
        Assert.False(Directory.Exists(dir.File("x")));
        Assert.Throws<ArgumentException>(() => SparsePruner.Prune(new SparsePruneOptions(TinyChatModel.Path, imatrix, dir.File("x"), Keep: 4, Group: 4)));
        Assert.Throws<ArgumentException>(() => SparsePruner.Prune(new SparsePruneOptions(TinyChatModel.Path, imatrix, dir.File("x"), Sparsity: 1.5)));

        var cli = HoneCli.Run("prune", "sparse", TinyChatModel.Path, "--imatrix", imatrix, "--pattern", "2:4", "--out", dir.File("p"), "--eval", text, "--ctx", "64", "--json");
        Assert.True(cli.ExitCode == 0, cli.ToString());
        var json = JsonNode.Parse(cli.Stdout)!;
        Assert.Equal("2:4", (string)json["pattern"]!);
        Assert.True((double)json["perplexity_after"]! > 0);
        var bad = HoneCli.Run("prune", "sparse", TinyChatModel.Path, "--imatrix", imatrix, "--pattern", "2-4", "--out", dir.File("q"));
        Assert.Contains("is not N:M", bad.Stderr);
        var neither = HoneCli.Run("prune", "sparse", TinyChatModel.Path, "--out", dir.File("q"));
        Assert.Contains("give --imatrix F (Wanda: |W|·‖X‖) or --magnitude", neither.Stderr);
    }
}
