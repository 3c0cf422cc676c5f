using System.Buffers.Binary;
using System.Text;
using Hone.Formats;
using Hone.Tests.Infrastructure;
using Hone.Tests.Model;
using Xunit;

namespace Hone.Tests.Formats;

/// <summary>
/// Corrupted copies of real model files: every one must give a one-line error naming the file and the tensor or key
/// (expected vs actual), exit code 1, and no stack dump — never a crash or a silent wrong answer.
/// </summary>
public class CorruptFileTests
{
    const string Stories = "models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf";

    internal static void AssertCleanFailure(HoneCli.Result r, params string[] mustContain)
    {
        Assert.True(r.ExitCode == 1, r.ToString());
        var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one error line:\n{r.Stderr}");
        Assert.StartsWith("error: ", lines[0]);
        Assert.DoesNotContain("   at ", r.Stderr);
        foreach (var s in mustContain) Assert.Contains(s, lines[0]);
    }

    static (byte[] Bytes, int NameAt) GgufWithTensorName(string name)
    {
        var bytes = File.ReadAllBytes(SharedData.Require(Stories));
        int at = bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(name));
        Assert.True(at > 0, $"{name} not found");
        return (bytes, at);
    }

    static HoneCli.Result InspectCopy(TempDirectory dir, byte[] bytes, bool check = true, string name = "model.gguf")
    {
        var path = dir.File(name);
        File.WriteAllBytes(path, bytes);
        return check ? HoneCli.Run("inspect", path, "--check") : HoneCli.Run("inspect", path);
    }

    [SkippableTheory]
    [InlineData(3)] [InlineData(20)] [InlineData(300)] [InlineData(3000)] [InlineData(-1000)]
    public void Truncated_gguf_names_the_file(int cut)
    {
        var bytes = File.ReadAllBytes(SharedData.Require(Stories));
        int length = cut > 0 ? cut : bytes.Length + cut;
        using var dir = new TempDirectory();
        var r = InspectCopy(dir, bytes[..length]);
        AssertCleanFailure(r, "model.gguf");
        Assert.True(r.Stderr.Contains("truncated") || r.Stderr.Contains("runs past the end"), r.Stderr);
    }

    [SkippableFact]
    public void Wrong_magic_and_unknown_version_are_named()
    {
        var bytes = File.ReadAllBytes(SharedData.Require(Stories));
        using var dir = new TempDirectory();
        var badMagic = (byte[])bytes.Clone(); badMagic[0] = (byte)'X';
        AssertCleanFailure(InspectCopy(dir, badMagic, check: false), "model.gguf", "not a GGUF file");
        var badVersion = (byte[])bytes.Clone(); BinaryPrimitives.WriteUInt32LittleEndian(badVersion.AsSpan(4), 99);
        AssertCleanFailure(InspectCopy(dir, badVersion, check: false), "unsupported GGUF version 99");
    }

    [SkippableFact]
    public void Unknown_tensor_type_is_named_with_the_tensor()
    {
        var (bytes, at) = GgufWithTensorName("blk.0.attn_q.weight");
        int typeAt = at + "blk.0.attn_q.weight".Length + 4 + 2 * 8;
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(typeAt), 77);
        using var dir = new TempDirectory();
        AssertCleanFailure(InspectCopy(dir, bytes, check: false), "model.gguf", "blk.0.attn_q.weight", "unknown ggml tensor type 77");
    }

    [SkippableFact]
    public void Bad_offsets_are_named_with_the_tensor()
    {
        var (bytes, at) = GgufWithTensorName("blk.0.attn_q.weight");
        int offsetAt = at + "blk.0.attn_q.weight".Length + 4 + 2 * 8 + 4;
        using var dir = new TempDirectory();
        var misaligned = (byte[])bytes.Clone();
        BinaryPrimitives.WriteInt64LittleEndian(misaligned.AsSpan(offsetAt), BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(offsetAt)) + 1);
        AssertCleanFailure(InspectCopy(dir, misaligned, check: false), "blk.0.attn_q.weight", "not aligned");
        var beyond = (byte[])bytes.Clone();
        BinaryPrimitives.WriteInt64LittleEndian(beyond.AsSpan(offsetAt), 1L << 40);
        AssertCleanFailure(InspectCopy(dir, beyond, check: false), "blk.0.attn_q.weight", "runs past the end");
    }

    [SkippableFact]
    public void Shape_mismatch_says_expected_and_actual()
    {
        // [64, 64] → [32, 128]: the same byte size, so the file stays consistent and only the model check can object.
        var (bytes, at) = GgufWithTensorName("blk.0.attn_q.weight");
        int firstDimAt = at + "blk.0.attn_q.weight".Length + 4; // ggml ne[0] = input columns, ne[1] = output rows
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(firstDimAt), 128);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(firstDimAt + 8), 32);
        using var dir = new TempDirectory();
        AssertCleanFailure(InspectCopy(dir, bytes), "blk.0.attn_q.weight", "shape [32, 128], expected [64, 64]");
    }

    [SkippableFact]
    public void Missing_tensor_is_named()
    {
        var (bytes, at) = GgufWithTensorName("blk.0.attn_q.weight");
        bytes[at + "blk.0.attn_".Length] = (byte)'x';
        using var dir = new TempDirectory();
        AssertCleanFailure(InspectCopy(dir, bytes), "blk.0.attn_q.weight", "missing tensor");
    }

    [SkippableFact]
    public void Unknown_metadata_type_is_named_with_the_key()
    {
        var (bytes, at) = GgufWithTensorName("general.architecture");
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(at + "general.architecture".Length), 99);
        using var dir = new TempDirectory();
        AssertCleanFailure(InspectCopy(dir, bytes, check: false), "general.architecture", "unknown metadata value type 99");
    }

    [SkippableFact]
    public void Nan_weight_is_named_with_its_position()
    {
        var path = SharedData.Require(Stories);
        var bytes = File.ReadAllBytes(path);
        using (var gguf = GgufFile.Open(path))
        {
            var t = gguf.Tensors.Single(x => x.Name == "blk.1.ffn_up.weight");
            long at = gguf.DataOffset + t.Offset + (3 * 64 + 5) * 4; // row 3, column 5
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan((int)at), float.NaN);
        }
        using var dir = new TempDirectory();
        AssertCleanFailure(InspectCopy(dir, bytes), "blk.1.ffn_up.weight", "non-finite value NaN at [3, 5]");
    }

    internal static string CopyFixture(TempDirectory dir, string variant)
    {
        var source = ReferenceLogitsTests.FixturePath(variant);
        var target = Path.Combine(dir.Path, variant);
        Directory.CreateDirectory(target);
        foreach (var f in Directory.GetFiles(source)) File.Copy(f, Path.Combine(target, Path.GetFileName(f)));
        return target;
    }

    static void Patch(string file, string find, string replace)
    {
        var bytes = File.ReadAllBytes(file);
        var f = Encoding.UTF8.GetBytes(find);
        var r = Encoding.UTF8.GetBytes(replace);
        Assert.Equal(f.Length, r.Length);
        int at = bytes.AsSpan().IndexOf(f);
        Assert.True(at >= 0, $"'{find}' not in {file}");
        r.CopyTo(bytes, at);
        File.WriteAllBytes(file, bytes);
    }

    [Fact]
    public void Truncated_safetensors_names_the_tensor_that_runs_out()
    {
        using var dir = new TempDirectory();
        var model = CopyFixture(dir, "llama-hf-f32");
        var file = Path.Combine(model, "model.safetensors");
        var bytes = File.ReadAllBytes(file);
        File.WriteAllBytes(file, bytes[..(bytes.Length - 10)]);
        AssertCleanFailure(HoneCli.Run("inspect", model), "model.safetensors", "runs past the end of the data section");
    }

    [Fact]
    public void Safetensors_header_problems_are_named()
    {
        using var dir = new TempDirectory();
        var model = CopyFixture(dir, "llama-hf-f32");
        var file = Path.Combine(model, "model.safetensors");
        var original = File.ReadAllBytes(file);

        var huge = (byte[])original.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(huge, 1UL << 50);
        File.WriteAllBytes(file, huge);
        AssertCleanFailure(HoneCli.Run("inspect", model), "model.safetensors", "header length");

        File.WriteAllBytes(file, original);
        Patch(file, "\"dtype\":\"F32\"", "\"dtype\":\"Q32\"");
        AssertCleanFailure(HoneCli.Run("inspect", model), "model.safetensors", "unknown dtype 'Q32'");

        File.WriteAllBytes(file, original);
        Patch(file, "\"shape\":[48,32]", "\"shape\":[47,32]");
        AssertCleanFailure(HoneCli.Run("inspect", model), "model.safetensors", "needs", "data_offsets give");

        File.WriteAllBytes(file, original);
        Patch(file, "{\"lm_head", "[\"lm_head");
        AssertCleanFailure(HoneCli.Run("inspect", model), "model.safetensors", "not valid JSON");
    }

    [Fact]
    public void Config_problems_are_named()
    {
        using var dir = new TempDirectory();
        var model = CopyFixture(dir, "llama-hf-f32");
        var config = Path.Combine(model, "config.json");
        var text = File.ReadAllText(config);
        File.WriteAllText(config, text.Replace("\"hidden_size\": 32", "\"hidden_size\": \"big\""));
        AssertCleanFailure(HoneCli.Run("inspect", model), "config.json", "hidden_size", "expected an integer");
        File.WriteAllText(config, text.Replace("\"model_type\": \"llama\"", "\"model_type\": \"gpt_neox\""));
        AssertCleanFailure(HoneCli.Run("inspect", model), "config.json", "unsupported model_type 'gpt_neox'");
        File.WriteAllText(config, text.Replace("\"hidden_size\": 32", "\"hidden_size\": 40"));
        AssertCleanFailure(HoneCli.Run("inspect", model, "--check"), "model.safetensors", "shape [96, 32], expected [96, 40]");
        File.Delete(config);
        AssertCleanFailure(HoneCli.Run("inspect", model), "config.json is missing");
    }

    [Fact]
    public void Nan_in_safetensors_is_named()
    {
        using var dir = new TempDirectory();
        var model = CopyFixture(dir, "llama-hf-f32");
        var file = Path.Combine(model, "model.safetensors");
        using (var st = SafetensorsFile.Open(file))
        {
            var t = st.Tensors.Single(x => x.Name == "model.layers.1.mlp.down_proj.weight");
            long at = st.DataOffset + t.Begin + (2 * 48 + 7) * 4;
            st.Dispose();
            var bytes = File.ReadAllBytes(file);
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan((int)at), float.PositiveInfinity);
            File.WriteAllBytes(file, bytes);
        }
        AssertCleanFailure(HoneCli.Run("inspect", model, "--check"), "model.layers.1.mlp.down_proj.weight", "non-finite value +inf at [2, 7]");
    }
}
