using Hone.Formats;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Transforms.Merging;

/// <summary>One model of a merge and its own parameters (weight, density, …).</summary>
public sealed record MergeModel(string Path, IReadOnlyDictionary<string, MergeSetting> Parameters);

/// <param name="BaseModel">the base of the task-vector methods, slerp and model_stock (null for linear)</param>
/// <param name="Parameters">the merge's parameters; numeric model parameters given here apply to every model that does
/// not set its own</param>
/// <param name="Type">weight type of the output (null: the first input's when f32, f16 or bf16, else f32)</param>
/// <param name="TokenizerSource">the model whose tokenizer the output takes (null: the base model, else the first); when
/// the models' vocabularies differ, every model's embedding and head rows are re-indexed to it by token</param>
/// <param name="TokenizerUnion">tokenizer_source: union: the output's vocabulary unites the models' compatible
/// vocabularies (<see cref="VocabularyReconciler.Union"/>)</param>
/// <param name="Seed">seed of the random methods (DARE)</param>
public sealed record ModelMergeOptions(string Method, IReadOnlyList<MergeModel> Models, string Output, string? BaseModel = null,
    IReadOnlyDictionary<string, MergeSetting>? Parameters = null, TensorType? Type = null, string? TokenizerSource = null, ulong Seed = 0,
    int Threads = 0, bool TokenizerUnion = false)
{
    /// <summary>mergekit's configuration keys this reader knows (slices is recognized to be refused clearly).</summary>
    public static readonly string[] Keys = ["models", "merge_method", "base_model", "parameters", "dtype", "out_dtype", "tokenizer_source", "slices"];
    public static readonly string[] ModelKeys = ["model", "parameters"];

    /// <summary>
    /// Options from a mergekit YAML configuration: merge_method, models (model, parameters), base_model, parameters,
    /// dtype (float32, float16, bfloat16; out_dtype, when given, is the output's), tokenizer_source (base, a model, or
    /// union). Relative paths are relative to the configuration's folder. Unknown keys, unknown parameters of the method,
    /// slices and tokenizer mappings are refused naming the key and the file.
    /// </summary>
    public static ModelMergeOptions FromConfig(ConfigNode root, string output)
    {
        var top = root.Mapping("the configuration", Keys);
        string folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(root.Path)) ?? ".";
        string Resolve(string p) => System.IO.Path.IsPathRooted(p) || File.Exists(p) || Directory.Exists(p) ? p : System.IO.Path.Combine(folder, p);
        if (top.TryGetValue("slices", out var slices))
            throw slices.Error("slices (layer ranges of several models) are not supported by `hone merge`; list whole models under models:");
        if (!top.TryGetValue("merge_method", out var methodNode)) throw root.Error($"merge_method is required: one of {MergeMethods.Names}");
        string methodName = methodNode.Text("merge_method");
        var method = MergeMethods.Find(methodName) ?? throw methodNode.Error($"merge_method '{methodName}' is not one of {MergeMethods.Names}{Spelling.Suggestion(methodName, MergeMethods.All.Select(m => m.Name).ToList())}");
        if (!top.TryGetValue("models", out var modelsNode)) throw root.Error("models is required: a list of model entries (model: PATH, parameters: …)");
        string? baseModel = top.TryGetValue("base_model", out var baseNode) && !baseNode.IsNull ? Resolve(baseNode.Text("base_model")) : null;
        if (method.BaseModel == BaseModelUse.Required && baseModel == null) throw root.Error($"merge_method {method.Name} needs a base_model");

        var modelNames = method.ModelParameters.Select(p => p.Name).ToList();
        var globalNames = method.Parameters.Select(p => p.Name).ToList();
        var models = new List<MergeModel>();
        foreach (var item in modelsNode.List("models"))
        {
            var entry = item.Mapping("a model", ModelKeys);
            if (!entry.TryGetValue("model", out var pathNode)) throw item.Error("a model entry needs model: PATH");
            string path = pathNode.Text("model");
            if (path.Contains('+')) throw pathNode.Error($"'{path}': model+adapter is not supported by `hone merge`; fold the adapter in first (hone merge-adapter)");
            var parameters = entry.TryGetValue("parameters", out var p) ? ReadParameters(p, $"parameters of {path}", modelNames, method) : new Dictionary<string, MergeSetting>();
            models.Add(new MergeModel(Resolve(path), parameters));
        }
        var global = top.TryGetValue("parameters", out var g) ? ReadParameters(g, "parameters", [.. globalNames, .. modelNames], method) : new Dictionary<string, MergeSetting>();

        TensorType? type = null;
        foreach (var key in new[] { "dtype", "out_dtype" })
            if (top.TryGetValue(key, out var dtype) && !dtype.IsNull)
                type = dtype.Text(key) switch
                {
                    "float32" or "fp32" => TensorType.F32,
                    "float16" or "fp16" => TensorType.F16,
                    "bfloat16" or "bf16" => TensorType.BF16,
                    var other => throw dtype.Error($"{key} '{other}' is not one of float32, float16, bfloat16"),
                };
        string? tokenizer = null;
        bool union = false;
        if (top.TryGetValue("tokenizer_source", out var tokenizerNode) && !tokenizerNode.IsNull)
        {
            if (tokenizerNode.Entries != null || tokenizerNode.Items != null)
                throw tokenizerNode.Error("tokenizer_source must be base, a model's path or union (mergekit's tokenizer mappings are not supported)");
            tokenizer = tokenizerNode.Text("tokenizer_source") switch
            {
                "base" => baseModel ?? throw tokenizerNode.Error("tokenizer_source: base, but the configuration has no base_model"),
                "union" => null,
                var m => Resolve(m),
            };
            union = tokenizer == null;
        }
        return new ModelMergeOptions(method.Name, models, output, baseModel, global, type, tokenizer, TokenizerUnion: union);
    }

    static Dictionary<string, MergeSetting> ReadParameters(ConfigNode node, string what, IReadOnlyCollection<string> known, MergeMethod method)
    {
        if (node.IsNull) return new();
        if (node.Entries == null) throw node.Error($"{what} must be a mapping (name: value lines)");
        var result = new Dictionary<string, MergeSetting>(StringComparer.Ordinal);
        foreach (var (key, value) in node.Entries)
        {
            if (!known.Contains(key))
                throw value.Error($"{what}: unknown parameter '{key}' for merge_method {method.Name}{Spelling.Suggestion(key, known)}; " +
                                  (known.Count > 0 ? $"known: {string.Join(", ", known)}" : "it takes none"));
            result[key] = MergeSetting.Read(value, key);
        }
        return result;
    }
}
