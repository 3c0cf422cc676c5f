using System.Buffers.Binary;
using System.Text;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Transforms;

/// <summary>
/// An importance matrix: for every projection (by GGUF tensor name) and every input column, the sum of squared
/// activations that reached that column and the number of rows that did; for a mixture's stacked experts one row of
/// sums and one count per expert. Read and written in llama.cpp's imatrix GGUF layout (tools/imatrix/imatrix.cpp,
/// common/imatrix-loader.cpp): general.type = "imatrix", imatrix.datasets (strings), imatrix.chunk_count and
/// imatrix.chunk_size (u32), and per tensor NAME.in_sum2 (f32 [experts, columns]), NAME.counts (f32 [experts, 1]) and
/// NAME.in_sum (f32, the plain sums, which llama-imatrix also writes and only its statistics read). The legacy .dat
/// layout reads too (its per-column means times its call count come in as sums over that many rows).
/// </summary>
public sealed class ImportanceMatrix
{
    public const string DatasetsKey = "imatrix.datasets", ChunkCountKey = "imatrix.chunk_count", ChunkSizeKey = "imatrix.chunk_size";

    /// <param name="Name">the weight's GGUF name ("blk.0.attn_q.weight", "blk.1.ffn_down_exps.weight")</param>
    public sealed class Entry(string name, int columns, int matrices, bool withSums = true)
    {
        public string Name { get; } = name;
        public int Columns { get; } = columns;
        /// <summary>1 for a dense weight, the expert count for stacked experts.</summary>
        public int Matrices { get; } = matrices;
        /// <summary>[Matrices·Columns]: Σ x² per column, matrix after matrix.</summary>
        public double[] SumSquares { get; } = new double[(long)columns * matrices];
        /// <summary>[Matrices·Columns]: Σ x per column, or null (a file without in_sum).</summary>
        public double[]? Sums { get; internal set; } = withSums ? new double[(long)columns * matrices] : null;
        /// <summary>[Matrices]: rows seen per matrix.</summary>
        public long[] Counts { get; } = new long[matrices];
    }

    public SortedDictionary<string, Entry> Entries { get; } = new(StringComparer.Ordinal);
    public List<string> Datasets { get; } = new();
    public int ChunkCount { get; set; }
    public int ChunkSize { get; set; }

    /// <summary>The column weights a quantizer takes for <paramref name="name"/> (expert <paramref name="expert"/> of a
    /// stacked tensor, or 0): mean squared activation per column, as llama-quantize normalizes them; a matrix that saw
    /// no rows gets 1 everywhere. Null when the matrix has no entry.</summary>
    /// <exception cref="ModelFormatException">the entry's width is not <paramref name="columns"/> or the expert is missing</exception>
    public float[]? ColumnWeights(string name, int expert, int columns, string file)
    {
        if (!Entries.TryGetValue(name, out var e)) return null;
        if (e.Columns != columns)
            throw new ModelFormatException(file, $"{name} has {e.Columns} columns in the importance matrix but the weight has {columns}", name);
        if (expert >= e.Matrices)
            throw new ModelFormatException(file, $"{name} has {e.Matrices} matrices in the importance matrix, expert {expert} is missing", name);
        var weights = new float[columns];
        long count = e.Counts[expert];
        for (int j = 0; j < columns; j++)
            weights[j] = count > 0 ? (float)(e.SumSquares[(long)expert * columns + j] / count) : 1f;
        return weights;
    }

    /// <summary>Adds another matrix's sums and counts (llama-imatrix --in-file): entries present in both must have the
    /// same shape; the others are taken as they are. Chunk counts add; datasets append.</summary>
    public void Add(ImportanceMatrix other, string otherFile)
    {
        foreach (var (name, o) in other.Entries)
        {
            if (!Entries.TryGetValue(name, out var e))
            {
                e = new Entry(name, o.Columns, o.Matrices, o.Sums != null);
                Entries[name] = e;
            }
            else if (e.Columns != o.Columns || e.Matrices != o.Matrices)
                throw new ModelFormatException(otherFile, $"{name} is [{o.Matrices}, {o.Columns}] here but [{e.Matrices}, {e.Columns}] in the files before it", name);
            for (long i = 0; i < e.SumSquares.LongLength; i++) e.SumSquares[i] += o.SumSquares[i];
            if (e.Sums != null && o.Sums != null) for (long i = 0; i < e.Sums.LongLength; i++) e.Sums[i] += o.Sums[i];
            else e.Sums = null;
            for (int i = 0; i < e.Counts.Length; i++) e.Counts[i] += o.Counts[i];
        }
        ChunkCount += other.ChunkCount;
        if (ChunkSize == 0) ChunkSize = other.ChunkSize;
        Datasets.AddRange(other.Datasets);
    }

    /// <summary>Writes llama.cpp's imatrix GGUF (tensors in name order, as llama-imatrix sorts them).</summary>
    public void Write(string path)
    {
        var w = new GgufWriter();
        w.Set("general.type", GgufValue.Of("imatrix"));
        w.Set(DatasetsKey, GgufValue.Strings(Datasets));
        w.Set(ChunkCountKey, GgufValue.Of((uint)ChunkCount));
        w.Set(ChunkSizeKey, GgufValue.Of((uint)ChunkSize));
        foreach (var e in Entries.Values)
        {
            // ggml writes a tensor with its trailing unit dimensions dropped: a dense entry's sums are 1D [columns] and
            // its count [1]; stacked experts' are [experts, columns] and [experts, 1].
            long[] sums = e.Matrices == 1 ? [e.Columns] : [e.Matrices, e.Columns], counts = e.Matrices == 1 ? [1] : [e.Matrices, 1];
            if (e.Sums != null) w.Add(new GgufWriter.Tensor(e.Name + ".in_sum", TensorType.F32, sums, s => WriteFloats(s, e.Sums)));
            w.Add(new GgufWriter.Tensor(e.Name + ".in_sum2", TensorType.F32, sums, s => WriteFloats(s, e.SumSquares)));
            w.Add(new GgufWriter.Tensor(e.Name + ".counts", TensorType.F32, counts, s => WriteFloats(s, e.Counts.Select(c => (double)c).ToArray())));
        }
        w.Write(path);
    }

    static void WriteFloats(Stream s, double[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * i), (float)values[i]);
        s.Write(bytes);
    }

    /// <summary>Reads an imatrix GGUF, or llama.cpp's legacy .dat layout. Anything else, or a damaged file, is a
    /// <see cref="ModelFormatException"/> naming the file (and the tensor, where one is at fault).</summary>
    public static ImportanceMatrix Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: importance matrix not found", path);
        var head = new byte[4];
        using (var f = File.OpenRead(path)) if (f.Read(head) < 4) throw new ModelFormatException(path, "not an importance matrix (too short)");
        return BinaryPrimitives.ReadUInt32LittleEndian(head) == GgufFile.Magic ? ReadGguf(path) : ReadLegacy(path);
    }

    static unsafe ImportanceMatrix ReadGguf(string path)
    {
        using var g = GgufFile.Open(path);
        var m = new ImportanceMatrix();
        if (g.Get("general.type") is { } type && type.Type == GgufValueType.String && type.AsString(path, "general.type") != "imatrix")
            throw new ModelFormatException(path, $"a GGUF of general.type '{type.AsString(path, "general.type")}', not an importance matrix (imatrix)");
        if (g.Get(DatasetsKey) is { } datasets)
            foreach (var item in datasets.AsArray(path, DatasetsKey).Items) m.Datasets.Add(item as string ?? throw new ModelFormatException(path, $"{DatasetsKey} holds a non-string", DatasetsKey));
        m.ChunkCount = (int)(g.GetInteger(ChunkCountKey) ?? 0);
        m.ChunkSize = (int)(g.GetInteger(ChunkSizeKey) ?? 0);
        var groups = new SortedDictionary<string, (GgufTensorInfo? Sum2, GgufTensorInfo? Counts, GgufTensorInfo? Sum)>(StringComparer.Ordinal);
        foreach (var t in g.Tensors)
        {
            string? baseName = null; int part = -1;
            foreach (var (suffix, p) in new[] { (".in_sum2", 0), (".counts", 1), (".in_sum", 2) })
                if (t.Name.EndsWith(suffix, StringComparison.Ordinal)) { baseName = t.Name[..^suffix.Length]; part = p; break; }
            if (baseName == null) continue;
            var cur = groups.GetValueOrDefault(baseName);
            groups[baseName] = part switch { 0 => cur with { Sum2 = t }, 1 => cur with { Counts = t }, _ => cur with { Sum = t } };
        }
        if (groups.Count == 0)
            throw new ModelFormatException(path, g.Tensors.Count == 0 ? "no tensors: not an importance matrix" :
                $"no NAME.in_sum2 / NAME.counts tensors (found {g.Tensors[0].Name} ...): a GGUF but not an importance matrix");
        foreach (var (name, (sum2, counts, sum)) in groups)
        {
            if (sum2 == null || counts == null)
                throw new ModelFormatException(path, $"{name} has {(sum2 == null ? "no .in_sum2" : "no .counts")} tensor", name);
            foreach (var t in new[] { sum2, counts, sum })
                if (t != null && t.Type != TensorType.F32) throw new ModelFormatException(path, $"{t.Name} is {t.Type.Name()}, not f32", name);
            long matrices = counts.ElementCount, values = sum2.ElementCount;
            if (matrices < 1 || values < 1 || values % matrices != 0 || values / matrices > int.MaxValue || matrices > int.MaxValue)
                throw new ModelFormatException(path, $"{name}: {values} sums do not divide into {matrices} matrices", name);
            if (sum != null && sum.ElementCount != values)
                throw new ModelFormatException(path, $"{name}: .in_sum has {sum.ElementCount} values, .in_sum2 {values}", name);
            var e = new Entry(name, (int)(values / matrices), (int)matrices, sum != null);
            float* s2 = (float*)g.TensorData(sum2), c = (float*)g.TensorData(counts);
            for (long i = 0; i < values; i++)
            {
                if (!float.IsFinite(s2[i]) || s2[i] < 0) throw new ModelFormatException(path, $"{name}: sum of squares {s2[i]} at {i}", name);
                e.SumSquares[i] = s2[i];
            }
            if (sum != null) { float* s1 = (float*)g.TensorData(sum); for (long i = 0; i < values; i++) e.Sums![i] = s1[i]; }
            for (int i = 0; i < matrices; i++)
            {
                if (!float.IsFinite(c[i]) || c[i] < 0) throw new ModelFormatException(path, $"{name}: count {c[i]} for matrix {i}", name);
                e.Counts[i] = (long)Math.Round(c[i], MidpointRounding.AwayFromZero); // C lround
            }
            m.Entries[name] = e;
        }
        return m;
    }

    /// <summary>llama.cpp's .dat: i32 entries; per entry i32 name length, name, i32 ncall, i32 nval, f32 values[nval]
    /// (mean squares × ncall); then optionally i32 chunk count, i32 length and the dataset name. Read as sums over
    /// ncall rows (count = ncall), as llama.cpp's loader does.</summary>
    static ImportanceMatrix ReadLegacy(string path)
    {
        var bytes = File.ReadAllBytes(path);
        int at = 0;
        int Int(string what)
        {
            if (at + 4 > bytes.Length) throw new ModelFormatException(path, $"not an importance matrix: neither GGUF nor a complete legacy .dat (ends inside {what})");
            int v = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(at));
            at += 4;
            return v;
        }
        var m = new ImportanceMatrix();
        int n = Int("the entry count");
        if (n < 1 || n > 1_000_000) throw new ModelFormatException(path, $"not an importance matrix: neither GGUF nor legacy .dat (entry count {n})");
        for (int i = 0; i < n; i++)
        {
            int len = Int("a name length");
            if (len < 1 || len > 4096 || at + len > bytes.Length) throw new ModelFormatException(path, $"not an importance matrix: entry {i + 1} has a name of {len} bytes");
            string name = Encoding.UTF8.GetString(bytes, at, len);
            at += len;
            int ncall = Int($"{name}'s call count"), nval = Int($"{name}'s value count");
            if (nval < 1 || ncall < 0 || (long)at + 4L * nval > bytes.Length) throw new ModelFormatException(path, $"{name}: {nval} values do not fit the file", name);
            var e = new Entry(name, nval, 1, withSums: false);
            for (int j = 0; j < nval; j++)
            {
                float v = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(at + 4 * j));
                if (!float.IsFinite(v) || v < 0) throw new ModelFormatException(path, $"{name}: value {v} at {j}", name);
                e.SumSquares[j] = v;
            }
            at += 4 * nval;
            e.Counts[0] = ncall;
            m.Entries[name] = e;
        }
        if (at + 4 <= bytes.Length)
        {
            m.ChunkCount = Int("the chunk count");
            if (at + 4 <= bytes.Length)
            {
                int len = Int("the dataset name length");
                if (len > 0 && at + len <= bytes.Length) m.Datasets.Add(Encoding.UTF8.GetString(bytes, at, len));
            }
        }
        return m;
    }
}

/// <summary>
/// Collects an importance matrix from a model's forward passes (<see cref="LlamaModel.ActivationObserver"/>): for every
/// weight whose name starts with "blk." (and the output head when asked, as llama-imatrix --process-output), Σx² and
/// Σx per input column and the row count; an expert's rows go to its own matrix of the stacked tensor. Sums accumulate
/// in double (llama-imatrix accumulates in float). No allocation after a weight's first sight.
/// </summary>
public sealed unsafe class ImportanceCollector(ImportanceMatrix matrix, bool includeOutput = false) : IActivationObserver
{
    readonly Dictionary<WeightMatrix, (ImportanceMatrix.Entry? Entry, int Matrix)> _targets = new(ReferenceEqualityComparer.Instance);
    readonly int _experts = 0;

    public ImportanceMatrix Matrix { get; } = matrix;

    /// <param name="experts">the model's expert count (the matrices of a stacked expert entry)</param>
    public ImportanceCollector(ImportanceMatrix matrix, int experts, bool includeOutput = false) : this(matrix, includeOutput) => _experts = experts;

    public void Observe(WeightMatrix weight, float* x, int rows, int ldx)
    {
        if (!_targets.TryGetValue(weight, out var target))
        {
            target = Resolve(weight);
            _targets[weight] = target;
        }
        var e = target.Entry;
        if (e == null || rows <= 0) return;
        int cols = weight.Cols;
        fixed (double* s2 = &e.SumSquares[(long)target.Matrix * cols])
        fixed (double* s1 = e.Sums)
        {
            double* s = s1 == null ? null : s1 + (long)target.Matrix * cols;
            for (int r = 0; r < rows; r++)
            {
                float* row = x + (long)r * ldx;
                for (int j = 0; j < cols; j++)
                {
                    double v = row[j];
                    s2[j] += v * v;
                    if (s != null) s[j] += v;
                }
            }
        }
        e.Counts[target.Matrix] += rows;
    }

    (ImportanceMatrix.Entry?, int) Resolve(WeightMatrix weight)
    {
        string name = weight.Name;
        if (!name.StartsWith("blk.", StringComparison.Ordinal) && !(includeOutput && name == TensorNames.Gguf(TensorRole.Output))) return (null, 0);
        int index = 0, matrices = 1;
        if (TensorNames.TryParseGguf(name, out var part) && part.Expert >= 0)
        {
            index = part.Expert;
            matrices = Math.Max(_experts, part.Expert + 1);
            name = TensorNames.Gguf(part.Role, part.Layer, part.Bias);
        }
        if (!Matrix.Entries.TryGetValue(name, out var e))
        {
            e = new ImportanceMatrix.Entry(name, weight.Cols, matrices);
            Matrix.Entries[name] = e;
        }
        else if (e.Columns != weight.Cols || e.Matrices != matrices)
            throw new ArgumentException($"the importance matrix being added to (--in-file) holds {name} as [{e.Matrices}, {e.Columns}] but this model's is [{matrices}, {weight.Cols}]: it was computed on another model");
        return (e, index);
    }
}
