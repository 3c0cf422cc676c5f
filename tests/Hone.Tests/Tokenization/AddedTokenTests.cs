using System.Text.Json.Nodes;
using Hone.Tokenization;
using Xunit;

namespace Hone.Tests.Tokenization;

/// <summary>Added tokens as Hugging Face matches them: leftmost, then longest; lstrip / rstrip take the whitespace;
/// single_word only between non-word characters; normalized ones match the normalized text; special ones only when
/// special tokens are parsed.</summary>
public class AddedTokenTests
{
    // Byte-level ids are the bytes themselves ('a' = 97, space 'Ġ' = 32) unless merged.
    static int[] Bytes(string s) => System.Text.Encoding.UTF8.GetBytes(s).Select(b => (int)b).ToArray();

    [Fact]
    public void Leftmost_then_longest_match_wins()
    {
        var t = MiniTokenizers.Load(MiniTokenizers.ByteLevel().WithAdded("<a>", true).WithAdded("<a><b>", true).WithAdded("a><b", true));
        int ab = t.Id("<a><b>"), a = t.Id("<a>");
        Assert.Equal([.. Bytes("x"), ab, a], t.Encode("x<a><b><a>"));
    }

    [Fact]
    public void Special_tokens_are_text_unless_parsed_but_plain_added_tokens_always_match()
    {
        var t = MiniTokenizers.Load(MiniTokenizers.ByteLevel().WithAdded("<|eot|>", special: true).WithAdded("<tool>", special: false));
        int eot = t.Id("<|eot|>"), tool = t.Id("<tool>");
        Assert.Equal([eot, tool], t.Encode("<|eot|><tool>"));
        var unparsed = t.Encode("<|eot|><tool>", parseSpecialTokens: false);
        Assert.Equal(tool, unparsed[^1]);
        Assert.DoesNotContain(eot, unparsed);
        Assert.Equal("<|eot|><tool>", t.Decode(unparsed));
        Assert.Equal("<tool>", t.Decode([eot, tool], skipSpecialTokens: true)); // only special tokens are skipped
    }

    [Fact]
    public void Lstrip_and_rstrip_absorb_the_neighbouring_whitespace()
    {
        var t = MiniTokenizers.Load(MiniTokenizers.ByteLevel().WithAdded("<mask>", true, lstrip: true).WithAdded("<sep>", true, rstrip: true));
        int mask = t.Id("<mask>"), sep = t.Id("<sep>");
        Assert.Equal([.. Bytes("a"), mask, .. Bytes("b")], t.Encode("a  \t<mask>b"));
        Assert.Equal([.. Bytes("a"), sep, .. Bytes("b")], t.Encode("a<sep> \n b"));
        Assert.Equal([.. Bytes("a  "), sep], t.Encode("a  <sep>")); // a trailing rstrip token takes nothing before it
    }

    [Fact]
    public void Single_word_tokens_do_not_match_inside_words()
    {
        var t = MiniTokenizers.Load(MiniTokenizers.ByteLevel().WithAdded("cat", false, singleWord: true));
        int cat = t.Id("cat");
        Assert.DoesNotContain(cat, t.Encode("concatenate"));
        Assert.DoesNotContain(cat, t.Encode("cats"));
        Assert.Equal([.. Bytes("a "), cat, .. Bytes("!")], t.Encode("a cat!"));
        Assert.Equal([cat], t.Encode("cat"));
    }

    [Fact]
    public void Normalized_tokens_match_their_normalized_form_in_the_normalized_text()
    {
        // As in Llama 2's tokenizer.json: "<s>" is normalized, so it is matched as "▁<s>" after Prepend("▁").
        var json = MiniTokenizers.SentencePiece("▁ h", "▁h i");
        json["added_tokens"]![1]!["normalized"] = true;
        var t = MiniTokenizers.Load(json);
        // "<s>hi" normalizes to "▁<s>hi": the token takes the "▁", and "hi" is left without one.
        Assert.Equal([1, 1, t.Id("h"), t.Id("i")], t.Encode("<s>hi"));
        // "hi <s>" normalizes to "▁hi▁<s>": the space before the token goes with it.
        Assert.Equal([1, t.Id("▁hi"), 1], t.Encode("hi <s>"));
    }

    [Fact]
    public void Non_normalized_tokens_split_the_raw_text_and_each_piece_is_normalized_on_its_own()
    {
        var json = MiniTokenizers.SentencePiece("▁ h", "▁h i");
        var t = MiniTokenizers.Load(json); // "<s>" normalized: false
        int hi = t.Id("▁hi");
        Assert.Equal([1, 1, hi], t.Encode("<s>hi")); // "hi" alone gets its own "▁"
        Assert.Equal([1, hi, t.Id("▁"), 1], t.Encode("hi <s>"));
    }
}
