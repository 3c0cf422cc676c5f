using Hone.Formats;
using Hone.Model;

namespace Hone.Transforms;

/// <summary>Carries tokenizer files along with conversions.</summary>
internal static class TokenizerBridge
{
    static readonly string[] HuggingFaceTokenizerFiles =
        ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "tokenizer.model"];

    /// <summary>Write the tokenizer of a Hugging Face directory into GGUF metadata; false when there is none.</summary>
    public static bool TryWriteGguf(Checkpoint source, GgufWriter writer, List<string> notes)
    {
        if (source.Directory == null || !File.Exists(Path.Combine(source.Directory, "tokenizer.json"))) return false;
        var tokenizer = Tokenization.Tokenizer.FromHuggingFaceDirectory(source.Directory);
        tokenizer.WriteGgufMetadata(writer);
        notes.Add($"tokenizer: {tokenizer.VocabSize} tokens from tokenizer.json written as GGUF metadata");
        return true;
    }

    public static void CopyHuggingFaceFiles(Checkpoint source, string outputDirectory, List<string> notes)
    {
        if (source.Directory == null)
        {
            notes.Add("the source is a GGUF file: its tokenizer stays in GGUF metadata and is not written as tokenizer.json");
            return;
        }
        foreach (var name in HuggingFaceTokenizerFiles)
        {
            var from = Path.Combine(source.Directory, name);
            if (File.Exists(from)) File.Copy(from, Path.Combine(outputDirectory, name), overwrite: true);
        }
    }
}
