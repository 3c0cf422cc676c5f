using Hone.Formats;

namespace Hone.Tokenization;

/// <summary>
/// A tokenizer loaded from a Hugging Face <c>tokenizer.json</c> (with <c>tokenizer_config.json</c>), a GGUF vocabulary,
/// or GPT-2 style <c>vocab.json</c> + <c>merges.txt</c> files. Supports byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM) and
/// SentencePiece-style BPE with byte fallback (Llama 2, Mistral, TinyLlama); anything else is refused with a
/// <see cref="ModelFormatException"/> when loading, never approximated.
/// Encoding follows the source's reference implementation: Hugging Face <c>tokenizers</c> for tokenizer.json, llama.cpp
/// for GGUF. Decoding follows Hugging Face's decoders. Thread-safe.
/// </summary>
public sealed class Tokenizer
{
    readonly Vocabulary _vocab;
    readonly BpeModel _model;
    readonly NormalizerStep[] _normalizer;
    readonly PreTokenizerStep[] _preTokenizer;
    readonly AddedTokenMatcher _rawMatcher, _normalizedMatcher;
    readonly DecoderStep[] _decoder;
    readonly int[] _prefixIds, _suffixIds;
    readonly HashSet<int> _specialIds;
    readonly Dictionary<string, int> _addedIds;
    readonly float[]? _scores;
    readonly string? _ggufPre;

    /// <summary>Where the tokenizer came from (file path), for messages.</summary>
    public string Source { get; }
    /// <summary>Number of ids, model vocabulary and added tokens together.</summary>
    public int VocabSize => _vocab.Count;
    public int? BosId { get; }
    public int? EosId { get; }
    public int? UnknownId { get; }
    public int? PaddingId { get; }
    public string? BosToken { get; }
    public string? EosToken { get; }
    /// <summary>Tokens that end a turn or the text: EOS, the end-of-turn tokens the vocabulary has (such as
    /// <c>&lt;|eot_id|&gt;</c>, <c>&lt;|im_end|&gt;</c>, <c>&lt;end_of_turn&gt;</c>), and those the GGUF metadata or
    /// generation_config.json name. Sorted.</summary>
    public IReadOnlyList<int> EndOfTurnIds { get; }
    /// <summary><see cref="Encode"/> with addSpecialTokens puts BOS first.</summary>
    public bool AddsBos { get; }
    /// <summary><see cref="Encode"/> with addSpecialTokens puts EOS last.</summary>
    public bool AddsEos { get; }
    /// <summary>tokenizer_config.json chat_template (the "default" one where there are several) or GGUF tokenizer.chat_template.</summary>
    public string? ChatTemplate { get; }

    /// <summary>Where <see cref="ChatTemplate"/> was read ("…/tokenizer_config.json chat_template"), for error messages.</summary>
    public string? ChatTemplateSource { get; }
    /// <summary>tokenizer_config.json clean_up_tokenization_spaces, when given (transformers' decode then applies it).</summary>
    public bool? CleanUpTokenizationSpaces { get; }
    /// <summary>Tokens matched in text before the model runs.</summary>
    public IReadOnlyList<AddedToken> AddedTokens { get; }

    internal sealed class Parts
    {
        public required string Source;
        public required Vocabulary Vocabulary;
        public required BpeModel Model;
        public NormalizerStep[] Normalizer = [];
        public PreTokenizerStep[] PreTokenizer = [];
        public AddedToken[] AddedTokens = [];
        public AddedTokenSearch Search = AddedTokenSearch.LeftmostLongest;
        public DecoderStep[] Decoder = [];
        public int[] PrefixIds = [], SuffixIds = [];
        public int? BosId, EosId, UnknownId, PaddingId;
        public string? ChatTemplate;
        public string? ChatTemplateSource;
        public bool? CleanUpTokenizationSpaces;
        public IEnumerable<int> ExtraEndOfTurnIds = [];
        public float[]? Scores;
        public string? GgufPre;
    }

    internal Tokenizer(Parts p)
    {
        Source = p.Source;
        _vocab = p.Vocabulary;
        _model = p.Model;
        _normalizer = p.Normalizer;
        _preTokenizer = p.PreTokenizer;
        _decoder = p.Decoder;
        _prefixIds = p.PrefixIds;
        _suffixIds = p.SuffixIds;
        _scores = p.Scores;
        _ggufPre = p.GgufPre;
        AddedTokens = p.AddedTokens;
        _addedIds = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var t in p.AddedTokens) _addedIds.TryAdd(t.Content, t.Id);
        _specialIds = p.AddedTokens.Where(t => t.Special).Select(t => t.Id).ToHashSet();
        _rawMatcher = new AddedTokenMatcher(p.AddedTokens.Where(t => !t.Normalized).Select(t => (t.Content, t)), p.Search);
        _normalizedMatcher = new AddedTokenMatcher(
            p.AddedTokens.Where(t => t.Normalized).Select(t => (NormalizerStep.Apply(_normalizer, t.Content), t)), p.Search);
        BosId = p.BosId;
        EosId = p.EosId;
        UnknownId = p.UnknownId;
        PaddingId = p.PaddingId;
        BosToken = p.BosId is int b ? _vocab.Pieces[b] : null;
        EosToken = p.EosId is int e ? _vocab.Pieces[e] : null;
        ChatTemplate = p.ChatTemplate;
        ChatTemplateSource = p.ChatTemplate == null ? null : p.ChatTemplateSource;
        CleanUpTokenizationSpaces = p.CleanUpTokenizationSpaces;
        AddsBos = p.BosId is int bos && _prefixIds.Contains(bos);
        AddsEos = p.EosId is int eos && _suffixIds.Contains(eos);

        var endOfTurn = new SortedSet<int>(p.ExtraEndOfTurnIds.Where(id => id >= 0 && id < VocabSize));
        if (p.EosId is int eosId) endOfTurn.Add(eosId);
        foreach (var t in p.AddedTokens)
            if (EndOfTurnTexts.Contains(t.Content)) endOfTurn.Add(t.Id);
        EndOfTurnIds = endOfTurn.ToArray();
    }

    /// <summary>Texts of tokens that end a turn in the chat formats we know of (the list llama.cpp uses to find
    /// end-of-generation tokens), counted only when the token is an added or control token.</summary>
    static readonly HashSet<string> EndOfTurnTexts =
    [
        "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
        "<EOT>", "<|return|>", "<|call|>", "<end_of_utterance>", "<｜end▁of▁sentence｜>",
    ];

    // ---- loading ------------------------------------------------------------------------------------------------

    /// <summary>Loads tokenizer.json, with tokenizer_config.json when given (special tokens, add_bos_token /
    /// add_eos_token, chat template).</summary>
    public static Tokenizer FromHuggingFace(string tokenizerJsonPath, string? tokenizerConfigPath = null) =>
        HuggingFaceTokenizerLoader.Load(tokenizerJsonPath, tokenizerConfigPath, null);

    /// <summary>Loads tokenizer.json from a model folder, with tokenizer_config.json and generation_config.json
    /// (its eos_token_id list) when present.</summary>
    public static Tokenizer FromHuggingFaceDirectory(string directory)
    {
        string json = Path.Combine(directory, "tokenizer.json");
        if (!File.Exists(json)) throw new ModelFormatException(directory, "no tokenizer.json in this folder (only tokenizer.json tokenizers are supported)");
        string config = Path.Combine(directory, "tokenizer_config.json");
        string generation = Path.Combine(directory, "generation_config.json");
        return HuggingFaceTokenizerLoader.Load(json, File.Exists(config) ? config : null, File.Exists(generation) ? generation : null);
    }

    /// <summary>Loads the vocabulary of a GGUF file (tokenizer.ggml.*), as llama.cpp interprets it.</summary>
    public static Tokenizer FromGguf(GgufFile gguf) => GgufTokenizer.Load(gguf);

    /// <summary>Builds a byte-level BPE tokenizer from GPT-2 style files: an encoder.json / vocab.json (token → id) and a
    /// merges file (vocab.bpe / merges.txt, one "left right" pair per line, an optional "#version" first line).</summary>
    /// <param name="kind">the family's pre-tokenization (Llama 3 also ignores merges for words that are whole tokens)</param>
    /// <param name="specialTokens">special tokens to add, content → id (such as Llama 3's &lt;|begin_of_text|&gt; = 128000)</param>
    /// <param name="bosToken">put this special token first when encoding with addSpecialTokens</param>
    /// <param name="eosToken">the end-of-sequence token (not added when encoding)</param>
    public static Tokenizer FromGpt2Files(string vocabJsonPath, string mergesPath, PreTokenizerKind kind,
        IReadOnlyDictionary<string, int>? specialTokens = null, string? bosToken = null, string? eosToken = null) =>
        HuggingFaceTokenizerLoader.LoadGpt2Files(vocabJsonPath, mergesPath, kind, specialTokens, bosToken, eosToken);

    /// <summary>Llama 3's tokenizer from its BPE files as tiktoken-converted dumps ship them (encoder.json with the 128,000
    /// byte-level tokens, vocab.bpe), with Meta's 256 special tokens at 128000..128255 (&lt;|begin_of_text|&gt;,
    /// &lt;|eot_id|&gt; = 128009, ...; the unnamed ones &lt;|reserved_special_token_N|&gt;): 128,256 tokens.</summary>
    public static Tokenizer FromLlama3Files(string encoderJsonPath, string vocabBpePath) =>
        FromGpt2Files(encoderJsonPath, vocabBpePath, PreTokenizerKind.Llama3, Llama3SpecialTokens(), bosToken: "<|begin_of_text|>", eosToken: "<|eot_id|>");

    /// <summary>Meta's Llama 3 special tokens, content → id (128000..128255).</summary>
    public static Dictionary<string, int> Llama3SpecialTokens()
    {
        var named = new Dictionary<int, string>
        {
            [128000] = "<|begin_of_text|>", [128001] = "<|end_of_text|>", [128004] = "<|finetune_right_pad_id|>",
            [128006] = "<|start_header_id|>", [128007] = "<|end_header_id|>", [128008] = "<|eom_id|>",
            [128009] = "<|eot_id|>", [128010] = "<|python_tag|>",
        };
        var result = new Dictionary<string, int>();
        int reserved = 0;
        for (int id = 128000; id < 128256; id++)
            result[named.TryGetValue(id, out var n) ? n : $"<|reserved_special_token_{reserved++}|>"] = id;
        return result;
    }

    // ---- lookups ------------------------------------------------------------------------------------------------

    /// <summary>The raw piece of a token as the vocabulary stores it (such as "▁Once", "Ġthe", "&lt;0x0A&gt;").</summary>
    public string TokenText(int id)
    {
        CheckId(id);
        return _vocab.Pieces[id];
    }

    /// <summary>The bytes a token adds to a text in the middle of a sequence (byte tokens give their byte; SentencePiece's
    /// "▁" gives a space), which is what grammars match generated output against. A piece that is part of a UTF-8
    /// character gives just its bytes.</summary>
    public byte[] TokenBytes(int id)
    {
        CheckId(id);
        return _decoder.Length == 0 ? System.Text.Encoding.UTF8.GetBytes(_vocab.Pieces[id]) : DecoderStep.PieceBytes(_decoder, _vocab.Pieces[id]);
    }

    public TokenType GetTokenType(int id)
    {
        CheckId(id);
        return _vocab.Types[id];
    }

    /// <summary>The id of a piece: an added token first, then the model vocabulary.</summary>
    public int? TokenToId(string piece) =>
        _addedIds.TryGetValue(piece, out int id) ? id : _vocab.TryGetId(piece, out id) ? id : null;

    /// <summary>Whether decoding with skipSpecialTokens drops this token.</summary>
    public bool IsSpecial(int id) => _specialIds.Contains(id);

    void CheckId(int id)
    {
        if ((uint)id >= (uint)_vocab.Count)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"token id outside the vocabulary of {_vocab.Count}");
    }

    // ---- encoding -----------------------------------------------------------------------------------------------

    /// <summary>Token ids for a text.</summary>
    /// <param name="addSpecialTokens">add what the post-processor / add_bos_token / add_eos_token add (BOS for Llama)</param>
    /// <param name="parseSpecialTokens">recognise special tokens written in the text (such as "&lt;|eot_id|&gt;");
    /// false encodes them as ordinary text. Non-special added tokens are recognised either way.</param>
    public int[] Encode(string text, bool addSpecialTokens = true, bool parseSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var output = new List<int>(text.Length / 3 + 4);
        if (addSpecialTokens) output.AddRange(_prefixIds);
        EncodeText(text, parseSpecialTokens, output);
        if (addSpecialTokens) output.AddRange(_suffixIds);
        return output.ToArray();
    }

    /// <summary>Texts longer than this are encoded in pieces by <see cref="EncodeDocument(string, int?, int?)"/>.</summary>
    public const int DocumentPiece = 1 << 20;

    const int CollectEveryPieces = 16;

    /// <summary>
    /// A document's ids (no special tokens added, special-token text encoded as text) between an optional
    /// <paramref name="first"/> and <paramref name="last"/> id, in an array of exactly that length. A document longer
    /// than <see cref="DocumentPiece"/> characters is encoded in pieces of about that length cut before a single space
    /// between two non-space characters, where the pre-tokenizers of byte-level (GPT-2, Llama 3) and SentencePiece
    /// (Metaspace) tokenizers split anyway, so the ids are those of the whole text while the working copies stay small;
    /// a piece without such a space is cut at the length, between whole characters. The pieces' ids are kept in exact
    /// chunks and copied into the result once the text is no longer used, so a huge document peaks at about its text
    /// plus its ids, or twice its ids, rather than the text plus a doubling list plus the list's copy.
    /// </summary>
    public int[] EncodeDocument(string text, int? first, int? last)
    {
        ArgumentNullException.ThrowIfNull(text);
        var chunks = new List<int[]>();
        var piece = new List<int>();
        long count = 0;
        for (int start = 0; start < text.Length;)
        {
            int end = PieceEnd(text, start, DocumentPiece);
            piece.Clear();
            EncodeText(text[start..end], parseSpecial: false, piece, continuing: start > 0);
            chunks.Add(piece.ToArray());
            count += piece.Count;
            start = end;
            // Each piece leaves a few megabytes of large-object garbage (its substring, normalized copies) that the
            // GC would otherwise let pile up to gigabytes before a full collection; collect it now and then so
            // later pieces reuse the space.
            if (chunks.Count % CollectEveryPieces == 0) GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: false);
        }
        int at = first is null ? 0 : 1;
        var ids = new int[checked((int)(count + at + (last is null ? 0 : 1)))];
        if (first is int f) ids[0] = f;
        for (int i = 0; i < chunks.Count; i++)
        {
            chunks[i].CopyTo(ids, at);
            at += chunks[i].Length;
            chunks[i] = [];
        }
        if (last is int l) ids[at] = l;
        return ids;
    }

    /// <summary>Where a piece starting at <paramref name="start"/> ends: the first single space between non-space
    /// characters at or after start + length (looking at most another length further), else start + length.</summary>
    internal static int PieceEnd(string text, int start, int length)
    {
        if (text.Length - start <= length) return text.Length;
        int limit = (int)Math.Min(text.Length - 1L, start + 2L * length);
        for (int i = start + length; i < limit; i++)
            if (text[i] == ' ' && !char.IsWhiteSpace(text[i - 1]) && !char.IsWhiteSpace(text[i + 1])) return i;
        int end = start + length;
        return char.IsLowSurrogate(text[end]) ? end - 1 : end;
    }

    void EncodeText(string text, bool parseSpecial, List<int> output, bool continuing = false)
    {
        if (text.Length == 0) return;
        var raw = new List<Fragment>();
        _rawMatcher.Split(new Fragment(text, 0, text.Length, -1, AtOrigin: !continuing), parseSpecial, raw);
        var fragments = raw;
        if (_normalizer.Length > 0 || !_normalizedMatcher.IsEmpty)
        {
            fragments = new List<Fragment>(raw.Count);
            foreach (var f in raw)
            {
                if (f.IsToken) { fragments.Add(f); continue; }
                string normalized = NormalizerStep.Apply(_normalizer, f.Span.ToString(), continuing && f.Start == 0);
                _normalizedMatcher.Split(new Fragment(normalized, 0, normalized.Length, -1, f.AtOrigin), parseSpecial, fragments);
            }
        }
        foreach (var f in fragments)
        {
            if (f.IsToken) output.Add(f.TokenId);
            else PreTokenize(f.Span, 0, f.AtOrigin, output);
        }
    }

    void PreTokenize(ReadOnlySpan<char> text, int step, bool atOrigin, List<int> output)
    {
        if (text.IsEmpty) return;
        if (step == _preTokenizer.Length)
        {
            _model.Encode(text, output);
            return;
        }
        var s = _preTokenizer[step];
        switch (s.Kind)
        {
            case PreTokenizerStepKind.Split:
                for (int pos = 0; pos < text.Length;)
                {
                    int length = SplitPatterns.MatchLength(s.Pattern, text, pos, s.FoldLongS);
                    PreTokenize(text.Slice(pos, length), step + 1, atOrigin && pos == 0, output);
                    pos += length;
                }
                break;
            case PreTokenizerStepKind.Digits:
                for (int pos = 0; pos < text.Length;)
                {
                    bool numeric = CharClass.IsNumeric(CharClass.CodePointAt(text, pos, out int first));
                    int end = pos + first;
                    if (!numeric || !s.Flag)
                        while (end < text.Length)
                        {
                            int cp = CharClass.CodePointAt(text, end, out int length);
                            if (CharClass.IsNumeric(cp) != numeric) break;
                            end += length;
                        }
                    PreTokenize(text[pos..end], step + 1, atOrigin && pos == 0, output);
                    pos = end;
                }
                break;
            case PreTokenizerStepKind.PrefixSpace:
                if (text[0] == ' ') PreTokenize(text, step + 1, atOrigin, output);
                else PreTokenize(string.Concat(" ", text), step + 1, atOrigin, output);
                break;
            case PreTokenizerStepKind.Metaspace:
                Metaspace(text, s, step, atOrigin, output);
                break;
        }
    }

    void Metaspace(ReadOnlySpan<char> text, PreTokenizerStep s, int step, bool atOrigin, List<int> output)
    {
        string replaced = text.ToString().Replace(' ', s.Replacement);
        bool prepend = replaced[0] != s.Replacement && (s.Scheme == PrependScheme.Always || (s.Scheme == PrependScheme.First && atOrigin));
        if (prepend) replaced = s.Replacement + replaced;
        if (!s.Flag)
        {
            PreTokenize(replaced, step + 1, atOrigin, output);
            return;
        }
        int start = 0;
        for (int i = 1; i < replaced.Length; i++)
            if (replaced[i] == s.Replacement)
            {
                PreTokenize(replaced.AsSpan(start, i - start), step + 1, atOrigin && start == 0, output);
                start = i;
            }
        PreTokenize(replaced.AsSpan(start), step + 1, atOrigin && start == 0, output);
    }

    // ---- decoding -----------------------------------------------------------------------------------------------

    /// <summary>The text of token ids, as Hugging Face's <c>decode</c> gives it.</summary>
    /// <param name="skipSpecialTokens">leave out special tokens (BOS, EOS, chat markers)</param>
    /// <param name="cleanUpTokenizationSpaces">apply transformers' clean-up (" ." → "." etc.), which some configs ask
    /// for (<see cref="CleanUpTokenizationSpaces"/>); it loses information, so it is off unless asked for</param>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false, bool cleanUpTokenizationSpaces = false)
    {
        string text = Decode(ids, skipSpecialTokens, out _);
        return cleanUpTokenizationSpaces ? CleanUp(text) : text;
    }

    internal string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens, out bool incompleteTail)
    {
        var tokens = new List<string>(ids.Length);
        foreach (int id in ids)
        {
            CheckId(id);
            if (skipSpecialTokens && _specialIds.Contains(id)) continue;
            tokens.Add(_vocab.Pieces[id]);
        }
        if (_decoder.Length == 0)
        {
            incompleteTail = false;
            return string.Join(' ', tokens);
        }
        return DecoderStep.Run(_decoder, tokens, out incompleteTail);
    }

    /// <summary>transformers' <c>clean_up_tokenization</c>.</summary>
    public static string CleanUp(string text) => text
        .Replace(" .", ".").Replace(" ?", "?").Replace(" !", "!").Replace(" ,", ",").Replace(" ' ", "'")
        .Replace(" n't", "n't").Replace(" 'm", "'m").Replace(" 's", "'s").Replace(" 've", "'ve").Replace(" 're", "'re");

    /// <summary>A decoder to feed generated ids one at a time; it emits text only once characters are complete.</summary>
    public StreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);

    // ---- GGUF ---------------------------------------------------------------------------------------------------

    /// <summary>Writes this tokenizer as GGUF tokenizer metadata that llama.cpp loads (tokenizer.ggml.model, tokens,
    /// token_type, scores or merges, pre, special ids, add_bos_token, chat_template). A SentencePiece-style tokenizer.json
    /// (BPE with byte fallback) becomes the "llama" model with scores that reproduce its merge order; an NFC normalizer
    /// (Qwen2) is dropped, as llama.cpp's own converter does.</summary>
    /// <exception cref="NotSupportedException">the tokenizer has no llama.cpp equivalent</exception>
    public void WriteGgufMetadata(GgufWriter writer) => GgufTokenizer.Write(this, writer);

    internal Vocabulary Vocab => _vocab;
    internal BpeModel Model => _model;
    internal IReadOnlyList<NormalizerStep> Normalizer => _normalizer;
    internal IReadOnlyList<PreTokenizerStep> PreTokenizer => _preTokenizer;
    internal float[]? Scores => _scores;
    internal string? GgufPre => _ggufPre;
}
