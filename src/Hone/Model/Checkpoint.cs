using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Tensors;

namespace Hone.Model;

public enum CheckpointFormat { HuggingFace, Gguf }

/// <summary>A tensor of a checkpoint, under its canonical (GGUF-style) name, readable in place.</summary>
/// <param name="SourceName">the name as stored in the file</param>
/// <param name="Shape">row-major, outermost first</param>
public sealed unsafe record CheckpointTensor(string Name, string SourceName, string File, TensorType? Type, string TypeName,
    long[] Shape, nint Data, long ByteLength)
{
    public byte* Pointer => (byte*)Data;
    public long ElementCount => Shape.Aggregate(1L, (a, b) => checked(a * b)); // bounded when the file was parsed
    public string ShapeText => $"[{string.Join(", ", Shape)}]";
}

/// <summary>
/// A model on disk: a Hugging Face directory (config.json + model.safetensors or a sharded index) or a .gguf file.
/// Either is accepted wherever a model is asked for. Tensors are memory-mapped, not copied.
/// </summary>
public sealed class Checkpoint : IDisposable
{
    readonly List<IDisposable> _files = new();
    readonly Dictionary<string, CheckpointTensor> _byName = new();

    public string Path { get; }
    public CheckpointFormat Format { get; }
    public ModelConfig Config { get; }
    public IReadOnlyList<CheckpointTensor> Tensors { get; }
    /// <summary>The GGUF file, for its metadata (tokenizer and so on), when the checkpoint is one.</summary>
    public GgufFile? Gguf { get; }
    /// <summary>The directory of a Hugging Face checkpoint (tokenizer.json and friends live there).</summary>
    public string? Directory { get; }

    Checkpoint(string path, CheckpointFormat format, ModelConfig config, List<CheckpointTensor> tensors, GgufFile? gguf, string? directory, List<IDisposable> files)
    {
        Path = path; Format = format; Config = config; Tensors = tensors; Gguf = gguf; Directory = directory; _files = files;
        foreach (var t in tensors)
            if (!_byName.TryAdd(t.Name, t))
                throw new ModelFormatException(t.File, $"tensor appears twice (also in {_byName[t.Name].File})", $"tensor '{t.SourceName}'");
    }

    /// <summary>
    /// Where a model named by a user is, the same for every command: a .gguf file; a Hugging Face directory
    /// (config.json); or a folder holding exactly one .gguf file (a downloaded GGUF repository). A folder with several
    /// .gguf files and no config.json is an error listing them; so is one with neither.
    /// </summary>
    public static string ResolvePath(string path)
    {
        if (!System.IO.Directory.Exists(path) || File.Exists(System.IO.Path.Combine(path, "config.json"))) return path;
        var ggufs = System.IO.Directory.GetFiles(path, "*.gguf").Order(StringComparer.Ordinal).ToList();
        return ggufs.Count switch
        {
            1 => ggufs[0],
            0 => throw new ModelFormatException(path, "not a model: config.json is missing (a Hugging Face model directory) and the folder holds no .gguf file"),
            _ => throw new ModelFormatException(path, $"holds {ggufs.Count} .gguf files and no config.json; name one: {string.Join(", ", ggufs.Select(System.IO.Path.GetFileName))}"),
        };
    }

    public static Checkpoint Open(string path)
    {
        path = ResolvePath(path);
        if (System.IO.Directory.Exists(path)) return OpenHuggingFace(path);
        if (File.Exists(path))
        {
            if (path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) || LooksLikeGguf(path)) return OpenGguf(path);
            throw new ModelFormatException(path, "not a model: expected a .gguf file or a Hugging Face model directory");
        }
        throw new FileNotFoundException($"{path}: no such model file or directory", path);
    }

    static bool LooksLikeGguf(string path)
    {
        using var f = File.OpenRead(path);
        Span<byte> magic = stackalloc byte[4];
        return f.Read(magic) == 4 && magic.SequenceEqual("GGUF"u8);
    }

    /// <summary>The model's tokenizer: GGUF vocabulary metadata, or tokenizer.json (+ tokenizer_config.json) next to
    /// the weights.</summary>
    public Tokenization.Tokenizer LoadTokenizer()
    {
        if (Gguf != null) return Tokenization.Tokenizer.FromGguf(Gguf);
        if (Directory != null && File.Exists(System.IO.Path.Combine(Directory, "tokenizer.json")))
            return Tokenization.Tokenizer.FromHuggingFaceDirectory(Directory);
        throw new ModelFormatException(Path, "the model has no tokenizer (tokenizer.json next to config.json, or GGUF tokenizer metadata)");
    }

    public bool TryGet(string canonicalName, out CheckpointTensor tensor) => _byName.TryGetValue(canonicalName, out tensor!);

    public CheckpointTensor? Find(TensorRole role, int layer = -1, bool bias = false) =>
        _byName.GetValueOrDefault(TensorNames.Gguf(role, layer, bias));

    static unsafe Checkpoint OpenGguf(string path)
    {
        var gguf = GgufFile.Open(path);
        try
        {
            var tensors = new List<CheckpointTensor>();
            foreach (var t in gguf.Tensors)
            {
                var type = t.Type;
                var shape = t.Shape;
                // llama.cpp stacks a layer's experts in one tensor [E, rows, cols]; each expert is a contiguous slice,
                // read in place under its own name ("blk.0.ffn_gate_exps.3.weight").
                if (shape.Length == 3 && shape[0] > 0 && TensorNames.TryParseGguf(t.Name, out var stacked) && stacked.Expert < 0
                    && TensorNames.RowOf(stacked.Role).PerExpert)
                {
                    long slice = t.ByteLength / shape[0];
                    for (int e = 0; e < shape[0]; e++)
                        tensors.Add(new CheckpointTensor(TensorNames.Gguf(stacked.Role, stacked.Layer, stacked.Bias, e), $"{t.Name}[{e}]", path,
                            type.Traits().Compute ? type : null, type.Name(), [shape[1], shape[2]], (nint)(gguf.TensorData(t) + e * slice), slice));
                    continue;
                }
                tensors.Add(new CheckpointTensor(t.Name, t.Name, path, type.Traits().Compute ? type : null, type.Name(), shape,
                    (nint)gguf.TensorData(t), t.ByteLength));
            }
            long? vocab = tensors.FirstOrDefault(t => t.Name == "token_embd.weight")?.Shape[0];
            bool hasOutput = tensors.Any(t => t.Name == "output.weight");
            bool hasBias = tensors.Any(t => t.Name == "blk.0.attn_q.bias");
            var config = ModelConfig.FromGguf(gguf, vocab, hasOutput, hasBias);
            return new Checkpoint(path, CheckpointFormat.Gguf, config, tensors, gguf, null, [gguf]);
        }
        catch { gguf.Dispose(); throw; }
    }

    static unsafe Checkpoint OpenHuggingFace(string dir)
    {
        var configPath = System.IO.Path.Combine(dir, "config.json");
        if (!File.Exists(configPath)) throw new ModelFormatException(dir, "not a Hugging Face model directory: config.json is missing");
        var config = ModelConfig.FromHuggingFaceJson(configPath);
        var files = new List<IDisposable>();
        try
        {
            var shards = ShardFiles(dir);
            var tensors = new List<CheckpointTensor>();
            foreach (var (shardPath, expectedNames) in shards)
            {
                var st = SafetensorsFile.Open(shardPath);
                files.Add(st);
                foreach (var name in expectedNames)
                    if (!st.TryGetTensor(name, out _))
                        throw new ModelFormatException(shardPath, "listed in model.safetensors.index.json but missing from the shard", $"tensor '{name}'");
                foreach (var t in st.Tensors)
                {
                    if (TensorNames.IsIgnorableHuggingFace(t.Name)) continue;
                    string canonical = TensorNames.HuggingFaceToGguf(t.Name) ?? t.Name;
                    var type = t.Type is TensorType tt && tt.Traits().Compute ? tt : (TensorType?)null;
                    tensors.Add(new CheckpointTensor(canonical, t.Name, shardPath, type, t.DType, t.Shape, (nint)st.TensorData(t), t.End - t.Begin));
                }
            }
            if (config.TiedEmbeddings) CheckTiedHead(configPath, tensors);
            return new Checkpoint(dir, CheckpointFormat.HuggingFace, config, tensors, null, dir, files);
        }
        catch { foreach (var f in files) f.Dispose(); throw; }
    }

    /// <summary>
    /// tie_word_embeddings with an lm_head.weight in the files as well. A copy equal to the embedding is harmless (some
    /// savers write both). A different one is refused: transformers 4 ties and overwrites it with the embedding,
    /// transformers 5 sees an untied head and uses it, so the file means different models to different readers.
    /// </summary>
    static unsafe void CheckTiedHead(string configPath, List<CheckpointTensor> tensors)
    {
        var head = tensors.FirstOrDefault(t => t.Name == "output.weight");
        if (head == null) return;
        var embedding = tensors.FirstOrDefault(t => t.Name == "token_embd.weight");
        bool same = embedding != null && embedding.TypeName == head.TypeName && embedding.Shape.SequenceEqual(head.Shape)
                    && embedding.ByteLength == head.ByteLength;
        for (long at = 0; same && at < head.ByteLength; at += 1 << 30)
        {
            int n = (int)Math.Min(1 << 30, head.ByteLength - at);
            same = new ReadOnlySpan<byte>(head.Pointer + at, n).SequenceEqual(new ReadOnlySpan<byte>(embedding!.Pointer + at, n));
        }
        if (!same)
            throw new ModelFormatException(configPath,
                $"is true, but {head.File} also holds {head.SourceName} and it differs from the embedding (transformers 4 would discard it, " +
                "transformers 5 would use it untied): set tie_word_embeddings to false to use it, or remove it to tie", "tie_word_embeddings");
    }

    /// <summary>The safetensors files of a directory, each with the tensor names the index promises it holds.</summary>
    static List<(string Path, List<string> Names)> ShardFiles(string dir)
    {
        var index = System.IO.Path.Combine(dir, "model.safetensors.index.json");
        if (File.Exists(index))
        {
            var root = StrictJson.ParseFile(index);
            if (root?["weight_map"] is not JsonObject map) throw new ModelFormatException(index, "missing weight_map", "weight_map");
            var byFile = new Dictionary<string, List<string>>();
            foreach (var (name, fileNode) in map)
            {
                string file = fileNode is JsonValue v && v.TryGetValue(out string? s) ? s : throw new ModelFormatException(index, "file name is not a string", $"weight_map['{name}']");
                if (file.Contains('/') || file.Contains('\\') || file.Contains(".."))
                    throw new ModelFormatException(index, $"shard name '{file}' must be a plain file name", $"weight_map['{name}']");
                if (!byFile.TryGetValue(file, out var list)) byFile[file] = list = new();
                list.Add(name);
            }
            return byFile.Select(kv =>
            {
                var p = System.IO.Path.Combine(dir, kv.Key);
                if (!File.Exists(p)) throw new ModelFormatException(index, $"shard '{kv.Key}' does not exist", "weight_map");
                return (p, kv.Value);
            }).ToList();
        }
        var single = System.IO.Path.Combine(dir, "model.safetensors");
        if (File.Exists(single)) return [(single, new List<string>())];
        throw new ModelFormatException(dir, "no model.safetensors or model.safetensors.index.json in the directory");
    }

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }
}
