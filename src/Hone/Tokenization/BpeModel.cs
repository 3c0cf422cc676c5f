using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;

namespace Hone.Tokenization;

/// <summary>What the model's symbols start as.</summary>
enum BpeInput : byte
{
    /// <summary>UTF-8 bytes, each standing for its GPT-2 alphabet character (GPT-2, Llama 3, Qwen2, SmolLM).</summary>
    ByteLevel,
    /// <summary>Characters; a character missing from the vocabulary becomes its <c>&lt;0xNN&gt;</c> byte tokens (byte
    /// fallback) or the unknown token (Hugging Face BPE: Llama 2, Mistral, TinyLlama tokenizer.json).</summary>
    Characters,
    /// <summary>Characters merged by vocabulary score; a symbol left that is not a token becomes byte tokens at the end
    /// (llama.cpp's SentencePiece algorithm for GGUF <c>tokenizer.ggml.model = llama</c>).</summary>
    SentencePiece,
}

/// <summary>
/// Byte-pair encoding of one pre-tokenized word: symbols are merged pair by pair, always the pair of lowest rank and,
/// among equal ranks, the leftmost (Hugging Face's and llama.cpp's order). For SentencePiece the rank of a pair is the
/// rank of its merged token's score, highest score first, and every split of a token into two symbols is a pair.
/// Results are cached per word.
/// </summary>
sealed class BpeModel
{
    const int MaxCachedWordLength = 64;
    const int MaxCacheEntries = 1 << 18;
    const int NaiveMergeLimit = 48; // below this many symbols a linear scan beats the heap

    readonly Vocabulary _vocab;
    readonly Dictionary<long, long> _merges; // (left << 32 | right) → (rank << 32 | merged id)
    readonly int[] _byteLevelIds = new int[256];
    readonly int[] _byteTokenIds;
    readonly Dictionary<string, int>? _extraSymbols; // SentencePiece: characters inside tokens that are not tokens themselves
    readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _extraLookup;
    readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheLookup;
    int _cacheCount;

    public BpeInput Input { get; }
    public bool IgnoreMerges { get; }
    public bool ByteFallback { get; }
    public bool FuseUnknown { get; }
    public int? UnknownId { get; }
    /// <summary>No token contains "▁" after another character, so a word can be cut before every "▁" that follows a
    /// non-"▁" and the pieces encoded (and cached) separately with the same result.</summary>
    public bool SegmentsAtMetaspace { get; }
    /// <summary>The merges in rank order (Hugging Face and GGUF gpt2 models), for writing them back out.</summary>
    public IReadOnlyList<(int Left, int Right)> MergeList { get; }

    BpeModel(Vocabulary vocab, BpeInput input, Dictionary<long, long> merges, List<(int, int)> mergeList, bool ignoreMerges,
        bool byteFallback, bool fuseUnknown, int? unknownId, Dictionary<string, int>? extraSymbols)
    {
        _vocab = vocab;
        Input = input;
        _merges = merges;
        MergeList = mergeList;
        IgnoreMerges = ignoreMerges;
        ByteFallback = byteFallback;
        FuseUnknown = fuseUnknown;
        UnknownId = unknownId;
        _extraSymbols = extraSymbols;
        if (extraSymbols != null) _extraLookup = extraSymbols.GetAlternateLookup<ReadOnlySpan<char>>();
        _cacheLookup = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        _byteTokenIds = vocab.ByteTokenIds();
        if (input == BpeInput.ByteLevel)
            for (int b = 0; b < 256; b++)
                _byteLevelIds[b] = vocab.TryGetId(ByteLevelAlphabet.CharOfByte[b].ToString(), out int id) ? id : -1;
        SegmentsAtMetaspace = !ignoreMerges && input != BpeInput.ByteLevel && vocab.TryGetId("\u2581", out _)
            && !vocab.Pieces.Any(p => HasMetaspaceAfterOtherCharacter(p));
    }

    static bool HasMetaspaceAfterOtherCharacter(string piece)
    {
        for (int i = 1; i < piece.Length; i++)
            if (piece[i] == '\u2581' && piece[i - 1] != '\u2581') return true;
        return false;
    }

    /// <summary>A merge-ranked model. <paramref name="merges"/> in rank order; when a pair repeats, <paramref name="lastDuplicateWins"/>
    /// says whose rank counts (Hugging Face builds a hash map from the list: the last; llama.cpp emplaces: the first).</summary>
    public static BpeModel FromMerges(Vocabulary vocab, BpeInput input, IReadOnlyList<(int Left, int Right, int Merged)> merges,
        bool lastDuplicateWins, bool ignoreMerges, bool byteFallback, bool fuseUnknown, int? unknownId)
    {
        var table = new Dictionary<long, long>(merges.Count, PairComparer.Instance);
        var list = new List<(int, int)>(merges.Count);
        for (int rank = 0; rank < merges.Count; rank++)
        {
            var (l, r, m) = merges[rank];
            long key = Key(l, r);
            if (lastDuplicateWins || !table.ContainsKey(key)) table[key] = ((long)rank << 32) | (uint)m;
            list.Add((l, r));
        }
        return new BpeModel(vocab, input, table, list, ignoreMerges, byteFallback, fuseUnknown, unknownId, null);
    }

    /// <summary>llama.cpp's SentencePiece model: any two adjacent symbols whose concatenation is a token merge, highest
    /// token score first. Symbols are tokens or single characters, so the pairs are every split of every token into a
    /// token-or-character prefix and suffix.</summary>
    public static BpeModel FromScores(Vocabulary vocab, float[] scores, int? unknownId)
    {
        var extra = new Dictionary<string, int>(StringComparer.Ordinal);
        int SymbolOf(string text)
        {
            if (vocab.TryGetId(text, out int id)) return id;
            if (!IsSingleCodePoint(text)) return -1;
            if (!extra.TryGetValue(text, out id)) extra[text] = id = vocab.Count + extra.Count;
            return id;
        }
        var pairs = new List<(int Left, int Right, int Token)>();
        for (int t = 0; t < vocab.Count; t++)
        {
            string piece = vocab.Pieces[t];
            for (int k = 1; k < piece.Length; k++)
            {
                if (char.IsLowSurrogate(piece[k]) && char.IsHighSurrogate(piece[k - 1])) continue;
                int l = SymbolOf(piece[..k]), r = SymbolOf(piece[k..]);
                if (l >= 0 && r >= 0) pairs.Add((l, r, t));
            }
        }
        // Rank = position of the token's score among the distinct scores, highest first; equal scores share a rank
        // and the leftmost pair goes first, as in llama.cpp's queue.
        var distinct = pairs.Select(p => scores[p.Token]).Distinct().OrderByDescending(s => float.IsNaN(s) ? float.NegativeInfinity : s).ToList();
        var rankOf = new Dictionary<float, int>();
        for (int i = 0; i < distinct.Count; i++) rankOf[distinct[i]] = i;
        var table = new Dictionary<long, long>(pairs.Count, PairComparer.Instance);
        foreach (var (l, r, t) in pairs) table[Key(l, r)] = ((long)rankOf[scores[t]] << 32) | (uint)t;
        return new BpeModel(vocab, BpeInput.SentencePiece, table, [], false, true, false, unknownId, extra);
    }

    static bool IsSingleCodePoint(string s) =>
        s.Length == 1 || (s.Length == 2 && char.IsHighSurrogate(s[0]) && char.IsLowSurrogate(s[1]));

    static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    bool TryMerge(int left, int right, out int rank, out int merged)
    {
        if (_merges.TryGetValue(Key(left, right), out long v))
        {
            rank = (int)(v >> 32);
            merged = (int)v;
            return true;
        }
        rank = int.MaxValue;
        merged = -1;
        return false;
    }

    /// <summary>Appends the ids of one pre-tokenized word.</summary>
    public void Encode(ReadOnlySpan<char> word, List<int> output)
    {
        if (word.IsEmpty) return;
        if (!SegmentsAtMetaspace)
        {
            EncodeCached(word, output);
            return;
        }
        int start = 0;
        for (int i = 1; i < word.Length; i++)
            if (word[i] == '\u2581' && word[i - 1] != '\u2581')
            {
                EncodeCached(word[start..i], output);
                start = i;
            }
        EncodeCached(word[start..], output);
    }

    void EncodeCached(ReadOnlySpan<char> word, List<int> output)
    {
        bool cacheable = word.Length <= MaxCachedWordLength;
        if (cacheable && _cacheLookup.TryGetValue(word, out var cached))
        {
            if (cached.Length == 1) output.Add(cached[0]);
            else
            {
                int n = output.Count;
                CollectionsMarshal.SetCount(output, n + cached.Length);
                cached.CopyTo(CollectionsMarshal.AsSpan(output)[n..]);
            }
            return;
        }
        int before = output.Count;
        EncodeUncached(word, output);
        if (cacheable)
        {
            // Counted here because ConcurrentDictionary.Count takes every lock of the table.
            if (_cacheCount >= MaxCacheEntries)
            {
                _cache.Clear();
                _cacheCount = 0;
            }
            if (_cacheLookup.TryAdd(word, CollectionsMarshal.AsSpan(output)[before..].ToArray())) Interlocked.Increment(ref _cacheCount);
        }
    }

    void EncodeUncached(ReadOnlySpan<char> word, List<int> output)
    {
        int maxSymbols = Input == BpeInput.ByteLevel || ByteFallback ? Encoding.UTF8.GetMaxByteCount(word.Length) : word.Length;
        var pool = ArrayPool<int>.Shared;
        int[] ids = pool.Rent(maxSymbols), starts = pool.Rent(maxSymbols), ends = pool.Rent(maxSymbols);
        try
        {
            int count = Input switch
            {
                BpeInput.ByteLevel => ByteLevelSymbols(word, ids, output),
                BpeInput.Characters => CharacterSymbols(word, ids, output),
                _ => SentencePieceSymbols(word, ids, starts, ends),
            };
            if (count <= 0) return; // whole word found directly (ignore_merges) or nothing to encode
            count = count <= NaiveMergeLimit ? MergeLinear(ids, starts, ends, count) : MergeWithHeap(ids, starts, ends, count);
            if (Input != BpeInput.SentencePiece)
            {
                for (int i = 0; i < count; i++) output.Add(ids[i]);
                return;
            }
            for (int i = 0; i < count; i++)
            {
                if (ids[i] >= 0 && ids[i] < _vocab.Count) output.Add(ids[i]);
                else AddBytes(word[starts[i]..ends[i]], output);
            }
        }
        finally
        {
            pool.Return(ids);
            pool.Return(starts);
            pool.Return(ends);
        }
    }

    /// <summary>Byte tokens for text no token covers (unknown token where a byte token is missing).</summary>
    void AddBytes(ReadOnlySpan<char> text, List<int> output)
    {
        Span<byte> bytes = stackalloc byte[8];
        int n = Encoding.UTF8.GetBytes(text, bytes);
        for (int i = 0; i < n; i++)
        {
            int id = _byteTokenIds[bytes[i]];
            if (id >= 0) output.Add(id);
            else if (UnknownId is int unk) output.Add(unk);
        }
    }

    int ByteLevelSymbols(ReadOnlySpan<char> word, int[] ids, List<int> output)
    {
        byte[]? rented = null;
        int maxBytes = Encoding.UTF8.GetMaxByteCount(word.Length);
        Span<byte> bytes = maxBytes <= 512 ? stackalloc byte[maxBytes] : (rented = ArrayPool<byte>.Shared.Rent(maxBytes));
        try
        {
            int n = Encoding.UTF8.GetBytes(word, bytes);
            if (IgnoreMerges)
            {
                char[]? rentedChars = null;
                Span<char> mapped = n <= 512 ? stackalloc char[n] : (rentedChars = ArrayPool<char>.Shared.Rent(n));
                for (int i = 0; i < n; i++) mapped[i] = ByteLevelAlphabet.CharOfByte[bytes[i]];
                bool whole = _vocab.TryGetId(mapped[..n], out int id);
                if (rentedChars != null) ArrayPool<char>.Shared.Return(rentedChars);
                if (whole)
                {
                    output.Add(id);
                    return 0;
                }
            }
            for (int i = 0; i < n; i++) ids[i] = _byteLevelIds[bytes[i]];
            return n;
        }
        finally
        {
            if (rented != null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Hugging Face BPE's initial symbols: each character's token, else its byte tokens (byte_fallback, when all
    /// exist), else the unknown token (consecutive unknowns fused into one with fuse_unk), else nothing.</summary>
    int CharacterSymbols(ReadOnlySpan<char> word, int[] ids, List<int> output)
    {
        if (IgnoreMerges && _vocab.TryGetId(word, out int whole))
        {
            output.Add(whole);
            return 0;
        }
        int count = 0;
        bool pendingUnknown = false;
        Span<byte> bytes = stackalloc byte[4];
        for (int i = 0; i < word.Length;)
        {
            var ch = CharacterAt(word, i);
            i += ch.Length == 1 && char.IsSurrogate(word[i]) ? 1 : ch.Length;
            if (_vocab.TryGetId(ch, out int id))
            {
                if (pendingUnknown) { ids[count++] = UnknownId!.Value; pendingUnknown = false; }
                ids[count++] = id;
                continue;
            }
            if (ByteFallback)
            {
                int n = Encoding.UTF8.GetBytes(ch, bytes);
                bool all = true;
                for (int b = 0; b < n; b++) all &= _byteTokenIds[bytes[b]] >= 0;
                if (all)
                {
                    if (pendingUnknown) { ids[count++] = UnknownId!.Value; pendingUnknown = false; }
                    for (int b = 0; b < n; b++) ids[count++] = _byteTokenIds[bytes[b]];
                    continue;
                }
            }
            if (UnknownId is int unk)
            {
                if (pendingUnknown && !FuseUnknown) ids[count++] = unk;
                pendingUnknown = true;
            }
        }
        if (pendingUnknown) ids[count++] = UnknownId!.Value;
        return count;
    }

    int SentencePieceSymbols(ReadOnlySpan<char> word, int[] ids, int[] starts, int[] ends)
    {
        int count = 0;
        for (int i = 0; i < word.Length;)
        {
            var ch = CharacterAt(word, i);
            int length = ch.Length == 1 && char.IsSurrogate(word[i]) ? 1 : ch.Length;
            ids[count] = _vocab.TryGetId(ch, out int id) ? id : _extraLookup.TryGetValue(ch, out id) ? id : -1;
            starts[count] = i;
            ends[count] = i + length;
            count++;
            i += length;
        }
        return count;
    }

    /// <summary>The character at <paramref name="i"/>; a lone surrogate reads as U+FFFD, which is what it becomes in
    /// UTF-8 (and so in the byte-level and byte-fallback paths).</summary>
    static ReadOnlySpan<char> CharacterAt(ReadOnlySpan<char> word, int i)
    {
        CharClass.CodePointAt(word, i, out int length);
        return length == 1 && char.IsSurrogate(word[i]) ? "\uFFFD" : word.Slice(i, length);
    }

    /// <summary>Repeatedly merges the lowest-ranked (then leftmost) pair, scanning a compact array.</summary>
    int MergeLinear(int[] ids, int[] starts, int[] ends, int count)
    {
        Span<int> rank = stackalloc int[NaiveMergeLimit];
        Span<int> merged = stackalloc int[NaiveMergeLimit];
        for (int i = 0; i + 1 < count; i++) TryMerge(ids[i], ids[i + 1], out rank[i], out merged[i]);
        while (count > 1)
        {
            int best = -1, bestRank = int.MaxValue;
            for (int i = 0; i + 1 < count; i++)
                if (rank[i] < bestRank) { bestRank = rank[i]; best = i; }
            if (best < 0) break;
            ids[best] = merged[best];
            ends[best] = ends[best + 1];
            int tail = count - best - 2; // symbols after the removed one
            Array.Copy(ids, best + 2, ids, best + 1, tail);
            Array.Copy(starts, best + 2, starts, best + 1, tail);
            Array.Copy(ends, best + 2, ends, best + 1, tail);
            for (int i = best + 1; i + 1 < count - 1; i++) { rank[i] = rank[i + 1]; merged[i] = merged[i + 1]; }
            count--;
            if (best + 1 < count) TryMerge(ids[best], ids[best + 1], out rank[best], out merged[best]);
            else rank[best] = int.MaxValue;
            if (best > 0) TryMerge(ids[best - 1], ids[best], out rank[best - 1], out merged[best - 1]);
        }
        return count;
    }

    struct Candidate
    {
        public int Rank, Position, Left, Right;
        public bool Before(in Candidate other) => Rank < other.Rank || (Rank == other.Rank && Position < other.Position);
    }

    /// <summary>The same order with a linked list and a binary heap of candidate pairs (stale ones skipped when
    /// popped), for long words such as a whole SentencePiece paragraph.</summary>
    int MergeWithHeap(int[] ids, int[] starts, int[] ends, int count)
    {
        var pool = ArrayPool<int>.Shared;
        int[] next = pool.Rent(count), prev = pool.Rent(count);
        var heap = ArrayPool<Candidate>.Shared.Rent(count * 2);
        int heapSize = 0;
        try
        {
            for (int i = 0; i < count; i++) { prev[i] = i - 1; next[i] = i + 1 < count ? i + 1 : -1; }
            void Push(int position, int left, int right, ref Candidate[] h, ref int size)
            {
                if (!TryMerge(left, right, out int r, out _)) return;
                if (size == h.Length)
                {
                    var bigger = ArrayPool<Candidate>.Shared.Rent(size * 2);
                    Array.Copy(h, bigger, size);
                    ArrayPool<Candidate>.Shared.Return(h);
                    h = bigger;
                }
                var c = new Candidate { Rank = r, Position = position, Left = left, Right = right };
                int k = size++;
                while (k > 0)
                {
                    int parent = (k - 1) >> 1;
                    if (!c.Before(h[parent])) break;
                    h[k] = h[parent];
                    k = parent;
                }
                h[k] = c;
            }
            for (int i = 0; i + 1 < count; i++) Push(i, ids[i], ids[i + 1], ref heap, ref heapSize);
            while (heapSize > 0)
            {
                var top = heap[0];
                var last = heap[--heapSize];
                int k = 0;
                while (true)
                {
                    int child = 2 * k + 1;
                    if (child >= heapSize) break;
                    if (child + 1 < heapSize && heap[child + 1].Before(heap[child])) child++;
                    if (!heap[child].Before(last)) break;
                    heap[k] = heap[child];
                    k = child;
                }
                if (heapSize > 0) heap[k] = last;

                int p = top.Position, q = next[p];
                if (ids[p] != top.Left || q < 0 || ids[q] != top.Right) continue; // stale: a side has merged since
                TryMerge(ids[p], ids[q], out _, out int m);
                ids[p] = m;
                ends[p] = ends[q];
                ids[q] = int.MinValue; // removed
                next[p] = next[q];
                if (next[q] >= 0) prev[next[q]] = p;
                if (prev[p] >= 0) Push(prev[p], ids[prev[p]], ids[p], ref heap, ref heapSize);
                if (next[p] >= 0) Push(p, ids[p], ids[next[p]], ref heap, ref heapSize);
            }
            int n = 0;
            for (int i = 0; i >= 0; i = next[i])
            {
                ids[n] = ids[i];
                starts[n] = starts[i];
                ends[n] = ends[i];
                n++;
            }
            return n;
        }
        finally
        {
            pool.Return(next);
            pool.Return(prev);
            ArrayPool<Candidate>.Shared.Return(heap);
        }
    }

    /// <summary>Hashes a (left, right) pair key well: long's own hash is left ^ right, which collides heavily for ids
    /// below 2^17 (every pair and its mirror, and most pairs with equal xor).</summary>
    sealed class PairComparer : IEqualityComparer<long>
    {
        public static readonly PairComparer Instance = new();
        public bool Equals(long a, long b) => a == b;
        public int GetHashCode(long key) => (int)(((ulong)key * 0x9E3779B97F4A7C15UL) >> 32);
    }
}
