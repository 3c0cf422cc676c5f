namespace Hone.Tokenization;

/// <summary>
/// GPT-2's reversible byte ↔ character table: printable Latin-1 bytes stand for themselves, the other 68 bytes are
/// moved to U+0100.. so that every byte-level token is printable text.
/// </summary>
static class ByteLevelAlphabet
{
    public static readonly char[] CharOfByte = new char[256];
    /// <summary>Indexed by character; -1 for characters outside the alphabet.</summary>
    static readonly short[] ByteOfCharTable = new short[0x144];

    static ByteLevelAlphabet()
    {
        Array.Fill(ByteOfCharTable, (short)-1);
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            char c = printable ? (char)b : (char)next++;
            CharOfByte[b] = c;
            ByteOfCharTable[c] = (short)b;
        }
    }

    /// <summary>The byte a character stands for, or -1.</summary>
    public static int ByteOf(char c) => c < ByteOfCharTable.Length ? ByteOfCharTable[c] : -1;
}
