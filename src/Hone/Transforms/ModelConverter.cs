using System.Text.Json;
using System.Text.RegularExpressions;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tensors.Quantization;

namespace Hone.Transforms;

/// <param name="Output">a path ending in .gguf, or a directory for a Hugging Face safetensors checkpoint</param>
/// <param name="Type">storage type for 2D weights (null keeps each tensor's type); norms and biases stay f32</param>
/// <param name="Verify">reload the output and compare its logits with the source on a short sequence</param>
/// <param name="Imatrix">an importance matrix (llama.cpp imatrix GGUF or legacy .dat): Q4_0, Q4_K, Q6_K, hq3_o and hq4_o weigh each
/// weight's rounding error by its column's mean squared activation, as llama-quantize --imatrix does; tensors the file
/// lacks are quantized unweighted (and listed in the notes)</param>
/// <param name="TypeFor">per-tensor types: the first rule whose pattern (a regular expression, searched in the GGUF
/// tensor name; a stacked expert tensor is "blk.N.ffn_down_exps.weight") matches a 2D weight sets its type, before
/// <paramref name="Recipe"/> and <paramref name="Type"/>; a rule that matches nothing is refused</param>
/// <param name="Recipe">a llama.cpp mixture of types (<see cref="QuantRecipe"/>), overriding <paramref name="Type"/></param>
/// <param name="Gptq">quantize the layers' projections with GPTQ error feedback (<see cref="Transforms.Gptq"/>) using
/// Hessians from a calibration pass over this text</param>
public sealed record ConvertOptions(string Input, string Output, TensorType? Type = null, bool Verify = true, int Threads = 0,
    string? Imatrix = null, IReadOnlyList<TypeRule>? TypeFor = null, QuantRecipe? Recipe = null, GptqCalibration? Gptq = null);

/// <param name="Text">calibration text (UTF-8), run through the source model at full precision</param>
/// <param name="Tokens">tokens of the text used (from its start)</param>
/// <param name="Context">tokens per window (each from an empty cache; capped at the model's context)</param>
/// <param name="MemoryBudget">bytes of float64 Hessians held at once; layers are calibrated in groups that fit</param>
public sealed record GptqCalibration(string Text, GptqOptions Options, int Tokens = 4096, int Context = 512, long MemoryBudget = 4L << 30);

/// <summary>A per-tensor type: tensors whose GGUF name matches <paramref name="Pattern"/> (a regular expression, searched)
/// are stored as <paramref name="Type"/>.</summary>
public sealed record TypeRule(string Pattern, TensorType Type)
{
    /// <summary>Parses "PATTERN=TYPE" (hone convert --type-for).</summary>
    public static TypeRule Parse(string text)
    {
        int eq = text.LastIndexOf('=');
        if (eq <= 0 || eq == text.Length - 1) throw new ArgumentException($"--type-for '{text}': expected PATTERN=TYPE, e.g. ffn_down=q6_k");
        string pattern = text[..eq];
        try { _ = new Regex(pattern); }
        catch (ArgumentException e) { throw new ArgumentException($"--type-for '{text}': '{pattern}' is not a regular expression ({e.Message})"); }
        return new TypeRule(pattern, MatrixTypes.Parse(text[(eq + 1)..], $"--type-for '{text}'"));
    }
}

/// <summary>llama-quantize's mixtures (llama-quant.cpp's per-tensor rules).</summary>
public enum QuantRecipe
{
    /// <summary>Q4_K_M: Q4_K everywhere except the output head (or a tied embedding), and attn_v and ffn_down in the
    /// first and last eighth of the layers and every third layer between (use_more_bits), which take Q6_K.</summary>
    Q4_K_M,
}

/// <param name="MaxLogitDifference">largest |logit difference| between source and output on the check sequence</param>
/// <param name="ImportanceWeightedError">with an importance matrix: the relative importance-weighted rounding error of
/// the weighted tensors (Σ imp·(w−q)² / Σ imp·w²) as written, and as the unweighted quantizer would have written them</param>
/// <param name="GptqProxyLoss">with GPTQ: the relative proxy loss tr((W−Q)·H·(W−Q)ᵀ) / tr(W·H·Wᵀ) of the tensors GPTQ
/// quantized, as written and as the type's quantizer alone (with the importance matrix when given) would have written them</param>
public sealed record ConvertReport(string Output, string Format, int Tensors, long Bytes, IReadOnlyList<string> Notes, double? MaxLogitDifference,
    ImportanceError? ImportanceWeightedError = null, ImportanceError? GptqProxyLoss = null);

/// <param name="With">Σ imp·(w−q)² / Σ imp·w² of the tensors as quantized with the importance matrix</param>
/// <param name="Without">the same measure for the unweighted quantizer on the same rows</param>
public sealed record ImportanceError(double With, double Without);

/// <summary>
/// Converts between Hugging Face directories and GGUF files and requantizes. Hugging Face llama/mistral q and k
/// rows are permuted into the order llama.cpp's adjacent-pair rope expects when writing GGUF (and back when reading
/// GGUF), exactly as llama.cpp's converter does, so a file we write runs unchanged in llama.cpp.
/// </summary>
public static unsafe class ModelConverter
{
    /// <summary>llama.cpp's general.file_type (LLAMA_FTYPE) for a uniform weight type.</summary>
    static uint FileType(TensorType t) => t switch
    {
        TensorType.F32 => 0,
        TensorType.F16 => 1,
        TensorType.Q4_0 => 2,
        TensorType.Q8_0 => 7,
        TensorType.Q4_K => 15,
        TensorType.Q6_K => 18,
        TensorType.BF16 => 32,
        _ => 0,
    };

    /// <param name="cancel">stops the conversion between tensors; nothing is left behind (exit through
    /// <see cref="OperationCanceledException"/>)</param>
    public static ConvertReport Convert(ConvertOptions o, Action<string>? log = null, CancellationToken cancel = default)
    {
        log ??= _ => { };
        if (Path.GetFullPath(o.Output) == Path.GetFullPath(o.Input)) throw new ArgumentException("output would overwrite the input");
        using var source = Checkpoint.Open(o.Input);
        // Validate the whole source (shapes, types, finiteness) before writing anything.
        using var weights = LlamaWeights.Load(source);
        cancel.ThrowIfCancellationRequested();
        var notes = new List<string>();
        double? diff = null;
        Action<string>? verify = null;
        if (o.Verify)
            verify = staged =>
            {
                log("verifying: comparing logits of the output with the source...");
                diff = CompareLogits(weights, staged, o.Threads, cancel);
                if (!double.IsFinite(diff.Value))
                    throw new InvalidOperationException($"verification failed: the output's logits are not finite (max difference {diff}); nothing was written");
                notes.Add($"verified: max |logit difference| {diff:G3} over a 16-token check sequence");
            };
        var importance = o.Imatrix != null ? ImportanceMatrix.Read(o.Imatrix) : null;
        if (importance != null) log($"importance matrix {o.Imatrix}: {importance.Entries.Count} entries, {importance.ChunkCount} chunks of {importance.ChunkSize}");
        var choice = new TypeChoice(o.TypeFor ?? [], o.Recipe, importance, o.Imatrix);
        choice.CheckRules(weights.Config);
        if (o.Gptq != null)
        {
            o.Gptq.Options.Check();
            if (!o.Output.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)) throw new ArgumentException("--gptq quantizes: write a .gguf file");
            choice.Gptq = new GptqState(o.Gptq, new HessianSource(o.Input, weights.Config, o.Gptq.Text, o.Gptq.Context, o.Gptq.Tokens, o.Threads, o.Gptq.MemoryBudget, log), o.Threads);
        }
        try
        {
            var (format, tensors, bytes) = Write(weights.Config, weights, null, source, o.Output, o.Recipe != null ? TensorType.Q4_K : o.Type, notes, log, cancel, verify, choice);
            choice.Finish(notes);
            return new ConvertReport(o.Output, format, tensors, bytes, notes, diff, choice.WeightedError, choice.Gptq?.ProxyLoss);
        }
        finally { choice.Gptq?.Hessians.Dispose(); }
    }

    /// <summary>
    /// Write weights held in memory as a .gguf file or a Hugging Face directory. <paramref name="source"/> tells the
    /// layout the weights are in (GGUF llama q/k rows are permuted) and supplies tokenizer metadata or files.
    /// </summary>
    public static (string Format, int Tensors, long Bytes) Write(LlamaWeights weights, Checkpoint? source, string output,
        TensorType? type, List<string> notes, Action<string>? log = null) =>
        Write(weights, source, output, type, notes, log, CancellationToken.None, null);

    /// <summary>
    /// The whole output is written to a temporary sibling (a hidden ".NAME.PID.GUID.tmp" file or directory), checked by
    /// <paramref name="verify"/> there, and only then moved under its final name; any failure or cancellation deletes
    /// the temporary, so an interrupted run never leaves something that looks like a finished model.
    /// </summary>
    /// <param name="verify">called with the temporary path once everything is written; throws to refuse the output</param>
    static (string Format, int Tensors, long Bytes) Write(LlamaWeights weights, Checkpoint? source, string output,
        TensorType? type, List<string> notes, Action<string>? log, CancellationToken cancel, Action<string>? verify) =>
        Write(weights.Config, weights, null, source, output, type, notes, log, cancel, verify, null);

    /// <summary>
    /// Write a model whose tensors are computed one at a time, in writing order, by <paramref name="compute"/> (a merge:
    /// only the tensor being written is held). It returns the tensor named (canonical name) as fp32 in the layout
    /// <paramref name="config"/> describes, [rows, cols] row-major; the array may be reused for the next call and may be
    /// longer than the tensor. Staged, verified and committed like any other output.
    /// </summary>
    /// <param name="tokenizerDirectory">a folder of Hugging Face tokenizer files (a merge's united vocabulary) that
    /// replaces <paramref name="source"/>'s tokenizer in the output</param>
    internal static (string Format, int Tensors, long Bytes) WriteComputed(ModelConfig config, Func<string, float[]> compute, Checkpoint? source,
        string output, TensorType? type, List<string> notes, Action<string>? log, CancellationToken cancel, Action<string>? verify,
        string? tokenizerDirectory = null) =>
        Write(config, null, compute, source, output, type, notes, log, cancel, verify, null, tokenizerDirectory);

    static (string Format, int Tensors, long Bytes) Write(ModelConfig config, LlamaWeights? weights, Func<string, float[]>? compute, Checkpoint? source,
        string output, TensorType? type, List<string> notes, Action<string>? log, CancellationToken cancel, Action<string>? verify, TypeChoice? choice,
        string? tokenizerDirectory = null)
    {
        log ??= _ => { };
        var o = new { Output = output, Type = type, Input = source?.Path ?? "(in memory)" };
        bool toGguf = o.Output.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase);
        if (o.Type is TensorType wanted && !MatrixTypes.All.Contains(wanted))
            throw new ArgumentException($"weights cannot be written as {wanted.Name()}; use one of {MatrixTypes.Names}");
        if (!toGguf && o.Type is TensorType t && t is not (TensorType.F32 or TensorType.F16 or TensorType.BF16))
            throw new ArgumentException($"a Hugging Face safetensors directory holds f32, f16 or bf16 weights, not {t.Name()}: write a .gguf file instead");
        if (toGguf) config.RequireGgufExpressible();
        bool permuteToGguf = toGguf && config.RopeLayout == RopeLayout.Halves && config.GgufArchitecture == "llama";
        bool permuteFromGguf = !toGguf && config.RopeLayout == RopeLayout.AdjacentPairs;
        if ((permuteToGguf || permuteFromGguf) && config.RotaryDims != config.HeadDim)
            throw new ModelFormatException(o.Input, $"partial rotary embeddings ({config.RotaryDims} of {config.HeadDim} dims) cannot be converted between layouts");

        var temporaries = new List<NativeBuffer>();
        try
        {
            var plan = new List<(string Name, TensorType Type, int Rows, int Cols, Func<int, int> RowOrder, Func<int, nint> Row, TensorType SourceType, Func<float[]>? Compute)>();
            var importanceOf = new Dictionary<string, float[]>();
            foreach (var (role, layer, bias, rows, cols, expert) in LlamaWeights.Expected(config))
            {
                string name = TensorNames.Gguf(role, layer, bias, expert);
                bool vector = rows == 1;
                if (weights == null)
                {
                    // Computed tensors are fp32 in the config's layout; rows are reordered as for weights, a permuted
                    // projection's bias element by element.
                    Func<int, int> rowOrder = r => r;
                    if (role is TensorRole.AttentionQuery or TensorRole.AttentionKey)
                    {
                        if (permuteToGguf) rowOrder = r => RopePermutation.HalvesRowForAdjacentRow(r, config.HeadDim);
                        if (permuteFromGguf) rowOrder = r => RopePermutation.AdjacentRowForHalvesRow(r, config.HeadDim);
                    }
                    Func<float[]> produce = () => compute!(name);
                    if (vector && bias && (permuteToGguf || permuteFromGguf) && role is TensorRole.AttentionQuery or TensorRole.AttentionKey)
                    {
                        var elementOrder = rowOrder;
                        var permutedBias = new float[cols];
                        produce = () =>
                        {
                            var values = compute!(name);
                            for (int i = 0; i < cols; i++) permutedBias[i] = values[elementOrder(i)];
                            return permutedBias;
                        };
                        rowOrder = r => r;
                    }
                    plan.Add((name, vector ? TensorType.F32 : ChooseType(o.Type ?? TensorType.F32, cols, name, notes), rows, cols, rowOrder, _ => 0,
                        TensorType.F32, produce));
                    continue;
                }
                var matrix = vector ? null : weights.Matrices().First(m => m.Name == name);
                TensorType sourceType = matrix?.Type ?? TensorType.F32;
                string stacked = TensorNames.Gguf(role, layer, bias);
                TensorType requested = vector ? TensorType.F32 : choice?.For(stacked, role, layer, config) ?? o.Type ?? sourceType;
                TensorType target = vector ? TensorType.F32 : ChooseType(requested, cols, name, notes);
                if (!vector && choice?.Importance(stacked, Math.Max(0, expert), cols, target, sourceType) is { } columnWeights) importanceOf[name] = columnWeights;
                Func<int, int> order = r => r;
                int heads = role == TensorRole.AttentionQuery ? config.Heads : config.KvHeads;
                if (role is TensorRole.AttentionQuery or TensorRole.AttentionKey)
                {
                    if (permuteToGguf) order = r => RopePermutation.HalvesRowForAdjacentRow(r, config.HeadDim);
                    if (permuteFromGguf) order = r => RopePermutation.AdjacentRowForHalvesRow(r, config.HeadDim);
                }
                byte* basePointer = vector ? (byte*)weights.Vector(role, layer, bias) : matrix!.Data;
                long rowBytes = vector ? (long)cols * 4 : matrix!.RowBytes;
                if (vector && bias && (permuteToGguf || permuteFromGguf) && role is TensorRole.AttentionQuery or TensorRole.AttentionKey)
                {
                    // A bias vector of a permuted projection is permuted the same way, element by element.
                    var permuted = new NativeBuffer((long)cols * 4);
                    temporaries.Add(permuted);
                    float* src = (float*)basePointer, dst = permuted.AsFloats;
                    for (int i = 0; i < cols; i++) dst[i] = src[order(i)];
                    plan.Add((name, target, 1, cols, r => r, _ => (nint)dst, TensorType.F32, null));
                    continue;
                }
                plan.Add((name, target, vector ? 1 : rows, cols, order, r => (nint)(basePointer + r * rowBytes), sourceType, null));
            }

            if (toGguf && config.GgufArchitecture == "qwen2moe" && config.TiedEmbeddings)
            {
                // llama.cpp's qwen2moe requires output.weight; a tied head is written a second time under that name.
                var embedding = plan.First(p => p.Name == TensorNames.Gguf(TensorRole.TokenEmbedding));
                plan.Add(embedding with { Name = TensorNames.Gguf(TensorRole.Output) });
                notes.Add("llama.cpp's qwen2moe needs an output.weight: the tied embedding is written twice (read back as an untied head with the same values)");
            }

            void WriteTensor(Stream s, int index)
            {
                cancel.ThrowIfCancellationRequested();
                var p = plan[index];
                var row = new float[p.Cols];
                long outRow = p.Type.Traits().BytesFor(p.Cols);
                var buffer = new byte[outRow];
                float[]? computed = p.Compute?.Invoke();
                float[]? importance = importanceOf.GetValueOrDefault(p.Name);
                var check = importance != null ? new float[p.Cols] : null;
                var plainBytes = importance != null ? new byte[outRow] : null;
                if (computed != null && computed.LongLength < (long)p.Rows * p.Cols)
                    throw new InvalidOperationException($"{p.Name}: {computed.LongLength} values computed for [{p.Rows}, {p.Cols}]");
                // GPTQ quantizes the whole matrix at once (rows in source order), then rows are written from it.
                byte[]? gptq = computed == null && p.Rows > 1 && p.SourceType != p.Type ? choice?.Gptq?.Quantize(p.Name, p.Rows, p.Cols, p.Type, p.SourceType, p.Row, importance, log) : null;
                fixed (float* c = computed)
                fixed (float* r = row)
                fixed (byte* b = buffer)
                    for (int i = 0; i < p.Rows; i++)
                    {
                        byte* src = computed != null ? (byte*)(c + (long)p.RowOrder(i) * p.Cols) : (byte*)p.Row(p.RowOrder(i));
                        if (p.SourceType == p.Type) Buffer.MemoryCopy(src, b, outRow, outRow);
                        else
                        {
                            WeightRows.DequantizeSegment(p.SourceType, src, 0, p.Cols, r);
                            if (gptq != null) gptq.AsSpan((int)(p.RowOrder(i) * outRow), (int)outRow).CopyTo(new Span<byte>(b, (int)outRow));
                            if (importance != null)
                            {
                                var written = new Span<byte>(b, (int)outRow);
                                if (gptq == null) WeightedQuantization.QuantizeRow(p.Type, row, importance, written);
                                // What the importance bought: the weighted rounding error of this row, and of the unweighted encoding.
                                BlockQuantization.DequantizeRow(p.Type, written, check);
                                double withImportance = 0, norm = 0;
                                for (int j = 0; j < p.Cols; j++) { double d = row[j] - check![j]; withImportance += importance[j] * d * d; norm += importance[j] * (double)row[j] * row[j]; }
                                BlockQuantization.QuantizeRow(p.Type, row, plainBytes);
                                BlockQuantization.DequantizeRow(p.Type, plainBytes, check);
                                double without = 0;
                                for (int j = 0; j < p.Cols; j++) { double d = row[j] - check![j]; without += importance[j] * d * d; }
                                choice!.AddError(withImportance, without, norm);
                            }
                            else if (gptq == null) LlamaWeights.StoreRow(row, p.Type, b);
                        }
                        s.Write(buffer);
                        if ((i & 4095) == 4095) cancel.ThrowIfCancellationRequested();
                    }
            }

            int written = plan.Count; // tensors in the output: a GGUF stacks each layer's experts into one
            var matrixTypes = plan.Where(p => p.Rows > 1).Select(p => p.Type).Distinct().ToList();
            var mainType = matrixTypes.GroupBy(t => t).OrderByDescending(g => g.Count()).First().Key;
            var staged = AtomicFile.TemporarySibling(o.Output.TrimEnd('/', '\\'));
            try
            {
                if (toGguf)
                {
                    var w = new GgufWriter();
                    w.Set("general.architecture", GgufValue.Of(config.GgufArchitecture));
                    w.Set("general.name", GgufValue.Of(Path.GetFileNameWithoutExtension(o.Input.TrimEnd('/', '\\'))));
                    config.WriteGgufMetadata(w);
                    // llama.cpp has no file type for Hone's own types: the key is left out rather than mislabelled.
                    if (!OutlierFormat.IsOutlierType(mainType)) w.Set("general.file_type", GgufValue.Of(FileType(mainType)));
                    if (matrixTypes.Any(OutlierFormat.IsOutlierType))
                    {
                        w.Set(OutlierFormat.VersionKey, GgufValue.Of(OutlierFormat.Version));
                        OutlierFormat.AddNotes(matrixTypes, notes);
                    }
                    w.Set("general.quantization_version", GgufValue.Of(2u));
                    if (tokenizerDirectory != null)
                    {
                        var tokenizer = Tokenization.Tokenizer.FromHuggingFaceDirectory(tokenizerDirectory);
                        tokenizer.WriteGgufMetadata(w);
                        notes.Add($"tokenizer: {tokenizer.VocabSize} tokens written as GGUF metadata");
                    }
                    else if (source?.Gguf != null)
                    {
                        // Keep the source's tokenizer and descriptive metadata; architecture keys were rewritten above.
                        foreach (var (key, value) in source.Gguf.MetadataInOrder)
                            if (key.StartsWith("tokenizer.", StringComparison.Ordinal) ||
                                (key.StartsWith("general.", StringComparison.Ordinal) && key is not ("general.architecture" or "general.file_type" or "general.alignment" or "general.quantization_version")))
                                w.Set(key, value);
                    }
                    else if (source == null || !TokenizerBridge.TryWriteGguf(source, w, notes))
                    {
                        w.Set("tokenizer.ggml.model", GgufValue.Of("none"));
                        notes.Add("no tokenizer found next to the model: wrote tokenizer.ggml.model = none (llama.cpp loads it without a vocabulary)");
                    }
                    written = 0;
                    for (int i = 0; i < plan.Count; i++)
                    {
                        int index = i;
                        var p = plan[i];
                        // A layer's experts go into one stacked tensor [E, rows, cols], as llama.cpp reads them.
                        if (TensorNames.TryParseGguf(p.Name, out var part) && part.Expert == 0)
                        {
                            int count = config.Experts;
                            w.Add(new GgufWriter.Tensor(TensorNames.Gguf(part.Role, part.Layer, part.Bias), p.Type, [count, p.Rows, p.Cols],
                                s => { for (int e = 0; e < count; e++) WriteTensor(s, index + e); }));
                            i += count - 1;
                        }
                        else w.Add(new GgufWriter.Tensor(p.Name, p.Type, p.Rows == 1 ? [p.Cols] : [p.Rows, p.Cols], s => WriteTensor(s, index)));
                        written++;
                    }
                    log($"writing {o.Output} ({written} tensors)...");
                    w.Write(staged);
                }
                else
                {
                    Directory.CreateDirectory(staged);
                    var w = new SafetensorsWriter();
                    w.SetMetadata("format", "pt");
                    for (int i = 0; i < plan.Count; i++)
                    {
                        int index = i;
                        var p = plan[i];
                        if (!TensorNames.TryParseGguf(p.Name, out var parsed)) throw new InvalidOperationException(p.Name);
                        // The shared expert's gate is a Linear(D, 1) in transformers: [1, D].
                        long[] shape = parsed.Role == TensorRole.SharedExpertRouter ? [1, p.Cols] : p.Rows == 1 ? [p.Cols] : [p.Rows, p.Cols];
                        w.Add(new SafetensorsWriter.Tensor(TensorNames.HuggingFace(parsed.Role, parsed.Layer, parsed.Bias, parsed.Expert, config.Architecture),
                            p.Type, shape, s => WriteTensor(s, index)));
                    }
                    log($"writing {o.Output}/model.safetensors ({plan.Count} tensors)...");
                    w.Write(Path.Combine(staged, "model.safetensors"));
                    string dtype = mainType switch { TensorType.BF16 => "bfloat16", TensorType.F16 => "float16", _ => "float32" };
                    var hfConfig = (config with { RopeLayout = RopeLayout.Halves }).ToHuggingFaceJson(dtype);
                    AtomicFile.WriteAllText(Path.Combine(staged, "config.json"), hfConfig.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
                    if (tokenizerDirectory != null)
                        foreach (var file in Directory.GetFiles(tokenizerDirectory)) File.Copy(file, Path.Combine(staged, Path.GetFileName(file)), overwrite: true);
                    else if (source != null) TokenizerBridge.CopyHuggingFaceFiles(source, staged, notes);
                }
                cancel.ThrowIfCancellationRequested();
                verify?.Invoke(staged);
                cancel.ThrowIfCancellationRequested();
                Commit(staged, o.Output, toGguf);
            }
            catch
            {
                DeleteStaged(staged);
                throw;
            }
            long bytes = toGguf ? new FileInfo(o.Output).Length : Directory.GetFiles(o.Output).Sum(f => new FileInfo(f).Length);
            return (toGguf ? "gguf" : "huggingface", written, bytes);
        }
        finally { foreach (var buffer in temporaries) buffer.Dispose(); }
    }

    /// <summary>Move a verified output into place. A file, or a directory onto nothing (or an empty directory), is one
    /// rename. Into a directory that holds other things (a training run's checkpoints, a tokenizer written first), the
    /// files move one by one: the old config.json and shard index leave first and the new config.json arrives last,
    /// so an interrupted move leaves a directory without config.json, which no loader takes for a model.</summary>
    static void Commit(string staged, string output, bool toGguf)
    {
        if (toGguf) { File.Move(staged, output, overwrite: true); return; }
        output = Path.GetFullPath(output.TrimEnd('/', '\\'));
        if (Directory.Exists(output) && !Directory.EnumerateFileSystemEntries(output).Any()) Directory.Delete(output);
        if (!Directory.Exists(output))
        {
            Directory.Move(staged, output);
            return;
        }
        foreach (var stale in new[] { "config.json", "model.safetensors.index.json" })
            File.Delete(Path.Combine(output, stale));
        foreach (var file in Directory.GetFiles(staged).Where(f => Path.GetFileName(f) != "config.json"))
            File.Move(file, Path.Combine(output, Path.GetFileName(file)), overwrite: true);
        File.Move(Path.Combine(staged, "config.json"), Path.Combine(output, "config.json"));
        Directory.Delete(staged, recursive: true);
    }

    static void DeleteStaged(string staged)
    {
        try
        {
            if (File.Exists(staged)) File.Delete(staged);
            else if (Directory.Exists(staged)) Directory.Delete(staged, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>Per-tensor types (rules, recipe) and importance weights of one conversion, with what to tell about them.</summary>
    sealed class TypeChoice(IReadOnlyList<TypeRule> rules, QuantRecipe? recipe, ImportanceMatrix? importance, string? importanceFile)
    {
        readonly HashSet<string>[] _matches = rules.Select(_ => new HashSet<string>()).ToArray();
        readonly Regex[] _patterns = rules.Select(r => new Regex(r.Pattern, RegexOptions.CultureInvariant)).ToArray();
        readonly SortedSet<string> _unweighted = new(StringComparer.Ordinal), _weighted = new(StringComparer.Ordinal), _copied = new(StringComparer.Ordinal);

        public TensorType? For(string name, TensorRole role, int layer, ModelConfig config)
        {
            for (int i = 0; i < rules.Count; i++)
                if (_patterns[i].IsMatch(name)) { _matches[i].Add(name); return rules[i].Type; }
            return recipe switch
            {
                QuantRecipe.Q4_K_M => role == TensorRole.Output || (role == TensorRole.TokenEmbedding && config.TiedEmbeddings)
                    || (role is TensorRole.AttentionValue or TensorRole.FeedForwardDown or TensorRole.ExpertDown && UseMoreBits(layer, config.Layers))
                    ? TensorType.Q6_K : TensorType.Q4_K,
                _ => null,
            };
        }

        /// <summary>llama-quant.cpp's use_more_bits: the first and last eighth of the layers, and every third between.</summary>
        static bool UseMoreBits(int layer, int layers) => layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;

        /// <summary>GPTQ's Hessians and tallies, when converting with --gptq.</summary>
        public GptqState? Gptq { get; set; }

        public float[]? Importance(string name, int expert, int cols, TensorType target, TensorType source)
        {
            if (importance == null || target is not (TensorType.Q4_0 or TensorType.Q4_K or TensorType.Q6_K or TensorType.Q8_0 or TensorType.HQ3_O or TensorType.HQ4_O)) return null;
            if (target == source) { _copied.Add(name); return null; }
            var weights = importance.ColumnWeights(name, expert, cols, importanceFile!);
            if (weights == null) { _unweighted.Add(name); return null; }
            if (target == TensorType.Q8_0) return null; // ggml's Q8_0 ignores importance weights
            _weighted.Add(name);
            return weights;
        }

        /// <summary>Refuses, before anything is written, a rule that matches no 2D weight of the model.</summary>
        public void CheckRules(ModelConfig config)
        {
            var names = LlamaWeights.Expected(config).Where(t => t.Rows > 1).Select(t => TensorNames.Gguf(t.Role, t.Layer, t.Bias)).Distinct().ToList();
            for (int i = 0; i < rules.Count; i++)
                if (!names.Any(_patterns[i].IsMatch))
                    throw new ArgumentException($"--type-for '{rules[i].Pattern}={rules[i].Type.Name()}' matches no 2D weight of the model (patterns search GGUF names such as {names.FirstOrDefault(n => n.StartsWith("blk.", StringComparison.Ordinal)) ?? names[0]})");
        }

        double _weightedError, _plainError, _weightedNorm;

        /// <summary>Adds one row's importance-weighted squared rounding errors (Σ imp·(w − q)², with and without the
        /// importance) and its Σ imp·w².</summary>
        public void AddError(double weighted, double plain, double norm) { _weightedError += weighted; _plainError += plain; _weightedNorm += norm; }

        /// <summary>Relative importance-weighted rounding error over the weighted tensors: with the importance, and what
        /// the unweighted quantizer gives on the same rows.</summary>
        public ImportanceError? WeightedError => _weightedNorm > 0 ? new(_weightedError / _weightedNorm, _plainError / _weightedNorm) : null;

        public void Finish(List<string> notes)
        {
            for (int i = 0; i < rules.Count; i++) notes.Add($"--type-for {rules[i].Pattern}={rules[i].Type.Name()}: {_matches[i].Count} tensors");
            Gptq?.Finish(notes, importance != null);
            if (importance == null) return;
            notes.Add($"importance matrix {importanceFile}: {_weighted.Count} tensors quantized with importance weights");
            if (WeightedError is { With: var with, Without: var without })
                notes.Add($"importance-weighted rounding error of those tensors{(Gptq != null ? " as written (GPTQ's error feedback trades it for a lower proxy loss)" : "")}, Σ imp·(w−q)² / Σ imp·w²: {with:G4} (unweighted quantization of the same rows: {without:G4}, {(with <= without ? $"{(1 - with / without) * 100:F1}% lower" : $"{(with / without - 1) * 100:F1}% higher")})");
            if (_unweighted.Count > 0)
                notes.Add($"importance matrix has no entry for {_unweighted.Count} quantized tensors, quantized unweighted as llama-quantize does: {string.Join(", ", _unweighted)}");
            if (_copied.Count > 0)
                notes.Add($"{_copied.Count} tensors were already of their target type and were copied, not requantized (importance not applied): {string.Join(", ", _copied.Take(6))}{(_copied.Count > 6 ? ", ..." : "")}");
        }
    }

    /// <summary>A type whose block fits the row; otherwise the nearest that does (as llama.cpp falls back).</summary>
    static TensorType ChooseType(TensorType wanted, int cols, string name, List<string> notes)
    {
        if (cols % wanted.Traits().BlockSize == 0) return wanted;
        var fallback = cols % 32 == 0 ? TensorType.Q8_0 : TensorType.F16;
        if (wanted is TensorType.F32 or TensorType.F16 or TensorType.BF16) fallback = wanted;
        notes.Add($"{name}: rows of {cols} are not a multiple of the {wanted.Name()} block size {wanted.Traits().BlockSize}; stored as {fallback.Name()}");
        return fallback;
    }


    static double CompareLogits(LlamaWeights sourceWeights, string output, int threads, CancellationToken cancel)
    {
        using var pool = new WorkerPool(WorkerPool.ResolveThreadCount(threads));
        using var converted = Checkpoint.Open(output);
        using var outWeights = LlamaWeights.Load(converted);
        var c = sourceWeights.Config;
        var tokens = Enumerable.Range(0, 16).Select(i => (i * 7919 + 13) % c.VocabSize).ToArray();
        var a = new float[tokens.Length * c.VocabSize];
        var b = new float[tokens.Length * c.VocabSize];
        cancel.ThrowIfCancellationRequested();
        using (var m = new LlamaModel(sourceWeights, pool, maxContext: 32)) m.Forward(tokens, a, allLogits: true);
        cancel.ThrowIfCancellationRequested();
        using (var m = new LlamaModel(outWeights, pool, maxContext: 32)) m.Forward(tokens, b, allLogits: true);
        double max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i])); // Math.Max keeps a NaN
        return max;
    }
}
