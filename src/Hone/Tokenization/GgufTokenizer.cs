using Hone.Formats;

namespace Hone.Tokenization;

/// <summary>GGUF tokenizer metadata (<c>tokenizer.ggml.*</c>) in both directions, with llama.cpp's meaning: the
/// "llama" model is its SentencePiece algorithm over token scores, "gpt2" is byte-level BPE over merges with the split
/// named by <c>tokenizer.ggml.pre</c>.</summary>
static class GgufTokenizer
{
    const string Prefix = "tokenizer.ggml.";

    public static Tokenizer Load(GgufFile gguf)
    {
        string file = gguf.Path;
        string model = gguf.GetString(Prefix + "model") ?? throw new ModelFormatException(file, "required metadata key is missing (the file has no vocabulary)", Prefix + "model");
        if (model is not ("llama" or "gpt2"))
            throw new ModelFormatException(file, $"tokenizer model '{model}' is not supported (supported: llama, gpt2)", Prefix + "model");

        var pieces = Strings(gguf, Prefix + "tokens") ?? throw new ModelFormatException(file, "required metadata key is missing", Prefix + "tokens");
        int n = pieces.Length;
        var types = new TokenType[n];
        var typeValues = Ints(gguf, Prefix + "token_type");
        for (int i = 0; i < n; i++)
        {
            int t = typeValues == null ? 1 : i < typeValues.Length ? typeValues[i]
                : throw new ModelFormatException(file, $"has {typeValues.Length} entries for {n} tokens", Prefix + "token_type");
            types[i] = t is >= 0 and <= 6 ? (TokenType)t : TokenType.Undefined;
        }
        var ids = new Dictionary<string, int>(n, StringComparer.Ordinal);
        for (int i = 0; i < n; i++)
        {
            if (pieces[i].Length == 0) pieces[i] = $"[EMPTY_{i}]"; // as llama.cpp names empty tokens
            if (!ids.TryAdd(pieces[i], i))
                throw new ModelFormatException(file, $"duplicate token '{pieces[i]}' at ids {ids[pieces[i]]} and {i}", Prefix + "tokens");
        }
        var vocab = new Vocabulary(pieces, types, ids);

        int? Id(string key, int? fallback)
        {
            long? v = gguf.GetInteger(Prefix + key);
            if (v == null) return fallback is int f && f < n ? f : null;
            if (v < 0 || v >= n) return fallback is int f2 && f2 < n ? f2 : null; // llama.cpp ignores out-of-range ids
            return (int)v;
        }
        bool? Flag(string key) => gguf.Get(Prefix + key) is { } v
            ? v.Value as bool? ?? throw new ModelFormatException(file, $"expected a boolean, found {v.Type}", Prefix + key)
            : null;

        // Control, unknown and user-defined tokens are matched in text before the model runs (llama.cpp's special
        // token cache); control and unknown ones only when special tokens are parsed.
        var added = new List<AddedToken>();
        for (int i = 0; i < n; i++)
            if (types[i] is TokenType.Control or TokenType.Unknown or TokenType.UserDefined)
                added.Add(new AddedToken(i, pieces[i], Special: types[i] != TokenType.UserDefined));

        Tokenizer.Parts parts;
        bool addBos, addEos = Flag("add_eos_token") ?? false;
        if (model == "llama")
        {
            var scores = Floats(gguf, Prefix + "scores") ?? new float[n];
            if (scores.Length < n) throw new ModelFormatException(file, $"has {scores.Length} entries for {n} tokens", Prefix + "scores");
            int? unknownId = Id("unknown_token_id", 0);
            parts = new Tokenizer.Parts { Source = file, Vocabulary = vocab, Model = BpeModel.FromScores(vocab, scores, unknownId) };
            parts.Scores = scores;
            parts.UnknownId = unknownId;
            bool spacePrefix = Flag("add_space_prefix") ?? true;
            parts.Normalizer = spacePrefix
                ? [new(NormalizerKind.Prepend, "\u2581"), new(NormalizerKind.Replace, " ", "\u2581")]
                : [new(NormalizerKind.Replace, " ", "\u2581")];
            parts.Decoder = spacePrefix ? DecoderStep.SentencePieceChain : DecoderStep.SentencePieceChain[..3];
            parts.BosId = Id("bos_token_id", 1);
            parts.EosId = Id("eos_token_id", 2);
            addBos = Flag("add_bos_token") ?? true;
        }
        else
        {
            string pre = gguf.GetString(Prefix + "pre")
                ?? throw new ModelFormatException(file, "missing: llama.cpp then falls back to a generic split that matches no real tokenizer; not supported", Prefix + "pre");
            var row = PreTokenizerKinds.Table.FirstOrDefault(r => r.GgufAliases.Contains(pre))
                ?? throw new ModelFormatException(file, $"pre-tokenizer '{pre}' is not supported (supported: {string.Join(", ", PreTokenizerKinds.Table.SelectMany(r => r.GgufAliases))})", Prefix + "pre");
            var mergeStrings = Strings(gguf, Prefix + "merges") ?? throw new ModelFormatException(file, "required for a gpt2 tokenizer", Prefix + "merges");
            var merges = new List<(int, int, int)>(mergeStrings.Length);
            for (int i = 0; i < mergeStrings.Length; i++)
            {
                string m = mergeStrings[i];
                int space = m.Length > 1 ? m.IndexOf(' ', 1) : -1;
                if (space < 0) throw new ModelFormatException(file, $"merge #{i} '{m}' has no separating space", Prefix + "merges");
                merges.Add(HuggingFaceTokenizerLoader.MergeIds(m[..space], m[(space + 1)..], ids,
                    msg => new ModelFormatException(file, $"merge #{i}: {msg}", Prefix + "merges")));
            }
            for (int b = 0; b < 256; b++)
                if (!ids.ContainsKey(ByteLevelAlphabet.CharOfByte[b].ToString()))
                    throw new ModelFormatException(file, $"byte-level vocabulary lacks the token for byte 0x{b:X2}", Prefix + "tokens");
            parts = new Tokenizer.Parts
            {
                Source = file, Vocabulary = vocab, GgufPre = pre,
                Model = BpeModel.FromMerges(vocab, BpeInput.ByteLevel, merges, lastDuplicateWins: false, row.IgnoreMerges, false, false, null),
            };
            parts.PreTokenizer = PreTokenizerKinds.Steps(row.Kind, foldLongS: false);
            parts.Decoder = [new DecoderStep(DecoderKind.ByteLevel)];
            parts.UnknownId = Id("unknown_token_id", null);
            parts.BosId = Id("bos_token_id", null);
            parts.EosId = Id("eos_token_id", null);
            addBos = Flag("add_bos_token") ?? row.AddsBosByDefault;
        }
        parts.AddedTokens = added.ToArray();
        parts.Search = AddedTokenSearch.LongestFirst;
        parts.PaddingId = Id("padding_token_id", null);
        if (addBos && parts.BosId == null) throw new ModelFormatException(file, "add_bos_token is true but there is no valid bos_token_id", Prefix + "add_bos_token");
        if (addEos && parts.EosId == null) throw new ModelFormatException(file, "add_eos_token is true but there is no valid eos_token_id", Prefix + "add_eos_token");
        parts.PrefixIds = addBos ? [parts.BosId!.Value] : [];
        parts.SuffixIds = addEos ? [parts.EosId!.Value] : [];
        parts.ExtraEndOfTurnIds = new[] { Id("eot_token_id", null), Id("eom_token_id", null) }.OfType<int>().ToArray();
        parts.ChatTemplate = gguf.GetString("tokenizer.chat_template");
        parts.ChatTemplateSource = $"{file} tokenizer.chat_template";
        return new Tokenizer(parts);
    }

    static string[]? Strings(GgufFile gguf, string key)
    {
        var v = gguf.Get(key);
        if (v == null) return null;
        var a = v.AsArray(gguf.Path, key);
        if (a.ElementType != GgufValueType.String) throw new ModelFormatException(gguf.Path, $"expected an array of strings, found an array of {a.ElementType}", key);
        return a.Items.Select(o => (string)o).ToArray();
    }

    static int[]? Ints(GgufFile gguf, string key)
    {
        var v = gguf.Get(key);
        if (v == null) return null;
        var a = v.AsArray(gguf.Path, key);
        if (a.ElementType != GgufValueType.Int32) throw new ModelFormatException(gguf.Path, $"expected an array of int32, found an array of {a.ElementType}", key);
        return a.Items.Select(o => (int)o).ToArray();
    }

    static float[]? Floats(GgufFile gguf, string key)
    {
        var v = gguf.Get(key);
        if (v == null) return null;
        var a = v.AsArray(gguf.Path, key);
        return a.ElementType switch
        {
            GgufValueType.Float32 => a.Items.Select(o => (float)o).ToArray(),
            GgufValueType.Int32 => a.Items.Select(o => (float)(int)o).ToArray(), // llama.cpp accepts integer scores
            _ => throw new ModelFormatException(gguf.Path, $"expected an array of float32, found an array of {a.ElementType}", key),
        };
    }

    // ---- writing ------------------------------------------------------------------------------------------------

    public static void Write(Tokenizer t, GgufWriter w)
    {
        var model = t.Model;
        var pieces = t.Vocab.Pieces;
        w.Set(Prefix + "model", GgufValue.Of(model.Input == BpeInput.ByteLevel ? "gpt2" : "llama"));
        switch (model.Input)
        {
            case BpeInput.ByteLevel:
            {
                var kind = PreTokenizerKinds.Recognize(t.PreTokenizer)
                    ?? throw new NotSupportedException($"{t.Source}: its pre-tokenizer has no llama.cpp equivalent");
                var row = PreTokenizerKinds.Of(kind);
                // llama.cpp applies no normalizer to gpt2 tokenizers. Its own converter writes Qwen2's NFC away too (the
                // GGUF then differs only on text that is not already NFC), so NFC alone is accepted; anything else is not.
                if (t.Normalizer.Any(s => s.Kind != NormalizerKind.Nfc))
                    throw new NotSupportedException($"{t.Source}: llama.cpp applies no normalizer to gpt2 tokenizers; this one has {string.Join(", ", t.Normalizer.Select(s => s.Kind))}");
                if (model.IgnoreMerges != row.IgnoreMerges)
                    throw new NotSupportedException($"{t.Source}: llama.cpp's '{row.GgufName}' {(row.IgnoreMerges ? "ignores" : "applies")} merges for whole-token words; this tokenizer does not");
                w.Set(Prefix + "pre", GgufValue.Of(t.GgufPre ?? row.GgufName));
                w.Set(Prefix + "tokens", GgufValue.Strings(pieces));
                w.Set(Prefix + "token_type", GgufValue.Ints(t.Vocab.Types.Select(x => (int)x).ToArray()));
                w.Set(Prefix + "merges", GgufValue.Strings(model.MergeList.Select(m => pieces[m.Left] + " " + pieces[m.Right]).ToArray()));
                break;
            }
            case BpeInput.SentencePiece:
                w.Set(Prefix + "tokens", GgufValue.Strings(pieces));
                w.Set(Prefix + "scores", GgufValue.Floats(t.Scores!));
                w.Set(Prefix + "token_type", GgufValue.Ints(t.Vocab.Types.Select(x => (int)x).ToArray()));
                w.Set(Prefix + "add_space_prefix", GgufValue.Of(t.Normalizer.Any(s => s.Kind == NormalizerKind.Prepend)));
                break;
            case BpeInput.Characters:
            {
                bool spacePrefix = SentencePieceSpacePrefix(t);
                if (!model.ByteFallback)
                    throw new NotSupportedException($"{t.Source}: llama.cpp's SentencePiece model always falls back to bytes; this BPE model has byte_fallback off");
                w.Set(Prefix + "tokens", GgufValue.Strings(pieces));
                w.Set(Prefix + "scores", GgufValue.Floats(ScoresFromMerges(t)));
                w.Set(Prefix + "token_type", GgufValue.Ints(t.Vocab.Types.Select(x => (int)x).ToArray()));
                w.Set(Prefix + "add_space_prefix", GgufValue.Of(spacePrefix));
                break;
            }
        }
        void SetId(string key, int? id) { if (id is int v) w.Set(Prefix + key, GgufValue.Of((uint)v)); }
        SetId("bos_token_id", t.BosId);
        SetId("eos_token_id", t.EosId);
        SetId("unknown_token_id", t.UnknownId);
        SetId("padding_token_id", t.PaddingId);
        w.Set(Prefix + "add_bos_token", GgufValue.Of(t.AddsBos));
        w.Set(Prefix + "add_eos_token", GgufValue.Of(t.AddsEos));
        if (t.ChatTemplate != null) w.Set("tokenizer.chat_template", GgufValue.Of(t.ChatTemplate));
    }

    /// <summary>Whether a Hugging Face character-level BPE pipeline is one llama.cpp's SentencePiece reproduces, and with
    /// or without the leading "▁".</summary>
    static bool SentencePieceSpacePrefix(Tokenizer t)
    {
        var n = t.Normalizer;
        var p = t.PreTokenizer;
        bool replaceSpaces(NormalizerStep s) => s is { Kind: NormalizerKind.Replace, A: " ", B: "\u2581" };
        if (p.Count == 0 && n.Count == 2 && n[0] is { Kind: NormalizerKind.Prepend, A: "\u2581" } && replaceSpaces(n[1])) return true;
        if (p.Count == 0 && n.Count == 1 && replaceSpaces(n[0])) return false;
        // Metaspace without splitting (newer Llama / Mistral files). llama.cpp also prefixes text that follows a special
        // token, which Hugging Face's "first" does not; that is the difference every llama.cpp conversion of these has.
        if (n.Count == 0 && p.Count == 1 && p[0] is { Kind: PreTokenizerStepKind.Metaspace, Replacement: '\u2581', Flag: false } m)
            return m.Scheme != PrependScheme.Never;
        throw new NotSupportedException($"{t.Source}: its normalizer / pre-tokenizer has no llama.cpp SentencePiece equivalent");
    }

    /// <summary>Scores for llama.cpp's SentencePiece algorithm that reproduce merge order: a token scores minus the
    /// rank of the first merge that makes it; tokens no merge makes score below all merges.</summary>
    static float[] ScoresFromMerges(Tokenizer t)
    {
        var merges = t.Model.MergeList;
        var pieces = t.Vocab.Pieces;
        var scores = new float[pieces.Length];
        Array.Fill(scores, float.NaN);
        for (int rank = 0; rank < merges.Count; rank++)
        {
            var (l, r) = merges[rank];
            if (t.Vocab.TryGetId(pieces[l] + pieces[r], out int made) && float.IsNaN(scores[made])) scores[made] = -rank;
        }
        for (int i = 0; i < scores.Length; i++)
            if (float.IsNaN(scores[i])) scores[i] = pieces[i].EnumerateRunes().Count() == 1 ? 0 : -(merges.Count + 1);
        return scores;
    }
}
