using System.Text;

namespace Hone.Tokenization;

/// <summary>The normalizers we implement (Hugging Face names).</summary>
enum NormalizerKind : byte { Prepend, Replace, Nfc }

/// <summary>One normalizer: <c>Prepend(A)</c>, <c>Replace(A → B)</c> (literal string pattern), or NFC.</summary>
readonly record struct NormalizerStep(NormalizerKind Kind, string A = "", string B = "")
{
    /// <param name="continuing">the text continues a segment already normalized (a piece of a long document after
    /// the first): Prepend, which Hugging Face applies once per segment, is left out</param>
    public static string Apply(IReadOnlyList<NormalizerStep> steps, string text, bool continuing = false)
    {
        foreach (var step in steps)
        {
            if (text.Length == 0) return text; // Prepend leaves an empty string empty; the others cannot grow it
            if (continuing && step.Kind == NormalizerKind.Prepend) continue;
            text = step.Kind switch
            {
                NormalizerKind.Prepend => step.A + text,
                NormalizerKind.Replace => text.Replace(step.A, step.B, StringComparison.Ordinal),
                _ => UnicodeNormalization.ToNfc(text),
            };
        }
        return text;
    }
}

/// <summary>Metaspace's <c>prepend_scheme</c>: add the replacement character in front of every piece, only in front
/// of the piece that starts the input, or never.</summary>
enum PrependScheme : byte { Always, First, Never }

/// <summary>The pre-tokenizer steps we implement.</summary>
enum PreTokenizerStepKind : byte
{
    /// <summary>Split into regex matches (Hugging Face Split with behavior Isolated, or ByteLevel with use_regex).</summary>
    Split,
    /// <summary>Digits: every numeric character alone (individual_digits) or runs of them apart from the rest.</summary>
    Digits,
    /// <summary>ByteLevel's add_prefix_space: a space in front of a piece that does not start with one.</summary>
    PrefixSpace,
    /// <summary>Metaspace: spaces become the replacement character, which is prepended per the scheme; with split,
    /// each replacement character starts a new piece.</summary>
    Metaspace,
}

readonly record struct PreTokenizerStep(PreTokenizerStepKind Kind, SplitPattern Pattern = SplitPattern.Gpt2, bool Flag = false,
    char Replacement = '\u2581', PrependScheme Scheme = PrependScheme.Always, bool FoldLongS = false)
{
    public static PreTokenizerStep SplitOn(SplitPattern pattern, bool foldLongS) => new(PreTokenizerStepKind.Split, pattern, FoldLongS: foldLongS);
    public static PreTokenizerStep Digits(bool individual) => new(PreTokenizerStepKind.Digits, Flag: individual);
    public static readonly PreTokenizerStep PrefixSpace = new(PreTokenizerStepKind.PrefixSpace);
    public static PreTokenizerStep Metaspace(char replacement, PrependScheme scheme, bool split) =>
        new(PreTokenizerStepKind.Metaspace, Flag: split, Replacement: replacement, Scheme: scheme);
}

/// <summary>The byte-level BPE families whose pre-tokenization we implement.</summary>
public enum PreTokenizerKind
{
    /// <summary>GPT-2's regex (GGUF pre "gpt-2").</summary>
    Gpt2,
    /// <summary>Llama 3's regex, with ignore_merges (GGUF pre "llama-bpe").</summary>
    Llama3,
    /// <summary>Qwen2's regex (GGUF pre "qwen2").</summary>
    Qwen2,
    /// <summary>Every digit alone, then GPT-2's regex (SmolLM, StarCoder; GGUF pre "smollm").</summary>
    SmolLM,
}

/// <summary>The pre-tokenizer kinds and the GGUF <c>tokenizer.ggml.pre</c> values llama.cpp maps onto the same split
/// (checked against llama.cpp's llama-vocab.cpp). Values mapped elsewhere by llama.cpp, or to other regexes, are refused.</summary>
static class PreTokenizerKinds
{
    public sealed record Row(PreTokenizerKind Kind, string GgufName, bool IgnoreMerges, bool AddsBosByDefault, string[] GgufAliases);

    public static readonly Row[] Table =
    [
        new(PreTokenizerKind.Gpt2, "gpt-2", false, false, ["gpt-2", "phi-2", "mpt", "olmo", "jais", "exaone4", "gigachat", "mellum", "trillion", "granite-docling"]),
        new(PreTokenizerKind.Llama3, "llama-bpe", true, true, ["llama-bpe", "llama3", "llama-v3", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"]),
        new(PreTokenizerKind.Qwen2, "qwen2", false, false, ["qwen2", "deepseek-r1-qwen", "stablelm2", "hunyuan", "megrez", "kormo"]),
        new(PreTokenizerKind.SmolLM, "smollm", false, false, ["smollm", "starcoder", "refact", "codeshell", "command-r", "exaone", "minerva-7b"]),
    ];

    public static Row Of(PreTokenizerKind kind) => Table.First(r => r.Kind == kind);

    public static PreTokenizerStep[] Steps(PreTokenizerKind kind, bool foldLongS) => kind switch
    {
        PreTokenizerKind.Gpt2 => [PreTokenizerStep.SplitOn(SplitPattern.Gpt2, false)],
        PreTokenizerKind.Llama3 => [PreTokenizerStep.SplitOn(SplitPattern.Llama3, foldLongS)],
        PreTokenizerKind.Qwen2 => [PreTokenizerStep.SplitOn(SplitPattern.Qwen2, foldLongS)],
        _ => [PreTokenizerStep.Digits(true), PreTokenizerStep.SplitOn(SplitPattern.Gpt2, false)],
    };

    /// <summary>The kind a pre-tokenizer pipeline is, if it is one of ours (used when writing GGUF).</summary>
    public static PreTokenizerKind? Recognize(IReadOnlyList<PreTokenizerStep> steps)
    {
        if (steps.Count == 1 && steps[0].Kind == PreTokenizerStepKind.Split)
            return steps[0].Pattern switch
            {
                SplitPattern.Gpt2 => PreTokenizerKind.Gpt2,
                SplitPattern.Llama3 => PreTokenizerKind.Llama3,
                _ => PreTokenizerKind.Qwen2,
            };
        if (steps.Count == 2 && steps[0] is { Kind: PreTokenizerStepKind.Digits, Flag: true }
            && steps[1] is { Kind: PreTokenizerStepKind.Split, Pattern: SplitPattern.Gpt2 })
            return PreTokenizerKind.SmolLM;
        return null;
    }
}
