using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Tests.Model;
using Hone.Transforms;
using Xunit;

namespace Hone.Tests.Formats;

public unsafe class SafetensorsTests
{
    [Fact]
    public void Sharded_checkpoint_via_index_gives_the_same_logits()
    {
        using var dir = new TempDirectory();
        var source = ReferenceLogitsTests.FixturePath("llama-hf-f32");
        var target = Path.Combine(dir.Path, "sharded");
        Directory.CreateDirectory(target);
        File.Copy(Path.Combine(source, "config.json"), Path.Combine(target, "config.json"));
        var map = new JsonObject();
        using (var st = SafetensorsFile.Open(Path.Combine(source, "model.safetensors")))
        {
            var shards = new[] { new SafetensorsWriter(), new SafetensorsWriter() };
            int i = 0;
            foreach (var t in st.Tensors)
            {
                int shard = i++ % 2;
                var bytes = new ReadOnlySpan<byte>(st.TensorData(t), (int)(t.End - t.Begin)).ToArray();
                shards[shard].Add(new SafetensorsWriter.Tensor(t.Name, t.Type!.Value, t.Shape, s => s.Write(bytes)));
                map[t.Name] = $"model-0000{shard + 1}-of-00002.safetensors";
            }
            for (int s = 0; s < 2; s++) shards[s].Write(Path.Combine(target, $"model-0000{s + 1}-of-00002.safetensors"));
        }
        File.WriteAllText(Path.Combine(target, "model.safetensors.index.json"), new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = map }.ToJsonString());

        var (tokens, expected) = ReferenceLogitsTests.Expected("llama-hf-f32");
        using var c = Checkpoint.Open(target);
        using var w = LlamaWeights.Load(c);
        using var m = new LlamaModel(w, new WorkerPool(1), maxContext: 64);
        var logits = new float[expected.Length];
        m.Forward(tokens, logits, allLogits: true);
        TestData.AssertClose(expected, logits, 1e-4, "sharded");

        // An index that promises a tensor the shard lacks is named.
        map["model.extra.weight"] = "model-00001-of-00002.safetensors";
        File.WriteAllText(Path.Combine(target, "model.safetensors.index.json"), new JsonObject { ["weight_map"] = map.DeepClone() }.ToJsonString());
        var e = Assert.Throws<ModelFormatException>(() => Checkpoint.Open(target));
        Assert.Contains("model.extra.weight", e.Message);
    }

    [Fact]
    public void F16_directory_loads_and_is_close_to_the_f32_reference()
    {
        using var dir = new TempDirectory();
        var target = Path.Combine(dir.Path, "f16");
        ModelConverter.Convert(new ConvertOptions(ReferenceLogitsTests.FixturePath("llama-hf-f32"), target, TensorType.F16));
        using var c = Checkpoint.Open(target);
        Assert.All(c.Tensors.Where(t => t.Shape.Length == 2), t => Assert.Equal("F16", t.TypeName));
        var (tokens, expected) = ReferenceLogitsTests.Expected("llama-hf-f32");
        using var w = LlamaWeights.Load(c);
        using var m = new LlamaModel(w, new WorkerPool(1), maxContext: 64);
        var logits = new float[expected.Length];
        m.Forward(tokens, logits, allLogits: true);
        TestData.AssertClose(expected, logits, 1e-2, "f16 weights");
    }

    [Fact]
    public void Gguf_version_2_header_reads_like_version_3()
    {
        using var dir = new TempDirectory();
        var source = ReferenceLogitsTests.FixturePath("llama-gguf-f32");
        var bytes = File.ReadAllBytes(source);
        bytes[4] = 2;
        var v2 = dir.File("v2.gguf");
        File.WriteAllBytes(v2, bytes);
        using var a = GgufFile.Open(source);
        using var b = GgufFile.Open(v2);
        Assert.Equal(2u, b.Version);
        Assert.Equal(a.Tensors.Select(t => (t.Name, t.Offset)), b.Tensors.Select(t => (t.Name, t.Offset)));
    }
}
