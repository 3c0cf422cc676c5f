using Hone.Formats;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Transforms.Merging;

public sealed record ModelMergeReport(string Output, string Format, string Method, int Models, int Tensors, long Bytes, IReadOnlyList<string> Notes);

/// <summary>
/// Merges models of one architecture and shape tensor by tensor (`hone merge`, mergekit's configurations): for each
/// tensor, every input's values are read from its memory-mapped file into one fp32 buffer per input (its pages then
/// released), the method combines them, and the result is written and dropped before the next tensor. Peak memory is
/// about one (largest) tensor per input plus one for the output, whatever the model's size. The output is staged,
/// re-read to check every tensor is present, of its shape and finite, and only then moved under its name.
/// </summary>
public static unsafe class ModelMerger
{
    sealed record Input(string Path, Checkpoint Checkpoint, bool IsBase);

    public static ModelMergeReport Merge(ModelMergeOptions o, Action<string>? log = null, Action<int, int>? progress = null,
        CancellationToken cancel = default)
    {
        log ??= _ => { };
        var method = MergeMethods.Find(o.Method) ?? throw new ArgumentException($"merge method '{o.Method}' is not one of {MergeMethods.Names}");
        string Full(string p) => System.IO.Path.GetFullPath(p).TrimEnd('/', '\\');
        var notes = new List<string>();
        string? basePath = method.BaseModel == BaseModelUse.Required ? o.BaseModel ?? throw new ArgumentException($"merge method {method.Name} needs a base model") : null;
        if (method.BaseModel == BaseModelUse.None && o.BaseModel != null && o.Models.All(m => Full(m.Path) != Full(o.BaseModel)))
            notes.Add($"{method.Name} does not use base_model; only its tokenizer is taken");
        // As mergekit: the base model listed among the models is the base, not one of the merged deltas.
        var models = o.Models.Where(m => basePath == null || Full(m.Path) != Full(basePath)).ToList();
        if (models.Count < method.MinimumModels)
            throw new ArgumentException($"merge method {method.Name} needs at least {method.MinimumModels} model{(method.MinimumModels > 1 ? "s" : "")} besides the base, the configuration has {models.Count}");
        if (method.MaximumModels is int most && models.Count > most)
            throw new ArgumentException($"merge method {method.Name} takes {most} model{(most > 1 ? "s" : "")} besides the base, the configuration has {models.Count}");
        foreach (var m in models.Concat(basePath != null ? [new MergeModel(basePath, new Dictionary<string, MergeSetting>())] : []))
            if (Full(m.Path) == Full(o.Output)) throw new ArgumentException($"the output {o.Output} would overwrite the input {m.Path}");

        var opened = new List<Checkpoint>();
        string? unionFolder = null;
        try
        {
            Checkpoint Open(string path)
            {
                var c = Checkpoint.Open(path);
                opened.Add(c);
                return c;
            }
            var baseInput = basePath != null ? new Input(basePath, Open(basePath), true) : null;
            var inputs = models.Select(m => new Input(m.Path, Open(m.Path), false)).ToList();
            var reference = baseInput ?? inputs[0];
            var config = reference.Checkpoint.Config;
            var expected = LlamaWeights.Expected(config).ToList();
            var all = (baseInput != null ? [baseInput] : new List<Input>()).Concat(inputs).ToList();
            // tokenizer_source (base, a model, union) lets the vocabularies differ: embedding and head rows are matched by token.
            bool reconcile = o.TokenizerUnion || o.TokenizerSource != null;
            foreach (var input in all) RequireSameShape(reference, input, expected, reconcile);

            string? tokenizerPath = o.TokenizerSource ?? reference.Path;
            var tokenizerSource = all.FirstOrDefault(i => Full(i.Path) == Full(tokenizerPath))?.Checkpoint ?? Open(tokenizerPath);
            VocabularyReconciler? vocabulary = null;
            if (!reconcile) RequireSameVocabulary(all, notes);
            else if (SameVocabulary(all.Select(i => (i.Path, i.Checkpoint)).Append((tokenizerPath, tokenizerSource)).ToList()))
            {
                if (o.TokenizerUnion) notes.Add("tokenizer_source: union: the models share one vocabulary; there is nothing to unite");
            }
            else
            {
                var listed = all.Select(i => (i.Path, i.Checkpoint)).ToList();
                if (o.TokenizerUnion)
                {
                    unionFolder = Directory.CreateTempSubdirectory("hone-merge-union-").FullName;
                    vocabulary = VocabularyReconciler.Union(reference.Path, reference.Checkpoint, listed, unionFolder);
                }
                else vocabulary = VocabularyReconciler.ToSource(tokenizerSource, tokenizerPath, listed);
                config = config with
                {
                    VocabSize = vocabulary.Rows,
                    BosTokenId = o.TokenizerUnion ? config.BosTokenId : tokenizerSource.Config.BosTokenId,
                    EosTokenId = o.TokenizerUnion ? config.EosTokenId : tokenizerSource.Config.EosTokenId,
                };
                expected = LlamaWeights.Expected(config).ToList();
                notes.Add($"vocabulary: {vocabulary.Description}; every model's embedding and head rows are matched to it by token, and a row a model " +
                          "lacks is filled as mergekit does (from the only model that has the token, else the base model's, else the mean of those that have it; zero if none)");
                for (int i = 0; i < all.Count; i++)
                {
                    int missing = vocabulary.RowOf[i].Count(r => r < 0);
                    if (missing > 0) notes.Add($"{all[i].Path} lacks {missing} of the {vocabulary.Rows} tokens");
                }
            }

            // Every parameter of every tensor, resolved before anything is written: a missing or unmatched one fails now.
            var names = expected.Select(e => TensorNames.Gguf(e.Role, e.Layer, e.Bias, e.Expert)).ToList();
            var plans = new Dictionary<string, TensorPlan>();
            foreach (var e in expected)
            {
                string name = TensorNames.Gguf(e.Role, e.Layer, e.Bias, e.Expert);
                string hfName = TensorNames.HuggingFace(e.Role, e.Layer, e.Bias, e.Expert, config.Architecture);
                double t = MergeSetting.Position(e.Layer, config.Layers, afterLayers: e.Role != TensorRole.TokenEmbedding);
                var modelParameters = models.Select(m => Resolve(method.ModelParameters, m.Parameters, o.Parameters, hfName, t, m.Path)).ToList();
                var parameters = Resolve(method.Parameters, null, o.Parameters, hfName, t, null);
                plans[name] = new TensorPlan(e.Role, e.Layer, e.Bias, e.Rows, e.Cols, hfName, modelParameters, parameters);
            }

            var type = o.Type ?? DefaultType(reference.Checkpoint);
            long largest = expected.Max(e => checked((long)e.Rows * e.Cols));
            if (largest > Array.MaxLength) throw new ArgumentException($"a tensor of {largest:N0} elements is larger than one merge buffer may hold ({Array.MaxLength:N0})");
            var baseBuffer = baseInput != null ? new float[largest] : null;
            var modelBuffers = inputs.Select(_ => new float[largest]).ToList();
            var output = new float[largest];
            float[]? scratch = null;
            // Re-indexed tensors: each input's own rows [its vocabulary, D], read before its rows are matched to the output's.
            var raw = vocabulary != null ? all.Select(i => new float[checked((long)i.Checkpoint.Config.VocabSize * config.HiddenSize)]).ToList() : null;
            var reindexed = (baseInput != null ? [baseBuffer!] : new List<float[]>()).Concat(modelBuffers).ToList();
            int done = 0, total = expected.Count;
            log($"{method.Name}: {inputs.Count} model{(inputs.Count > 1 ? "s" : "")}{(baseInput != null ? $" on the base {baseInput.Path}" : "")}, {total} tensors, written as {type.Name()}");
            progress?.Invoke(0, total);

            float[] Compute(string name)
            {
                cancel.ThrowIfCancellationRequested();
                var p = plans[name];
                if (vocabulary != null && p.Role is TensorRole.TokenEmbedding or TensorRole.Output)
                {
                    for (int i = 0; i < all.Count; i++) Read(all[i], config, p with { Rows = all[i].Checkpoint.Config.VocabSize }, name, raw![i]);
                    vocabulary.Reindex(raw!, reindexed, p.Cols, baseInput != null ? 0 : -1);
                }
                else
                {
                    if (baseInput != null) Read(baseInput, config, p, name, baseBuffer!);
                    for (int i = 0; i < inputs.Count; i++) Read(inputs[i], config, p, name, modelBuffers[i]);
                }
                var tensor = new TensorMerge
                {
                    Name = p.HuggingFaceName, Rows = p.Rows, Cols = p.Cols, IsEmbedding = p.Role is TensorRole.TokenEmbedding or TensorRole.Output,
                    Base = baseBuffer, Models = modelBuffers, ModelParameters = p.ModelParameters, Parameters = p.Parameters,
                    Seed = TensorSeed(o.Seed, name), Output = output, Scratch = () => scratch ??= new float[largest],
                };
                method.Merge(tensor);
                int n = tensor.Count;
                for (int k = 0; k < n; k++)
                    if (!float.IsFinite(output[k]))
                        throw new ArgumentException($"{method.Name} gives a non-finite value for tensor {p.HuggingFaceName} (element {k}); nothing was written");
                progress?.Invoke(++done, total);
                return output;
            }

            var (format, tensors, bytes) = ModelConverter.WriteComputed(config, Compute, tokenizerSource, o.Output, type, notes, log, cancel,
                staged => Verify(staged, config, expected), vocabulary?.UnionDirectory);
            return new ModelMergeReport(o.Output, format, method.Name, inputs.Count + (baseInput != null ? 1 : 0), tensors, bytes, notes);
        }
        finally
        {
            foreach (var c in opened) c.Dispose();
            if (unionFolder != null) try { Directory.Delete(unionFolder, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>Whether the models' vocabularies are one: the same embedding rows, and the same token under every id in
    /// those that have a tokenizer.</summary>
    static bool SameVocabulary(List<(string Path, Checkpoint Checkpoint)> models)
    {
        if (models.Select(m => m.Checkpoint.Config.VocabSize).Distinct().Count() > 1) return false;
        Tokenization.Tokenizer? first = null;
        foreach (var (_, c) in models)
        {
            Tokenization.Tokenizer tokenizer;
            try { tokenizer = c.LoadTokenizer(); }
            catch (ModelFormatException) { continue; }
            if (first == null) { first = tokenizer; continue; }
            if (tokenizer.VocabSize != first.VocabSize) return false;
            for (int id = 0; id < first.VocabSize; id++)
                if (tokenizer.TokenText(id) != first.TokenText(id)) return false;
        }
        return true;
    }

    sealed record TensorPlan(TensorRole Role, int Layer, bool Bias, int Rows, int Cols, string HuggingFaceName,
        IReadOnlyList<IReadOnlyDictionary<string, double>> ModelParameters, IReadOnlyDictionary<string, double> Parameters);

    /// <summary>A parameter's value for one tensor: the model's own setting, else the configuration's top-level one,
    /// else the method's default.</summary>
    static Dictionary<string, double> Resolve(IReadOnlyList<MergeParameter> specs, IReadOnlyDictionary<string, MergeSetting>? own,
        IReadOnlyDictionary<string, MergeSetting>? global, string tensor, double t, string? model)
    {
        var values = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var spec in specs)
        {
            double? v = null;
            if (own != null && own.TryGetValue(spec.Name, out var mine)) v = mine.Evaluate(tensor, t);
            if (v == null && global != null && global.TryGetValue(spec.Name, out var shared)) v = shared.Evaluate(tensor, t);
            v ??= spec.Default;
            if (v is not double value)
                throw new ArgumentException($"{(model != null ? $"model {model}: " : "")}parameter '{spec.Name}' has no value for tensor {tensor} " +
                                            $"(give it{(model != null ? " under the model's parameters or" : "")} under the top-level parameters, or add a condition without filter)");
            if (!double.IsFinite(value)) throw new ArgumentException($"parameter '{spec.Name}' is {value} for tensor {tensor}");
            values[spec.Name] = value;
        }
        return values;
    }

    static TensorType DefaultType(Checkpoint c)
    {
        var first = c.Find(TensorRole.TokenEmbedding)?.Type;
        return first is TensorType.F32 or TensorType.F16 or TensorType.BF16 ? first.Value : TensorType.F32;
    }

    /// <summary>FNV-1a over the seed and the tensor's name, mixed: the same random choices for a tensor in every run.</summary>
    static ulong TensorSeed(ulong seed, string name)
    {
        ulong h = 14695981039346656037UL ^ seed;
        foreach (char c in name) h = (h ^ c) * 1099511628211UL;
        return Xoshiro256.SplitMix64(h);
    }

    /// <summary>Same architecture and the same tensors of the same shapes as the reference, or an error naming the model,
    /// the tensor, what was expected and what was found.</summary>
    /// <param name="vocabularyMayDiffer">the embedding's and head's rows may differ (their vocabularies are reconciled)</param>
    static void RequireSameShape(Input reference, Input input, List<(TensorRole Role, int Layer, bool Bias, int Rows, int Cols, int Expert)> expected,
        bool vocabularyMayDiffer)
    {
        var a = reference.Checkpoint.Config;
        var b = input.Checkpoint.Config;
        if (a.Architecture != b.Architecture)
            throw new ArgumentException($"{input.Path}: architecture {b.Architecture}, but {reference.Path} is {a.Architecture}; only models of one architecture merge");
        foreach (var e in expected)
        {
            string name = TensorNames.Gguf(e.Role, e.Layer, e.Bias, e.Expert);
            string shown = TensorNames.HuggingFace(e.Role, e.Layer, e.Bias, e.Expert, a.Architecture);
            string want = e.Rows == 1 ? $"[{e.Cols}]" : $"[{e.Rows}, {e.Cols}]";
            if (!input.Checkpoint.TryGet(name, out var t))
                throw new ArgumentException($"{input.Path}: tensor {shown} is missing (expected shape {want}, as in {reference.Path})");
            bool anyRows = vocabularyMayDiffer && e.Role is TensorRole.TokenEmbedding or TensorRole.Output;
            bool sameShape = e.Rows == 1 ? t.ElementCount == e.Cols && (t.Shape.Length == 1 || (t.Shape.Length == 2 && t.Shape[0] == 1))
                                         : t.Shape.Length == 2 && (t.Shape[0] == e.Rows || anyRows) && t.Shape[1] == e.Cols;
            if (!sameShape)
                throw new ArgumentException($"{input.Path}: tensor {shown} has shape {t.ShapeText}, expected {want} (as in {reference.Path})" +
                    (e.Role is TensorRole.TokenEmbedding or TensorRole.Output && t.Shape.Length == 2 && t.Shape[1] == e.Cols
                        ? "; models of different vocabularies merge only with tokenizer_source (base, a model's path, or union), which matches their rows by token" : ""));
            if (t.Type == null)
                throw new ArgumentException($"{input.Path}: tensor {shown} is stored as {t.TypeName}, which cannot be read for merging");
        }
        int extra = LlamaWeights.Expected(b).Count() - expected.Count;
        if (extra != 0)
            throw new ArgumentException($"{input.Path}: {LlamaWeights.Expected(b).Count()} weight tensors, but {reference.Path} has {expected.Count}; the models differ in shape");
        if (a.RopeLayout != b.RopeLayout && a.RotaryDims != a.HeadDim)
            throw new ArgumentException($"{input.Path}: partial rotary embeddings in another layout than {reference.Path}'s cannot be matched row by row");
    }

    /// <summary>The same tokens under the same ids in every model that has a tokenizer: merging embeddings of different
    /// vocabularies would mix unrelated tokens.</summary>
    static void RequireSameVocabulary(List<Input> inputs, List<string> notes)
    {
        Tokenization.Tokenizer? first = null;
        string? firstPath = null;
        foreach (var input in inputs)
        {
            Tokenization.Tokenizer tokenizer;
            try { tokenizer = input.Checkpoint.LoadTokenizer(); }
            catch (ModelFormatException) { notes.Add($"{input.Path} has no tokenizer; its vocabulary was not compared"); continue; }
            if (first == null) { first = tokenizer; firstPath = input.Path; continue; }
            if (tokenizer.VocabSize != first.VocabSize)
                throw new ArgumentException($"{input.Path}: a vocabulary of {tokenizer.VocabSize} tokens, {firstPath} has {first.VocabSize}; models of different vocabularies merge only with tokenizer_source (base, a model's path, or union)");
            for (int id = 0; id < first.VocabSize; id++)
                if (tokenizer.TokenText(id) != first.TokenText(id))
                    throw new ArgumentException($"{input.Path}: token {id} is '{tokenizer.TokenText(id)}', in {firstPath} '{first.TokenText(id)}'; " +
                                                "models of different vocabularies merge only with tokenizer_source (base, a model's path, or union), which matches their rows by token");
        }
    }

    /// <summary>One input's tensor as fp32 in the reference's layout (q/k rows of another rope layout reordered), its
    /// mapped pages released afterwards.</summary>
    static void Read(Input input, ModelConfig reference, TensorPlan p, string name, float[] into)
    {
        input.Checkpoint.TryGet(name, out var t);
        var type = t!.Type!.Value;
        var layout = input.Checkpoint.Config.RopeLayout;
        Func<int, int> order = r => r;
        if (layout != reference.RopeLayout && p.Role is TensorRole.AttentionQuery or TensorRole.AttentionKey)
            order = reference.RopeLayout == RopeLayout.AdjacentPairs
                ? r => RopePermutation.HalvesRowForAdjacentRow(r, reference.HeadDim)
                : r => RopePermutation.AdjacentRowForHalvesRow(r, reference.HeadDim);
        fixed (float* dst = into)
        {
            if (p.Rows == 1)
            {
                WeightRows.DequantizeSegment(type, t.Pointer, 0, p.Cols, dst);
                if (p.Bias && layout != reference.RopeLayout && p.Role is TensorRole.AttentionQuery or TensorRole.AttentionKey)
                {
                    var copy = new float[p.Cols];
                    for (int i = 0; i < p.Cols; i++) copy[i] = dst[order(i)];
                    copy.CopyTo(into, 0);
                }
            }
            else
            {
                long rowBytes = type.Traits().BytesFor(p.Cols);
                for (int r = 0; r < p.Rows; r++)
                    WeightRows.DequantizeSegment(type, t.Pointer + order(r) * rowBytes, 0, p.Cols, dst + (long)r * p.Cols);
            }
        }
        int n = p.Rows * p.Cols;
        for (int k = 0; k < n; k++)
            if (!float.IsFinite(into[k])) throw new ArgumentException($"{input.Path}: tensor {p.HuggingFaceName} holds a non-finite value (element {k})");
        MappedFile.ReleasePages(t.Pointer, t.ByteLength);
    }

    /// <summary>The staged output opens as a model with every tensor of its shape, all values finite (read a tensor at a
    /// time, so the check costs no more memory than the merge).</summary>
    static void Verify(string staged, ModelConfig config, List<(TensorRole Role, int Layer, bool Bias, int Rows, int Cols, int Expert)> expected)
    {
        using var c = Checkpoint.Open(staged);
        if (c.Config.Architecture != config.Architecture || c.Config.Layers != config.Layers || c.Config.VocabSize != config.VocabSize)
            throw new InvalidOperationException($"verification failed: the written model reads back as {c.Config.Architecture} with {c.Config.Layers} layers; nothing was written");
        float[] row = new float[expected.Max(e => e.Cols)];
        fixed (float* r = row)
            foreach (var e in expected)
            {
                string name = TensorNames.Gguf(e.Role, e.Layer, e.Bias, e.Expert);
                if (!c.TryGet(name, out var t) || t.ElementCount != (long)e.Rows * e.Cols || t.Type == null)
                    throw new InvalidOperationException($"verification failed: tensor {name} is missing or misshapen in the written model; nothing was written");
                long rowBytes = t.Type.Value.Traits().BytesFor(e.Cols);
                for (int i = 0; i < e.Rows; i++)
                {
                    WeightRows.DequantizeSegment(t.Type.Value, t.Pointer + i * rowBytes, 0, e.Cols, r);
                    for (int k = 0; k < e.Cols; k++)
                        if (!float.IsFinite(r[k])) throw new InvalidOperationException($"verification failed: tensor {name} reads back a non-finite value; nothing was written");
                }
                MappedFile.ReleasePages(t.Pointer, t.ByteLength);
            }
    }
}
