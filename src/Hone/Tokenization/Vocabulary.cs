namespace Hone.Tokenization;

/// <summary>Token strings by id and ids by string, with span lookups that do not allocate.</summary>
sealed class Vocabulary
{
    public string[] Pieces { get; }
    public TokenType[] Types { get; }
    readonly Dictionary<string, int> _ids;
    readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _spanIds;

    public Vocabulary(string[] pieces, TokenType[] types, Dictionary<string, int> ids)
    {
        Pieces = pieces;
        Types = types;
        _ids = ids;
        _spanIds = ids.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    public int Count => Pieces.Length;

    public bool TryGetId(string piece, out int id) => _ids.TryGetValue(piece, out id);
    public bool TryGetId(ReadOnlySpan<char> piece, out int id) => _spanIds.TryGetValue(piece, out id);
    public int? IdOf(string piece) => _ids.TryGetValue(piece, out int id) ? id : null;

    /// <summary>Ids of the byte-fallback tokens <c>&lt;0x00&gt;</c>..<c>&lt;0xFF&gt;</c> (upper-case hex, as SentencePiece
    /// and Hugging Face name them); -1 where the vocabulary lacks one.</summary>
    public int[] ByteTokenIds()
    {
        var ids = new int[256];
        for (int b = 0; b < 256; b++) ids[b] = _ids.TryGetValue($"<0x{b:X2}>", out int id) ? id : -1;
        return ids;
    }

    public static bool IsByteTokenText(string piece) =>
        piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
        && char.IsAsciiHexDigit(piece[3]) && char.IsAsciiHexDigit(piece[4]);
}
