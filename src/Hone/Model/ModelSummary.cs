using Hone.Tensors;

namespace Hone.Model;

/// <summary>What `hone inspect` reports about a checkpoint.</summary>
public sealed record ModelSummary(
    string Path, string Format, ModelConfig Config, long ParameterCount, long TensorBytes,
    IReadOnlyList<ModelSummary.TensorRow> Tensors, IReadOnlyList<KeyValuePair<string, string>> Metadata,
    IReadOnlyDictionary<string, long> ParametersByType)
{
    public sealed record TensorRow(string Name, string SourceName, string Type, long[] Shape, long Elements, long Bytes);

    public static ModelSummary Create(Checkpoint c)
    {
        var rows = c.Tensors.Select(t => new TensorRow(t.Name, t.SourceName, t.TypeName, t.Shape, t.ElementCount, t.ByteLength)).ToList();
        var metadata = new List<KeyValuePair<string, string>>();
        if (c.Gguf != null)
        {
            metadata.Add(new("gguf.version", c.Gguf.Version.ToString()));
            metadata.Add(new("gguf.alignment", c.Gguf.Alignment.ToString()));
            foreach (var (k, v) in c.Gguf.MetadataInOrder) metadata.Add(new(k, v.ToString()));
        }
        else if (c.Directory != null)
        {
            foreach (var f in System.IO.Directory.GetFiles(c.Directory).Order())
            {
                var info = new FileInfo(f);
                var target = info.LinkTarget != null ? info.ResolveLinkTarget(returnFinalTarget: true) as FileInfo : null; // a hub cache link: the blob's size
                metadata.Add(new("file", $"{System.IO.Path.GetFileName(f)} ({(target is { Exists: true } ? target : info).Length:N0} bytes)"));
            }
        }
        var byType = rows.GroupBy(r => r.Type).ToDictionary(g => g.Key, g => g.Sum(r => r.Elements));
        return new ModelSummary(c.Path, c.Format == CheckpointFormat.Gguf ? "gguf" : "huggingface", c.Config,
            rows.Sum(r => r.Elements), rows.Sum(r => r.Bytes), rows, metadata, byType);
    }
}
