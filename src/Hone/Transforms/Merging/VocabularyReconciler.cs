using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;

namespace Hone.Transforms.Merging;

/// <summary>
/// The output vocabulary of a merge whose models' vocabularies differ (mergekit's tokenizer_source) and, for every
/// input, where each output token's row is in its embedding and head. A token is matched by its piece (the string the
/// vocabulary stores), never by id. A row a model lacks is filled as mergekit fills it, before the merge method runs:
/// from the only model that has the token; else from the base model, when it has it; else the mean of the rows of the
/// models that have it; zero when none has it (rows past a tokenizer's end, padding, match by position only). So in a
/// linear merge a token only one model knows keeps that model's row, and in a task-vector merge a token the base has
/// gives a zero delta where a model lacks it.
/// </summary>
internal sealed class VocabularyReconciler
{
    /// <summary>Rows of the output's embedding and head.</summary>
    public int Rows { get; }
    /// <summary>Per input (in the merger's order): for each output row, the input's row, or −1.</summary>
    public IReadOnlyList<int[]> RowOf { get; }
    /// <summary>A Hugging Face tokenizer folder written for a union (tokenizer.json, tokenizer_config.json and the
    /// rest of the reference's files), or null: the tokenizer source's own files are used.</summary>
    public string? UnionDirectory { get; }
    public string Description { get; }

    VocabularyReconciler(int rows, IReadOnlyList<int[]> rowOf, string? unionDirectory, string description)
    {
        Rows = rows; RowOf = rowOf; UnionDirectory = unionDirectory; Description = description;
    }

    /// <summary>The output vocabulary is <paramref name="source"/>'s tokenizer, with as many rows as its embedding.</summary>
    public static VocabularyReconciler ToSource(Checkpoint source, string sourcePath, IReadOnlyList<(string Path, Checkpoint Checkpoint)> inputs)
    {
        var target = LoadTokenizer(source, sourcePath);
        int rows = source.Config.VocabSize;
        if (rows < target.VocabSize)
            throw new ArgumentException($"tokenizer_source {sourcePath}: its tokenizer has {target.VocabSize} tokens but its embedding only {rows} rows");
        var pieces = Enumerable.Range(0, target.VocabSize).Select(target.TokenText).ToArray();
        var rowOf = inputs.Select(i => Map(pieces, rows, LoadTokenizer(i.Checkpoint, i.Path), i.Checkpoint.Config.VocabSize)).ToList();
        return new VocabularyReconciler(rows, rowOf, null, $"the vocabulary of {sourcePath} ({target.VocabSize} tokens, {rows} rows)");
    }

    /// <summary>Output row r holds piece r of <paramref name="pieces"/> (rows past them: padding, matched by position
    /// where the input has a padding row there too).</summary>
    static int[] Map(string[] pieces, int rows, Tokenization.Tokenizer tokenizer, int inputRows)
    {
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = tokenizer.VocabSize - 1; id >= 0; id--) ids[tokenizer.TokenText(id)] = id; // the first id of a piece wins
        var map = new int[rows];
        for (int r = 0; r < rows; r++)
            map[r] = r < pieces.Length
                ? ids.TryGetValue(pieces[r], out int id) && id < inputRows ? id : -1
                : r >= tokenizer.VocabSize && r < inputRows ? r : -1;
        return map;
    }

    static Tokenization.Tokenizer LoadTokenizer(Checkpoint c, string path)
    {
        try { return c.LoadTokenizer(); }
        catch (ModelFormatException e) { throw new ArgumentException($"{path} has no tokenizer, so its tokens cannot be matched to the merged vocabulary ({e.Message})"); }
    }

    /// <summary>
    /// A union of compatible vocabularies: every model's tokenizer.json must have the same model type, normalizer,
    /// pre-tokenizer, decoder and merges, and their model vocabularies must agree on every id they share (one may run
    /// longer: a vocabulary tail). The output is the reference's tokenizer with the longest model vocabulary, then every
    /// added (special) token some model has and the reference lacks, appended after the reference's own. Anything else is
    /// refused with the reason.
    /// </summary>
    public static VocabularyReconciler Union(string referencePath, Checkpoint reference, IReadOnlyList<(string Path, Checkpoint Checkpoint)> inputs, string scratch)
    {
        var files = inputs.Select(i => (i.Path, Json: TokenizerJson(i.Checkpoint, i.Path))).ToList();
        var baseJson = TokenizerJson(reference, referencePath);
        foreach (var key in new[] { "normalizer", "pre_tokenizer", "decoder" })
            foreach (var (path, json) in files)
                if (!JsonNode.DeepEquals(baseJson[key], json[key]))
                    throw new ArgumentException($"tokenizer_source: union: {path}'s {key} differs from {referencePath}'s; only tokenizers that differ in added tokens or a vocabulary tail can be united (name base or one model)");
        var baseModel = baseJson["model"] as JsonObject ?? throw new ArgumentException($"{referencePath}: tokenizer.json has no model");
        foreach (var (path, json) in files)
        {
            var model = json["model"] as JsonObject;
            if (model == null || (string?)model["type"] != (string?)baseModel["type"])
                throw new ArgumentException($"tokenizer_source: union: {path}'s tokenizer model is {(string?)model?["type"] ?? "missing"}, {referencePath}'s {(string?)baseModel["type"]}; these vocabularies cannot be united");
            if (!JsonNode.DeepEquals(baseModel["merges"], model["merges"]))
                throw new ArgumentException($"tokenizer_source: union: {path}'s merges differ from {referencePath}'s, so the same text would be cut into different tokens; only tokenizers that differ in added tokens or a vocabulary tail can be united");
        }

        // The model vocabularies, id → piece (ids need not start at 0: added tokens may hold the first ones); each must
        // agree with the longest on every id they share, and the longest runs on where the others stop.
        SortedDictionary<int, string> Pieces(JsonObject model, string path)
        {
            if (model["vocab"] is not JsonObject vocab)
                throw new ArgumentException($"tokenizer_source: union: {path}'s tokenizer.json has no vocab mapping (a {(string?)model["type"]} model); only BPE vocabularies can be united");
            var byId = new SortedDictionary<int, string>();
            foreach (var (piece, id) in vocab)
                if (id is JsonValue v && v.TryGetValue(out int i) && i >= 0 && byId.TryAdd(i, piece)) { }
                else throw new ArgumentException($"{path}: tokenizer.json vocab entry '{piece}' has no valid id of its own");
            return byId;
        }
        var longest = Pieces(baseModel, referencePath);
        string longestFrom = referencePath;
        int End(SortedDictionary<int, string> v) => v.Count == 0 ? 0 : v.Keys.Last() + 1;
        foreach (var (path, json) in files)
        {
            var pieces = Pieces((JsonObject)json["model"]!, path);
            var (shorter, longer) = End(pieces) > End(longest) ? (longest, pieces) : (pieces, longest);
            foreach (var (id, piece) in shorter)
                if (!longer.TryGetValue(id, out var other) || other != piece)
                    throw new ArgumentException($"tokenizer_source: union: token {id} is '{pieces.GetValueOrDefault(id) ?? "absent"}' in {path} but '{longest.GetValueOrDefault(id) ?? "absent"}' in {longestFrom}; the vocabularies disagree (not just in added tokens or a tail), so they cannot be united");
            if (End(pieces) > End(longest)) { longest = pieces; longestFrom = path; }
        }

        // Added tokens: the reference's keep their ids (an id the united model vocabulary uses must hold the same token);
        // every other model's missing ones follow, in model order.
        var added = (baseJson["added_tokens"] as JsonArray ?? []).Select(n => (JsonObject)n!.DeepClone()).ToList();
        var pieceToId = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (id, piece) in longest) pieceToId.TryAdd(piece, id);
        int next = End(longest);
        foreach (var token in added)
        {
            int id = (int)token["id"]!;
            string content = (string)token["content"]!;
            if (longest.TryGetValue(id, out var held) && held != content)
                throw new ArgumentException($"tokenizer_source: union: {referencePath}'s added token '{content}' has id {id}, which {longestFrom}'s longer vocabulary gives to '{held}'; these cannot be united");
            pieceToId[content] = id;
            next = Math.Max(next, id + 1);
        }
        var newTokens = new List<JsonObject>();
        foreach (var (path, json) in files)
            foreach (var node in json["added_tokens"] as JsonArray ?? [])
            {
                var token = (JsonObject)node!;
                string content = (string)token["content"]!;
                if (pieceToId.ContainsKey(content)) continue;
                var copy = (JsonObject)token.DeepClone();
                copy["id"] = next;
                pieceToId[content] = next++;
                newTokens.Add(copy);
            }

        // tokenizer.json and tokenizer_config.json of the union, beside the reference's other tokenizer files.
        Directory.CreateDirectory(scratch);
        var united = (JsonObject)baseJson.DeepClone();
        var vocabulary = new JsonObject();
        foreach (var (id, piece) in longest) vocabulary[piece] = id;
        ((JsonObject)united["model"]!)["vocab"] = vocabulary;
        var addedArray = new JsonArray(added.Concat(newTokens).Select(t => (JsonNode)t.DeepClone()).ToArray());
        united["added_tokens"] = addedArray;
        var indented = new JsonSerializerOptions { WriteIndented = true };
        File.WriteAllText(Path.Combine(scratch, "tokenizer.json"), united.ToJsonString(indented));
        string referenceDirectory = reference.Directory!;
        foreach (var name in new[] { "special_tokens_map.json", "generation_config.json" })
            if (File.Exists(Path.Combine(referenceDirectory, name))) File.Copy(Path.Combine(referenceDirectory, name), Path.Combine(scratch, name), overwrite: true);
        var configPath = Path.Combine(referenceDirectory, "tokenizer_config.json");
        var tokenizerConfig = File.Exists(configPath) ? StrictJson.ParseFile(configPath) as JsonObject ?? new JsonObject() : new JsonObject();
        if (newTokens.Count > 0 || tokenizerConfig["added_tokens_decoder"] != null)
        {
            var decoder = tokenizerConfig["added_tokens_decoder"] as JsonObject ?? new JsonObject();
            foreach (var t in newTokens)
            {
                var entry = (JsonObject)t.DeepClone();
                entry.Remove("id");
                decoder[((int)t["id"]!).ToString(System.Globalization.CultureInfo.InvariantCulture)] = entry;
            }
            tokenizerConfig["added_tokens_decoder"] = decoder;
        }
        File.WriteAllText(Path.Combine(scratch, "tokenizer_config.json"), tokenizerConfig.ToJsonString(indented));

        var output = Tokenization.Tokenizer.FromHuggingFaceDirectory(scratch);
        var outputPieces = Enumerable.Range(0, output.VocabSize).Select(output.TokenText).ToArray();
        var rowOf = inputs.Select(i => Map(outputPieces, output.VocabSize, LoadTokenizer(i.Checkpoint, i.Path), i.Checkpoint.Config.VocabSize)).ToList();
        return new VocabularyReconciler(output.VocabSize, rowOf, scratch,
            $"the union of the models' vocabularies ({output.VocabSize} tokens: {referencePath}'s{(longestFrom != referencePath ? $", its vocabulary extended to {longestFrom}'s {End(longest)}" : "")}, and {newTokens.Count} added token{(newTokens.Count == 1 ? "" : "s")} from the others)");
    }

    static JsonObject TokenizerJson(Checkpoint c, string path)
    {
        if (c.Directory == null || !File.Exists(Path.Combine(c.Directory, "tokenizer.json")))
            throw new ArgumentException($"tokenizer_source: union needs every model's tokenizer.json (a Hugging Face directory); {path} has none{(c.Gguf != null ? " (a GGUF file)" : "")}: name one model's tokenizer instead");
        return StrictJson.ParseFile(Path.Combine(c.Directory, "tokenizer.json")) as JsonObject
               ?? throw new ArgumentException($"{path}: tokenizer.json is not a JSON object");
    }

    /// <summary>
    /// Every input's rows re-indexed to the output vocabulary (<paramref name="into"/>[i] gets [Rows, cols]) from its own
    /// rows (<paramref name="raw"/>[i], [its rows, cols]); <paramref name="baseIndex"/> is the base model's input, or −1.
    /// </summary>
    public void Reindex(IReadOnlyList<float[]> raw, IReadOnlyList<float[]> into, int cols, int baseIndex)
    {
        int n = raw.Count;
        var present = new List<int>(n);
        var fill = new double[cols];
        for (int r = 0; r < Rows; r++)
        {
            present.Clear();
            for (int i = 0; i < n; i++) if (RowOf[i][r] >= 0) present.Add(i);
            Array.Clear(fill);
            int donor = present.Count == 1 ? present[0] : baseIndex >= 0 && RowOf[baseIndex][r] >= 0 ? baseIndex : -1;
            if (donor >= 0)
                for (int k = 0; k < cols; k++) fill[k] = raw[donor][(long)RowOf[donor][r] * cols + k];
            else if (present.Count > 1)
            {
                foreach (int i in present)
                    for (int k = 0; k < cols; k++) fill[k] += raw[i][(long)RowOf[i][r] * cols + k];
                for (int k = 0; k < cols; k++) fill[k] /= present.Count;
            }
            for (int i = 0; i < n; i++)
            {
                long at = (long)r * cols;
                if (RowOf[i][r] >= 0) Array.Copy(raw[i], (long)RowOf[i][r] * cols, into[i], at, cols);
                else for (int k = 0; k < cols; k++) into[i][at + k] = (float)fill[k];
            }
        }
    }
}
