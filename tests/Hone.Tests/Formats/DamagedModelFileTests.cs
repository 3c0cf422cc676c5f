using System.Buffers.Binary;
using System.Text;
using Hone.Formats;
using Hone.Model;
using Hone.Tests.Infrastructure;
using Hone.Tests.Model;
using Xunit;
using static Hone.Tests.Formats.CorruptFileTests;

namespace Hone.Tests.Formats;

/// <summary>
/// Damaged copies of the real fixture checkpoints (issue 15): sizes that overflow, metadata that divides by zero,
/// files that reference loaders refuse (llama.cpp's gguf.cpp, the safetensors library). Every one must end in a
/// one-line error naming the file and the tensor or key, exit 1, from `inspect` and from `inspect --check` alike.
/// </summary>
public class DamagedModelFileTests
{
    static string Gguf(TempDirectory dir)
    {
        var path = dir.File("model.gguf");
        File.Copy(ReferenceLogitsTests.FixturePath("llama-gguf-f32"), path);
        return path;
    }

    /// <summary>Both inspect modes refuse the damaged model with the same clean one-line error.</summary>
    static void AssertRefused(string model, params string[] mustContain)
    {
        AssertCleanFailure(HoneCli.Run("inspect", model), mustContain);
        AssertCleanFailure(HoneCli.Run("inspect", model, "--check"), mustContain);
    }

    static void Patch(string file, int at, Action<Span<byte>> write)
    {
        var bytes = File.ReadAllBytes(file);
        write(bytes.AsSpan(at));
        File.WriteAllBytes(file, bytes);
    }

    // ---- GGUF: memory safety ----------------------------------------------------------------------------------

    [Fact]
    public void Gguf_offset_near_2_pow_63_is_refused_before_anything_is_read()
    {
        using var dir = new TempDirectory();
        var model = Gguf(dir);
        // (2^63 - 32) + 128 bytes wraps negative in unchecked arithmetic and used to pass the bounds check.
        Patch(model, DamagedFiles.OffsetFieldAt(File.ReadAllBytes(model), "output_norm.weight"),
            b => BinaryPrimitives.WriteInt64LittleEndian(b, long.MaxValue - 31));
        AssertRefused(model, "model.gguf", "tensor 'output_norm.weight'", "runs past the end of the data section");
    }

    [Theory]
    [InlineData(0, 1L << 61)]
    [InlineData(1, 1L << 62)]
    public void Gguf_dimensions_whose_byte_size_overflows_are_refused(int dimension, long value)
    {
        using var dir = new TempDirectory();
        var model = Gguf(dir);
        Patch(model, DamagedFiles.DimensionFieldAt(File.ReadAllBytes(model), "token_embd.weight", dimension),
            b => BinaryPrimitives.WriteInt64LittleEndian(b, value));
        AssertRefused(model, "model.gguf", "tensor 'token_embd.weight'", "need more than 2^63 bytes");
    }

    // ---- GGUF: metadata arithmetic -----------------------------------------------------------------------------

    [Theory]
    [InlineData("llama.attention.head_count_kv", 0UL, "must be positive, got 0")]
    [InlineData("llama.attention.head_count", 0UL, "must be positive, got 0")]
    [InlineData("llama.block_count", 1UL << 40, "beyond any real model")]
    [InlineData("llama.block_count", 1UL << 20, "beyond any real model (at most 4096)")]
    [InlineData("llama.context_length", (ulong)long.MaxValue, "beyond any real model")]
    [InlineData("llama.context_length", ulong.MaxValue, "out of range")]
    [InlineData("llama.embedding_length", 1UL << 31, "beyond any real model")]
    [InlineData("general.alignment", 1UL << 40, "not a power of two from 1 to 2^31")]
    [InlineData("general.alignment", 48UL, "not a power of two")]
    public void Gguf_metadata_out_of_range_is_named(string key, ulong value, string message)
    {
        using var dir = new TempDirectory();
        var model = dir.File("model.gguf");
        DamagedFiles.RewriteGguf(ReferenceLogitsTests.FixturePath("llama-gguf-f32"), model,
            m => m.Set(key, new GgufValue(GgufValueType.UInt64, value)));
        AssertRefused(model, "model.gguf", key, message);
    }

    [Theory]
    [InlineData("llama.context_length")]
    [InlineData("llama.attention.layer_norm_rms_epsilon")]
    public void Gguf_without_a_key_llama_cpp_requires_is_refused_naming_it(string key)
    {
        using var dir = new TempDirectory();
        var model = dir.File("model.gguf");
        DamagedFiles.RewriteGguf(ReferenceLogitsTests.FixturePath("llama-gguf-f32"), model, m => m.Remove(key));
        AssertRefused(model, "model.gguf", key, "required metadata key is missing");
    }

    [Fact]
    public void Gguf_rewritten_unchanged_still_loads()
    {
        // The rewriting helper itself must not damage anything: a control for the tests above.
        using var dir = new TempDirectory();
        var model = dir.File("model.gguf");
        DamagedFiles.RewriteGguf(ReferenceLogitsTests.FixturePath("llama-gguf-f32"), model, _ => { });
        var r = HoneCli.Run("inspect", model, "--check");
        Assert.True(r.ExitCode == 0, r.ToString());
    }

    // ---- GGUF: what llama.cpp refuses --------------------------------------------------------------------------

    [Fact]
    public void Gguf_tensor_count_one_below_its_infos_is_caught()
    {
        // The last tensor info is then read as padding and the data section starts inside it: every tensor is read
        // shifted, and a dropped output.weight would even turn the model silently into a tied one.
        using var dir = new TempDirectory();
        var model = Gguf(dir);
        Patch(model, 8, b => BinaryPrimitives.WriteInt64LittleEndian(b, BinaryPrimitives.ReadInt64LittleEndian(b) - 1));
        AssertRefused(model, "model.gguf", "follow the data of the last tensor", "tensor count is lower than the tensor infos");
    }

    [Fact]
    public void Gguf_tensor_offsets_that_do_not_follow_each_other_are_named()
    {
        using var dir = new TempDirectory();
        var model = Gguf(dir);
        var bytes = File.ReadAllBytes(model);
        int at = DamagedFiles.OffsetFieldAt(bytes, "blk.0.attn_norm.weight");
        long offset = BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(at));
        Patch(model, at, b => BinaryPrimitives.WriteInt64LittleEndian(b, offset + 32)); // aligned, in bounds, wrong
        AssertRefused(model, "model.gguf", "tensor 'blk.0.attn_norm.weight'", $"data offset {offset + 32}, expected {offset}");
    }

    // ---- safetensors -------------------------------------------------------------------------------------------

    static (string Model, string File) HfCopy(TempDirectory dir, string variant = "llama-hf-f32")
    {
        var model = CopyFixture(dir, variant);
        return (model, Path.Combine(model, "model.safetensors"));
    }

    [Theory]
    [InlineData("[4611686018427387904]")]           // 2^62 elements with offsets [0, 0]: ×4 bytes wrapped to 0
    [InlineData("[1099511627776, 1099511627776]")]  // 2^40 × 2^40 elements
    public void Safetensors_shapes_whose_size_overflows_are_refused(string shape)
    {
        using var dir = new TempDirectory();
        var (model, file) = HfCopy(dir);
        DamagedFiles.EditSafetensorsEntry(file, "model.norm.weight", e =>
        {
            e["shape"] = System.Text.Json.Nodes.JsonNode.Parse(shape);
            e["data_offsets"] = new System.Text.Json.Nodes.JsonArray(0, 0);
        });
        AssertRefused(model, "model.safetensors", "tensor 'model.norm.weight'", "needs more than 2^63 bytes");
    }

    [Fact]
    public void Safetensors_duplicate_key_is_named()
    {
        using var dir = new TempDirectory();
        var (model, file) = HfCopy(dir);
        DamagedFiles.RewriteSafetensors(file, h =>
        {
            int start = h.IndexOf("\"model.norm.weight\"", StringComparison.Ordinal);
            int end = h.IndexOf('}', start) + 1;
            return h[..end] + "," + h[start..end] + h[end..];
        });
        AssertRefused(model, "model.safetensors", "model.norm.weight", "key appears twice");
    }

    [Fact]
    public void Safetensors_invalid_utf8_in_the_header_is_named_with_its_offset()
    {
        using var dir = new TempDirectory();
        var (model, file) = HfCopy(dir);
        var bytes = File.ReadAllBytes(file);
        int at = bytes.AsSpan().IndexOf("model.norm.weight"u8);
        bytes[at + 6] = 0xFF;
        File.WriteAllBytes(file, bytes);
        AssertRefused(model, "model.safetensors", "the header is not valid UTF-8", $"byte 0xFF at offset {at + 6}");
    }

    [Fact]
    public void Safetensors_string_data_offsets_are_named()
    {
        using var dir = new TempDirectory();
        var (model, file) = HfCopy(dir);
        DamagedFiles.EditSafetensorsEntry(file, "model.norm.weight", e =>
        {
            var offsets = e["data_offsets"]!.AsArray();
            e["data_offsets"] = new System.Text.Json.Nodes.JsonArray(offsets[0]!.ToJsonString(), offsets[1]!.ToJsonString());
        });
        AssertRefused(model, "model.safetensors", "tensor 'model.norm.weight'", "data_offsets must be [begin, end] as two integers");
    }

    [Fact]
    public void Safetensors_overlapping_data_offsets_are_refused()
    {
        using var dir = new TempDirectory();
        var (model, file) = HfCopy(dir);
        // Same shape and dtype as lm_head: point embed_tokens at lm_head's bytes.
        DamagedFiles.EditSafetensorsEntry(file, "model.embed_tokens.weight", e => e["data_offsets"] = new System.Text.Json.Nodes.JsonArray(0, 12288));
        AssertRefused(model, "model.safetensors", "overlaps tensor", "[0, 12288)");
    }

    [Fact]
    public void Safetensors_bytes_after_the_last_tensor_are_refused()
    {
        using var dir = new TempDirectory();
        var (model, file) = HfCopy(dir);
        DamagedFiles.RewriteSafetensors(file, h => h, append: new byte[64]);
        AssertRefused(model, "model.safetensors", "64 bytes follow the last tensor's data");
    }

    [Fact]
    public void Safetensors_rewritten_unchanged_still_loads()
    {
        using var dir = new TempDirectory();
        var (model, file) = HfCopy(dir);
        DamagedFiles.RewriteSafetensors(file, h => h);
        var r = HoneCli.Run("inspect", model, "--check");
        Assert.True(r.ExitCode == 0, r.ToString());
    }

    // ---- config.json ---------------------------------------------------------------------------------------------

    [Fact]
    public void Config_duplicate_key_is_named()
    {
        using var dir = new TempDirectory();
        var (model, _) = HfCopy(dir);
        DamagedFiles.ReplaceText(Path.Combine(model, "config.json"), "\"hidden_size\": 32,", "\"hidden_size\": 32,\n  \"hidden_size\": 64,");
        AssertRefused(model, "config.json", "hidden_size", "key appears twice");
    }

    [Fact]
    public void Config_invalid_utf8_is_named_with_its_offset()
    {
        using var dir = new TempDirectory();
        var (model, _) = HfCopy(dir);
        var config = Path.Combine(model, "config.json");
        var bytes = File.ReadAllBytes(config);
        int at = bytes.AsSpan().IndexOf("LlamaForCausalLM"u8) + 5;
        bytes[at] = 0xC3; // a lead byte followed by an ASCII letter
        File.WriteAllBytes(config, bytes);
        AssertRefused(model, "config.json", "not valid UTF-8", $"byte 0xC3 at offset {at}");
    }

    [Theory]
    [InlineData("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 0", "num_key_value_heads", "must be positive, got 0")]
    [InlineData("\"num_attention_heads\": 4", "\"num_attention_heads\": 0", "num_attention_heads", "must be positive, got 0")]
    [InlineData("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1099511627776", "num_hidden_layers", "beyond any real model")]
    [InlineData("\"max_position_embeddings\": 128", "\"max_position_embeddings\": 9223372036854775807", "max_position_embeddings", "beyond any real model")]
    [InlineData("\"vocab_size\": 96", "\"vocab_size\": 2147483647", "vocab_size", "beyond any real model (at most 16777216)")]
    [InlineData("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3", "num_key_value_heads", "not a multiple of 3 key/value heads")]
    [InlineData("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 0", "rms_norm_eps", "must be a positive finite number")]
    public void Config_values_out_of_range_are_named(string find, string replace, string key, string message)
    {
        using var dir = new TempDirectory();
        var (model, _) = HfCopy(dir);
        DamagedFiles.ReplaceText(Path.Combine(model, "config.json"), find, replace);
        AssertRefused(model, "config.json", key, message);
    }

    [Theory]
    [InlineData("\"factor\": 8.0", "\"factor\": 0", "rope_scaling.factor", "must be a positive finite number, got 0")]
    [InlineData("\"low_freq_factor\": 1.0,", "", "rope_scaling.low_freq_factor", "required for llama3 rope scaling")]
    [InlineData("\"original_max_position_embeddings\": 64", "\"unrelated\": 64", "rope_scaling.original_max_position_embeddings", "required field is missing")]
    [InlineData("\"high_freq_factor\": 4.0", "\"high_freq_factor\": 1.0", "rope_scaling.high_freq_factor", "must be above low_freq_factor")]
    public void Llama3_rope_scaling_problems_are_named(string find, string replace, string key, string message)
    {
        using var dir = new TempDirectory();
        var (model, _) = HfCopy(dir, "llama3-scaled-hf-f32");
        DamagedFiles.ReplaceText(Path.Combine(model, "config.json"), find, replace);
        AssertRefused(model, "config.json", key, message);
    }

    [Theory]
    [InlineData("\"rope_scaling\": \"llama3\",", "rope_scaling", "expected an object or null")]
    [InlineData("\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 0},", "rope_scaling.factor", "must be a positive finite number, got 0")]
    [InlineData("\"rope_scaling\": {\"rope_type\": \"linear\"},", "rope_scaling.factor", "required for linear rope scaling")]
    public void Rope_scaling_that_is_not_a_usable_object_is_named(string entry, string key, string message)
    {
        using var dir = new TempDirectory();
        var (model, _) = HfCopy(dir);
        DamagedFiles.ReplaceText(Path.Combine(model, "config.json"), "\"model_type\": \"llama\",", "\"model_type\": \"llama\",\n  " + entry);
        AssertRefused(model, "config.json", key, message);
    }

    [Fact]
    public void Rope_scaling_null_is_no_scaling()
    {
        using var dir = new TempDirectory();
        var (model, _) = HfCopy(dir);
        DamagedFiles.ReplaceText(Path.Combine(model, "config.json"), "\"model_type\": \"llama\",", "\"model_type\": \"llama\",\n  \"rope_scaling\": null,");
        var r = HoneCli.Run("inspect", model, "--check");
        Assert.True(r.ExitCode == 0, r.ToString());
    }

    // ---- tie_word_embeddings with an lm_head in the file --------------------------------------------------------

    /// <summary>Transformers 4 ties and overwrites a saved lm_head with the embedding; transformers 5 (its "tie_weights
    /// is symmetric" loading) leaves both untied when both are saved. A differing lm_head therefore means different
    /// models to different readers and is refused naming the key; a copy equal to the embedding means the same model
    /// to both and loads tied.</summary>
    [Fact]
    public void Tied_config_with_a_different_lm_head_is_refused()
    {
        using var dir = new TempDirectory();
        var (model, _) = HfCopy(dir);
        DamagedFiles.ReplaceText(Path.Combine(model, "config.json"), "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true");
        AssertRefused(model, "config.json", "tie_word_embeddings", "lm_head.weight", "differs from the embedding");
    }

    [Fact]
    public void Tied_config_with_an_lm_head_equal_to_the_embedding_loads_tied()
    {
        using var dir = new TempDirectory();
        var (model, file) = HfCopy(dir);
        DamagedFiles.ReplaceText(Path.Combine(model, "config.json"), "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true");
        var bytes = File.ReadAllBytes(file);
        long dataStart = 8 + BinaryPrimitives.ReadInt64LittleEndian(bytes);
        // lm_head is [0, 12288) and embed_tokens [12288, 24576) of the data section (see the header).
        Array.Copy(bytes, dataStart + 12288, bytes, dataStart, 12288);
        File.WriteAllBytes(file, bytes);
        var r = HoneCli.Run("inspect", model, "--check");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var checkpoint = Checkpoint.Open(model);
        using var weights = LlamaWeights.Load(checkpoint);
        Assert.True(checkpoint.Config.TiedEmbeddings);
        Assert.Same(weights.TokenEmbedding, weights.Output);
    }

    // ---- tokenizer.json --------------------------------------------------------------------------------------------

    [SkippableTheory]
    [InlineData("\"<|endoftext|>\": 50256", "\"<|endoftext|>\": 2147483647")]
    [InlineData("\"id\": 50256", "\"id\": 2147483647")]
    public void Tokenizer_id_beyond_its_token_count_is_named_before_anything_is_sized(string find, string replace)
    {
        using var dir = new TempDirectory();
        var path = dir.File("tokenizer.json");
        File.Copy(SharedData.Require("tokenizers/gpt2-hf/tokenizer.json"), path);
        DamagedFiles.ReplaceText(path, find, replace);
        // Used to size the id table from the largest id: 2^31-1 overflowed (an unexpected OverflowException).
        var e = Assert.Throws<ModelFormatException>(() => Hone.Tokenization.Tokenizer.FromHuggingFace(path));
        Assert.Contains("tokenizer.json", e.Message);
        Assert.Contains("model.vocab", e.Message);
        Assert.Contains("the largest id is 2147483647", e.Message);
        Assert.Contains("id 50257 is not assigned to any token", e.Message); // every id from the 50,258th on is a gap
    }
}
