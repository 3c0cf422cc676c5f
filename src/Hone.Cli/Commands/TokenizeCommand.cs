using System.CommandLine;
using System.Text.Json.Nodes;
using Hone.Model;

namespace Hone.Cli.Commands;

internal static class TokenizeCommand
{
    public static Command Create()
    {
        var model = new ModelInput("a Hugging Face model directory (tokenizer.json), a .gguf file, or a folder holding one");
        var text = new Option<string?>("--text") { Description = "the text to tokenize" };
        var file = new Option<string?>("--file", "-f") { Description = "read the text from this file" };
        var noSpecial = new Option<bool>("--no-special") { Description = "do not add BOS/EOS and do not parse special-token markers in the text" };
        var json = CliSupport.Json();
        var cmd = new Command("tokenize", "Show the token ids (and pieces) of a text. BOS is included when the tokenizer adds it.\n" +
                                          "JSON: {\"ids\": [...], \"pieces\": [...]}.")
        {
            text, file, noSpecial, json,
        };
        model.AddTo(cmd);
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            string input = r.GetValue(text) ?? (r.GetValue(file) is string f ? File.ReadAllText(f) : throw new ArgumentException("give --text or --file"));
            using var checkpoint = Checkpoint.Open(model.Read(r)!);
            var tokenizer = checkpoint.LoadTokenizer();
            bool special = !r.GetValue(noSpecial);
            var ids = tokenizer.Encode(input, addSpecialTokens: special, parseSpecialTokens: special);
            var pieces = ids.Select(tokenizer.TokenText).ToArray();
            if (r.GetValue(json))
            {
                Console.WriteLine(new JsonObject
                {
                    ["ids"] = new JsonArray(ids.Select(i => (JsonNode)i).ToArray()),
                    ["pieces"] = new JsonArray(pieces.Select(p => (JsonNode)p).ToArray()),
                }.ToJsonString());
                return 0;
            }
            for (int i = 0; i < ids.Length; i++) Console.WriteLine($"{ids[i],8}  {Escape(pieces[i])}");
            Console.Error.WriteLine($"{ids.Length} tokens");
            return 0;
        }));
        return cmd;
    }

    static string Escape(string s) => s.Replace("\n", "\\n").Replace("\t", "\\t").Replace("\r", "\\r");
}
