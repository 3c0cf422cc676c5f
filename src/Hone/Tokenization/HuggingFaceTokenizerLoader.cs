using System.Text.Json;
using Hone.Formats;

namespace Hone.Tokenization;

/// <summary>Reads tokenizer.json (Hugging Face <c>tokenizers</c> serialization) and tokenizer_config.json. Every
/// component is checked against what we implement; anything else is refused naming the component and its JSON path.</summary>
static class HuggingFaceTokenizerLoader
{
    public static Tokenizer Load(string jsonPath, string? configPath, string? generationConfigPath)
    {
        using var doc = ParseFile(jsonPath);
        var json = new JsonFile(jsonPath);
        var root = json.Object(doc.RootElement, "(root)");

        foreach (var unsupported in new[] { "truncation", "padding" })
            if (root.TryGetProperty(unsupported, out var v) && v.ValueKind != JsonValueKind.Null)
                throw json.Error(unsupported, $"{unsupported} is configured; Hone encodes whole texts and does not {(unsupported == "padding" ? "pad" : "truncate")} (set it to null)");

        var model = json.Object(json.Required(root, "model", ""), "model");
        string modelType = model.TryGetProperty("type", out var typeElement) ? json.String(typeElement, "model.type") : "(none)";
        if (modelType != "BPE")
            throw json.Error("model.type", $"tokenizer model '{modelType}' is not supported (supported: BPE)");
        foreach (var affix in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (model.TryGetProperty(affix, out var a) && a.ValueKind != JsonValueKind.Null && json.String(a, $"model.{affix}").Length > 0)
                throw json.Error($"model.{affix}", $"BPE {affix} '{a.GetString()}' is not supported");
        if (model.TryGetProperty("dropout", out var dropout) && dropout.ValueKind != JsonValueKind.Null && json.Number(dropout, "model.dropout") > 0)
            throw json.Error("model.dropout", "BPE dropout makes encoding random; it is not supported");

        // Vocabulary: the model's, then added tokens with ids of their own.
        var modelIds = new Dictionary<string, int>(StringComparer.Ordinal);
        var vocabElement = json.Object(json.Required(model, "vocab", "model"), "model.vocab");
        foreach (var entry in vocabElement.EnumerateObject())
        {
            int id = json.Int(entry.Value, $"model.vocab[\"{entry.Name}\"]");
            if (id < 0) throw json.Error($"model.vocab[\"{entry.Name}\"]", $"negative id {id}");
            if (!modelIds.TryAdd(entry.Name, id)) throw json.Error($"model.vocab[\"{entry.Name}\"]", "token listed twice");
        }
        var added = ReadAddedTokens(json, root);
        var pieces = BuildPieces(json, modelIds, added);
        var types = new TokenType[pieces.Length];
        Array.Fill(types, TokenType.Normal);

        bool byteFallback = json.OptionalBool(model, "byte_fallback", "model", false);
        bool fuseUnknown = json.OptionalBool(model, "fuse_unk", "model", false);
        bool ignoreMerges = json.OptionalBool(model, "ignore_merges", "model", false);
        int? unknownId = null;
        if (model.TryGetProperty("unk_token", out var unkElement) && unkElement.ValueKind != JsonValueKind.Null)
        {
            string unk = json.String(unkElement, "model.unk_token");
            if (!modelIds.TryGetValue(unk, out int u)) throw json.Error("model.unk_token", $"unknown token '{unk}' is not in the vocabulary");
            unknownId = u;
        }
        if (byteFallback)
            foreach (var (piece, id) in modelIds)
                if (Vocabulary.IsByteTokenText(piece)) types[id] = TokenType.Byte;
        foreach (var t in added) types[t.Id] = t.Special ? TokenType.Control : TokenType.UserDefined;
        if (unknownId is int unkId) types[unkId] = TokenType.Unknown;
        var vocab = new Vocabulary(pieces, types, modelIds);

        var normalizer = root.TryGetProperty("normalizer", out var n) && n.ValueKind != JsonValueKind.Null
            ? ReadNormalizer(json, n, "normalizer") : [];
        bool byteLevel = false;
        var preTokenizer = root.TryGetProperty("pre_tokenizer", out var pt) && pt.ValueKind != JsonValueKind.Null
            ? ReadPreTokenizer(json, pt, "pre_tokenizer", ref byteLevel) : [];
        var decoder = root.TryGetProperty("decoder", out var d) && d.ValueKind != JsonValueKind.Null
            ? ReadDecoder(json, d, "decoder") : [];

        var input = byteLevel ? BpeInput.ByteLevel : BpeInput.Characters;
        if (byteLevel)
            for (int b = 0; b < 256; b++)
                if (!modelIds.ContainsKey(ByteLevelAlphabet.CharOfByte[b].ToString()))
                    throw json.Error("model.vocab", $"byte-level vocabulary lacks the token for byte 0x{b:X2} ('{ByteLevelAlphabet.CharOfByte[b]}')");
        var merges = ReadMerges(json, json.Required(model, "merges", "model"), modelIds);
        var bpe = BpeModel.FromMerges(vocab, input, merges, lastDuplicateWins: true, ignoreMerges, byteFallback, fuseUnknown, unknownId);

        var (prefix, suffix) = root.TryGetProperty("post_processor", out var pp) && pp.ValueKind != JsonValueKind.Null
            ? ReadPostProcessor(json, pp, "post_processor", added, modelIds) : ([], []);

        var parts = new Tokenizer.Parts
        {
            Source = jsonPath, Vocabulary = vocab, Model = bpe, Normalizer = normalizer, PreTokenizer = preTokenizer,
            AddedTokens = added, Search = AddedTokenSearch.LeftmostLongest, Decoder = decoder,
            PrefixIds = prefix, SuffixIds = suffix, UnknownId = unknownId,
        };
        int? IdOf(string content) => added.FirstOrDefault(t => t.Content == content)?.Id ?? (modelIds.TryGetValue(content, out int i) ? i : null);
        if (configPath != null) ApplyConfig(configPath, parts, IdOf);
        else
        {
            // Without a config the post-processor's leading special token is the best evidence of BOS.
            if (prefix.Length > 0) parts.BosId = prefix[0];
            if (suffix.Length > 0) parts.EosId = suffix[^1];
        }
        if (generationConfigPath != null) parts.ExtraEndOfTurnIds = ReadGenerationEosIds(generationConfigPath);
        return new Tokenizer(parts);
    }

    static JsonDocument ParseFile(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new ModelFormatException(path, $"cannot read: {e.Message}", inner: e); }
        try { return JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 256 }); }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, $"not valid JSON at line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1}: {e.Message}", inner: e);
        }
    }

    static AddedToken[] ReadAddedTokens(JsonFile json, JsonElement root)
    {
        if (!root.TryGetProperty("added_tokens", out var list) || list.ValueKind == JsonValueKind.Null) return [];
        var result = new List<AddedToken>();
        int i = 0;
        foreach (var t in json.Array(list, "added_tokens"))
        {
            string path = $"added_tokens[{i++}]";
            json.Object(t, path);
            result.Add(new AddedToken(
                json.Int(json.Required(t, "id", path), path + ".id"),
                json.String(json.Required(t, "content", path), path + ".content"),
                json.OptionalBool(t, "special", path, false),
                json.OptionalBool(t, "single_word", path, false),
                json.OptionalBool(t, "lstrip", path, false),
                json.OptionalBool(t, "rstrip", path, false),
                json.OptionalBool(t, "normalized", path, true)));
        }
        return result.Where(t => t.Content.Length > 0).ToArray();
    }

    static string[] BuildPieces(JsonFile json, Dictionary<string, int> modelIds, AddedToken[] added)
    {
        // Ids must run 0..n-1 without gaps, so none can reach the number of entries; one that does (a corrupt 2^31-1)
        // must not size the table: name the first gap it implies, found among the first n ids.
        long entries = (long)modelIds.Count + added.Length;
        int largest = Math.Max(modelIds.Count == 0 ? -1 : modelIds.Values.Max(), added.Length == 0 ? -1 : added.Max(t => t.Id));
        if (largest >= entries)
        {
            var used = new bool[entries];
            foreach (int id in modelIds.Values.Concat(added.Select(t => t.Id)))
                if (id >= 0 && id < entries) used[id] = true;
            throw json.Error("model.vocab", $"id {Array.IndexOf(used, false)} is not assigned to any token (ids must be 0..n-1 without gaps; the largest id is {largest} for {entries} tokens)");
        }
        int size = Math.Max(modelIds.Count == 0 ? 0 : modelIds.Values.Max() + 1, added.Length == 0 ? 0 : added.Max(t => t.Id) + 1);
        var pieces = new string?[size];
        foreach (var (piece, id) in modelIds)
        {
            if (pieces[id] != null) throw json.Error("model.vocab", $"id {id} is given to both '{pieces[id]}' and '{piece}'");
            pieces[id] = piece;
        }
        foreach (var t in added)
        {
            if (t.Id < 0) throw json.Error("added_tokens", $"'{t.Content}' has negative id {t.Id}");
            if (pieces[t.Id] != null && pieces[t.Id] != t.Content)
                throw json.Error("added_tokens", $"id {t.Id} is '{pieces[t.Id]}' in the vocabulary but added token '{t.Content}'");
            pieces[t.Id] = t.Content;
        }
        for (int id = 0; id < size; id++)
            if (pieces[id] == null) throw json.Error("model.vocab", $"id {id} is not assigned to any token (ids must be 0..{size - 1} without gaps)");
        return pieces!;
    }

    static List<(int, int, int)> ReadMerges(JsonFile json, JsonElement list, Dictionary<string, int> ids)
    {
        var merges = new List<(int, int, int)>();
        int rank = 0;
        foreach (var m in json.Array(list, "model.merges"))
        {
            string path = $"model.merges[{rank++}]";
            string left, right;
            if (m.ValueKind == JsonValueKind.String)
            {
                var parts = m.GetString()!.Split(' ');
                if (parts.Length != 2) throw json.Error(path, $"merge '{m.GetString()}' is not two tokens separated by one space");
                (left, right) = (parts[0], parts[1]);
            }
            else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2)
            {
                left = json.String(m[0], path + "[0]");
                right = json.String(m[1], path + "[1]");
            }
            else throw json.Error(path, $"a merge must be \"left right\" or [left, right], found {m.ValueKind}");
            merges.Add(MergeIds(left, right, ids, msg => json.Error(path, msg)));
        }
        return merges;
    }

    internal static (int, int, int) MergeIds(string left, string right, Dictionary<string, int> ids, Func<string, Exception> error)
    {
        if (!ids.TryGetValue(left, out int l)) throw error($"merge token '{left}' is not in the vocabulary");
        if (!ids.TryGetValue(right, out int r)) throw error($"merge token '{right}' is not in the vocabulary");
        if (!ids.TryGetValue(left + right, out int m)) throw error($"merged token '{left + right}' is not in the vocabulary");
        return (l, r, m);
    }

    static NormalizerStep[] ReadNormalizer(JsonFile json, JsonElement n, string path)
    {
        string type = json.Type(n, path);
        switch (type)
        {
            case "Sequence":
                var steps = new List<NormalizerStep>();
                int i = 0;
                foreach (var child in json.Array(json.Required(n, "normalizers", path), path + ".normalizers"))
                    steps.AddRange(ReadNormalizer(json, child, $"{path}.normalizers[{i++}]"));
                return steps.ToArray();
            case "Prepend":
                return [new NormalizerStep(NormalizerKind.Prepend, json.String(json.Required(n, "prepend", path), path + ".prepend"))];
            case "Replace":
                return [new NormalizerStep(NormalizerKind.Replace, StringPattern(json, n, path), json.String(json.Required(n, "content", path), path + ".content"))];
            case "NFC":
                return [new NormalizerStep(NormalizerKind.Nfc)];
            default:
                throw json.Error(path, $"normalizer '{type}' is not supported (supported: Sequence, Prepend, Replace with a string pattern, NFC)");
        }
    }

    static string StringPattern(JsonFile json, JsonElement node, string path)
    {
        var pattern = json.Object(json.Required(node, "pattern", path), path + ".pattern");
        if (pattern.TryGetProperty("String", out var s)) return json.String(s, path + ".pattern.String");
        if (pattern.TryGetProperty("Regex", out var r))
            throw json.Error(path + ".pattern", $"regex pattern '{r}' is not supported here (only literal String patterns)");
        throw json.Error(path + ".pattern", "expected {\"String\": ...}");
    }

    static PreTokenizerStep[] ReadPreTokenizer(JsonFile json, JsonElement p, string path, ref bool byteLevel)
    {
        if (byteLevel) throw json.Error(path, "a pre-tokenizer after ByteLevel would see byte-level text; not supported");
        string type = json.Type(p, path);
        switch (type)
        {
            case "Sequence":
                var steps = new List<PreTokenizerStep>();
                int i = 0;
                foreach (var child in json.Array(json.Required(p, "pretokenizers", path), path + ".pretokenizers"))
                    steps.AddRange(ReadPreTokenizer(json, child, $"{path}.pretokenizers[{i++}]", ref byteLevel));
                return steps.ToArray();
            case "ByteLevel":
            {
                byteLevel = true;
                var steps2 = new List<PreTokenizerStep>();
                if (json.OptionalBool(p, "add_prefix_space", path, true)) steps2.Add(PreTokenizerStep.PrefixSpace);
                if (json.OptionalBool(p, "use_regex", path, true)) steps2.Add(PreTokenizerStep.SplitOn(SplitPattern.Gpt2, foldLongS: true));
                return steps2.ToArray();
            }
            case "Split":
            {
                var pattern = json.Object(json.Required(p, "pattern", path), path + ".pattern");
                string behavior = json.String(json.Required(p, "behavior", path), path + ".behavior");
                if (behavior != "Isolated") throw json.Error(path + ".behavior", $"Split behavior '{behavior}' is not supported (only Isolated)");
                if (json.OptionalBool(p, "invert", path, false)) throw json.Error(path + ".invert", "inverted Split is not supported");
                if (!pattern.TryGetProperty("Regex", out var regexElement))
                    throw json.Error(path + ".pattern", "only Regex split patterns are supported");
                string regex = json.String(regexElement, path + ".pattern.Regex");
                foreach (var (known, kind) in SplitPatterns.Known)
                    if (regex == known) return [PreTokenizerStep.SplitOn(kind, foldLongS: true)];
                throw json.Error(path + ".pattern.Regex", $"split regex '{regex}' is not one we implement (GPT-2, Llama 3, Qwen2)");
            }
            case "Digits":
                return [PreTokenizerStep.Digits(json.OptionalBool(p, "individual_digits", path, false))];
            case "Metaspace":
            {
                string replacement = json.String(json.Required(p, "replacement", path), path + ".replacement");
                if (replacement.Length != 1) throw json.Error(path + ".replacement", $"replacement '{replacement}' is not one character");
                return [PreTokenizerStep.Metaspace(replacement[0], ReadPrependScheme(json, p, path), json.OptionalBool(p, "split", path, true))];
            }
            default:
                throw json.Error(path, $"pre-tokenizer '{type}' is not supported (supported: Sequence, ByteLevel, Split with the GPT-2/Llama 3/Qwen2 regex, Digits, Metaspace)");
        }
    }

    static PrependScheme ReadPrependScheme(JsonFile json, JsonElement node, string path)
    {
        if (node.TryGetProperty("prepend_scheme", out var s))
            return json.String(s, path + ".prepend_scheme") switch
            {
                "always" => PrependScheme.Always,
                "first" => PrependScheme.First,
                "never" => PrependScheme.Never,
                var other => throw json.Error(path + ".prepend_scheme", $"prepend_scheme '{other}' is not one of always, first, never"),
            };
        return json.OptionalBool(node, "add_prefix_space", path, true) ? PrependScheme.Always : PrependScheme.Never;
    }

    static DecoderStep[] ReadDecoder(JsonFile json, JsonElement d, string path)
    {
        string type = json.Type(d, path);
        switch (type)
        {
            case "Sequence":
                var steps = new List<DecoderStep>();
                int i = 0;
                foreach (var child in json.Array(json.Required(d, "decoders", path), path + ".decoders"))
                    steps.AddRange(ReadDecoder(json, child, $"{path}.decoders[{i++}]"));
                return steps.ToArray();
            case "ByteLevel": return [new DecoderStep(DecoderKind.ByteLevel)];
            case "ByteFallback": return [new DecoderStep(DecoderKind.ByteFallback)];
            case "Fuse": return [new DecoderStep(DecoderKind.Fuse)];
            case "Replace":
                return [new DecoderStep(DecoderKind.Replace, StringPattern(json, d, path), json.String(json.Required(d, "content", path), path + ".content"))];
            case "Strip":
            {
                string content = json.String(json.Required(d, "content", path), path + ".content");
                if (content.Length != 1) throw json.Error(path + ".content", $"Strip content '{content}' is not one character");
                return [new DecoderStep(DecoderKind.Strip, content, Start: json.Int(json.Required(d, "start", path), path + ".start"),
                    Stop: json.Int(json.Required(d, "stop", path), path + ".stop"))];
            }
            case "Metaspace":
            {
                string replacement = json.String(json.Required(d, "replacement", path), path + ".replacement");
                return [new DecoderStep(DecoderKind.Metaspace, replacement, Scheme: ReadPrependScheme(json, d, path))];
            }
            default:
                throw json.Error(path, $"decoder '{type}' is not supported (supported: Sequence, ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace)");
        }
    }

    static (int[] Prefix, int[] Suffix) ReadPostProcessor(JsonFile json, JsonElement p, string path, AddedToken[] added, Dictionary<string, int> ids)
    {
        string type = json.Type(p, path);
        switch (type)
        {
            case "ByteLevel":
                return ([], []); // only adjusts offsets
            case "Sequence":
            {
                int[] prefix = [], suffix = [];
                int i = 0;
                foreach (var child in json.Array(json.Required(p, "processors", path), path + ".processors"))
                {
                    var (pre, suf) = ReadPostProcessor(json, child, $"{path}.processors[{i++}]", added, ids);
                    if ((pre.Length > 0 || suf.Length > 0) && (prefix.Length > 0 || suffix.Length > 0))
                        throw json.Error(path, "more than one post-processor adds tokens; not supported");
                    if (pre.Length > 0 || suf.Length > 0) (prefix, suffix) = (pre, suf);
                }
                return (prefix, suffix);
            }
            case "TemplateProcessing":
            {
                var specials = new Dictionary<string, int[]>(StringComparer.Ordinal);
                if (p.TryGetProperty("special_tokens", out var st) && st.ValueKind != JsonValueKind.Null)
                    foreach (var entry in json.Object(st, path + ".special_tokens").EnumerateObject())
                    {
                        string epath = $"{path}.special_tokens[\"{entry.Name}\"]";
                        specials[entry.Name] = json.Array(json.Required(entry.Value, "ids", epath), epath + ".ids")
                            .Select((e, k) => json.Int(e, $"{epath}.ids[{k}]")).ToArray();
                    }
                var prefix = new List<int>();
                var suffix = new List<int>();
                bool seenSequence = false;
                int i = 0;
                foreach (var item in json.Array(json.Required(p, "single", path), path + ".single"))
                {
                    string ipath = $"{path}.single[{i++}]";
                    if (item.TryGetProperty("Sequence", out _))
                    {
                        if (seenSequence) throw json.Error(ipath, "the single template has more than one sequence");
                        seenSequence = true;
                    }
                    else if (item.TryGetProperty("SpecialToken", out var special))
                    {
                        string name = json.String(json.Required(special, "id", ipath + ".SpecialToken"), ipath + ".SpecialToken.id");
                        if (!specials.TryGetValue(name, out var tokenIds))
                            throw json.Error(ipath, $"special token '{name}' is not in the template's special_tokens");
                        foreach (int id in tokenIds)
                            if (id < 0 || !(ids.ContainsValue(id) || added.Any(t => t.Id == id)))
                                throw json.Error(ipath, $"special token '{name}' has id {id}, which is not in the vocabulary");
                        (seenSequence ? suffix : prefix).AddRange(tokenIds);
                    }
                    else throw json.Error(ipath, "expected a SpecialToken or Sequence item");
                }
                return (prefix.ToArray(), suffix.ToArray());
            }
            default:
                throw json.Error(path, $"post-processor '{type}' is not supported (supported: TemplateProcessing, ByteLevel, Sequence)");
        }
    }

    /// <summary>tokenizer_config.json: bos/eos/unk/pad tokens, add_bos_token / add_eos_token (which, when given,
    /// decide what Encode adds, as transformers' Llama tokenizers rebuild their post-processor from them),
    /// chat_template and clean_up_tokenization_spaces.</summary>
    static void ApplyConfig(string configPath, Tokenizer.Parts parts, Func<string, int?> idOf)
    {
        using var doc = ParseFile(configPath);
        var json = new JsonFile(configPath);
        var root = json.Object(doc.RootElement, "(root)");
        int? SpecialId(string key)
        {
            if (!root.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            string content = v.ValueKind == JsonValueKind.Object
                ? json.String(json.Required(v, "content", key), key + ".content")
                : json.String(v, key);
            return idOf(content) ?? throw json.Error(key, $"'{content}' is not a token of the tokenizer");
        }
        parts.BosId = SpecialId("bos_token");
        parts.EosId = SpecialId("eos_token");
        parts.UnknownId = SpecialId("unk_token") ?? parts.UnknownId;
        parts.PaddingId = SpecialId("pad_token");
        bool? addBos = root.TryGetProperty("add_bos_token", out var ab) && ab.ValueKind != JsonValueKind.Null ? json.Bool(ab, "add_bos_token") : null;
        bool? addEos = root.TryGetProperty("add_eos_token", out var ae) && ae.ValueKind != JsonValueKind.Null ? json.Bool(ae, "add_eos_token") : null;
        if (addBos != null || addEos != null)
        {
            bool bos = addBos ?? (parts.BosId is int b && parts.PrefixIds.Contains(b));
            bool eos = addEos ?? (parts.EosId is int e && parts.SuffixIds.Contains(e));
            if (bos && parts.BosId == null) throw json.Error("add_bos_token", "add_bos_token is true but there is no bos_token");
            if (eos && parts.EosId == null) throw json.Error("add_eos_token", "add_eos_token is true but there is no eos_token");
            parts.PrefixIds = bos ? [parts.BosId!.Value] : [];
            parts.SuffixIds = eos ? [parts.EosId!.Value] : [];
        }
        if (root.TryGetProperty("clean_up_tokenization_spaces", out var cu) && cu.ValueKind != JsonValueKind.Null)
            parts.CleanUpTokenizationSpaces = json.Bool(cu, "clean_up_tokenization_spaces");
        if (root.TryGetProperty("chat_template", out var ct) && ct.ValueKind != JsonValueKind.Null)
        {
            parts.ChatTemplateSource = $"{configPath} chat_template";
            if (ct.ValueKind == JsonValueKind.String) parts.ChatTemplate = ct.GetString();
            else
            {
                int i = 0;
                foreach (var entry in json.Array(ct, "chat_template"))
                {
                    string path = $"chat_template[{i++}]";
                    if (json.String(json.Required(entry, "name", path), path + ".name") == "default")
                    {
                        parts.ChatTemplate = json.String(json.Required(entry, "template", path), path + ".template");
                        parts.ChatTemplateSource = $"{configPath} {path}.template";
                    }
                }
            }
        }
    }

    static int[] ReadGenerationEosIds(string path)
    {
        using var doc = ParseFile(path);
        var json = new JsonFile(path);
        var root = json.Object(doc.RootElement, "(root)");
        if (!root.TryGetProperty("eos_token_id", out var e) || e.ValueKind == JsonValueKind.Null) return [];
        if (e.ValueKind == JsonValueKind.Array) return json.Array(e, "eos_token_id").Select((x, i) => json.Int(x, $"eos_token_id[{i}]")).ToArray();
        return [json.Int(e, "eos_token_id")];
    }

    // ---- GPT-2 style files --------------------------------------------------------------------------------------

    public static Tokenizer LoadGpt2Files(string vocabPath, string mergesPath, PreTokenizerKind kind,
        IReadOnlyDictionary<string, int>? specialTokens, string? bosToken, string? eosToken)
    {
        using var doc = ParseFile(vocabPath);
        var json = new JsonFile(vocabPath);
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in json.Object(doc.RootElement, "(root)").EnumerateObject())
        {
            int id = json.Int(entry.Value, $"[\"{entry.Name}\"]");
            if (id < 0 || !ids.TryAdd(entry.Name, id)) throw json.Error($"[\"{entry.Name}\"]", $"bad or repeated entry (id {id})");
        }
        var added = (specialTokens ?? new Dictionary<string, int>())
            .Select(kv => new AddedToken(kv.Value, kv.Key, Special: true)).OrderBy(t => t.Id).ToArray();
        var pieces = BuildPieces(json, ids, added);
        var types = new TokenType[pieces.Length];
        Array.Fill(types, TokenType.Normal);
        foreach (var t in added) types[t.Id] = TokenType.Control;
        var vocab = new Vocabulary(pieces, types, ids);
        for (int b = 0; b < 256; b++)
            if (!ids.ContainsKey(ByteLevelAlphabet.CharOfByte[b].ToString()))
                throw json.Error("(root)", $"byte-level vocabulary lacks the token for byte 0x{b:X2}");

        var merges = new List<(int, int, int)>();
        string[] lines;
        try { lines = File.ReadAllLines(mergesPath); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new ModelFormatException(mergesPath, $"cannot read: {e.Message}", inner: e); }
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i];
            if (line.StartsWith("#version", StringComparison.Ordinal) || (line.Length == 0 && i == lines.Length - 1)) continue;
            var parts = line.Split(' ');
            if (parts.Length != 2) throw new ModelFormatException(mergesPath, $"'{line}' is not two tokens separated by one space", $"line {i + 1}");
            merges.Add(MergeIds(parts[0], parts[1], ids, msg => new ModelFormatException(mergesPath, msg, $"line {i + 1}")));
        }
        var row = PreTokenizerKinds.Of(kind);
        var model = BpeModel.FromMerges(vocab, BpeInput.ByteLevel, merges, lastDuplicateWins: true, row.IgnoreMerges, false, false, null);
        int? Special(string? content, string what)
        {
            if (content == null) return null;
            var token = added.FirstOrDefault(t => t.Content == content)
                ?? throw new ArgumentException($"{what} '{content}' is not one of the special tokens given");
            return token.Id;
        }
        int? bos = Special(bosToken, "bos token");
        return new Tokenizer(new Tokenizer.Parts
        {
            Source = vocabPath, Vocabulary = vocab, Model = model, PreTokenizer = PreTokenizerKinds.Steps(kind, foldLongS: true),
            AddedTokens = added, Decoder = [new DecoderStep(DecoderKind.ByteLevel)],
            PrefixIds = bos is int b2 ? [b2] : [], BosId = bos, EosId = Special(eosToken, "eos token"),
        });
    }
}

/// <summary>Typed access to a JSON document that reports problems as <see cref="ModelFormatException"/>s naming the
/// file and the JSON path.</summary>
sealed class JsonFile(string file)
{
    public ModelFormatException Error(string path, string message) => new(file, message, path.Length == 0 ? null : path);

    public JsonElement Required(JsonElement obj, string name, string path)
    {
        string full = path.Length == 0 ? name : $"{path}.{name}";
        if (obj.ValueKind != JsonValueKind.Object) throw Error(path, $"expected an object, found {obj.ValueKind}");
        return obj.TryGetProperty(name, out var v) ? v : throw Error(full, "required field is missing");
    }

    public JsonElement Object(JsonElement e, string path) =>
        e.ValueKind == JsonValueKind.Object ? e : throw Error(path, $"expected an object, found {e.ValueKind}");

    public JsonElement.ArrayEnumerator Array(JsonElement e, string path) =>
        e.ValueKind == JsonValueKind.Array ? e.EnumerateArray() : throw Error(path, $"expected an array, found {e.ValueKind}");

    public string String(JsonElement e, string path) =>
        e.ValueKind == JsonValueKind.String ? e.GetString()! : throw Error(path, $"expected a string, found {e.ValueKind}");

    public int Int(JsonElement e, string path) =>
        e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int v) ? v : throw Error(path, $"expected an integer, found {e.ValueKind} {e}");

    public double Number(JsonElement e, string path) =>
        e.ValueKind == JsonValueKind.Number ? e.GetDouble() : throw Error(path, $"expected a number, found {e.ValueKind}");

    public bool Bool(JsonElement e, string path) => e.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw Error(path, $"expected true or false, found {e.ValueKind}"),
    };

    public bool OptionalBool(JsonElement obj, string name, string path, bool fallback) =>
        obj.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? Bool(v, path.Length == 0 ? name : $"{path}.{name}") : fallback;

    public string Type(JsonElement node, string path) => String(Required(Object(node, path), "type", path), path + ".type");
}
