using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tokenization;
using Xunit;

namespace Hone.Tests.Infrastructure;

/// <summary>Models and datasets are found the same way by every command (Checkpoint.ResolvePath, DataPath.Resolve).</summary>
public class InputResolutionTests
{
    [Fact]
    public void A_model_is_a_gguf_file_an_hf_directory_or_a_folder_holding_one_gguf()
    {
        using var dir = new TempDirectory();
        var one = Directory.CreateDirectory(dir.File("one")).FullName;
        File.WriteAllText(Path.Combine(one, "model-q4_0.gguf"), "");
        File.WriteAllText(Path.Combine(one, "README.md"), "");
        Assert.Equal(Path.Combine(one, "model-q4_0.gguf"), Checkpoint.ResolvePath(one));

        var two = Directory.CreateDirectory(dir.File("two")).FullName;
        File.WriteAllText(Path.Combine(two, "a.gguf"), "");
        File.WriteAllText(Path.Combine(two, "b.gguf"), "");
        var e = Assert.Throws<ModelFormatException>(() => Checkpoint.ResolvePath(two));
        Assert.Contains("holds 2 .gguf files and no config.json; name one: a.gguf, b.gguf", e.Message);

        var none = Directory.CreateDirectory(dir.File("none")).FullName;
        Assert.Contains("config.json is missing (a Hugging Face model directory) and the folder holds no .gguf file",
            Assert.Throws<ModelFormatException>(() => Checkpoint.ResolvePath(none)).Message);

        var hf = Directory.CreateDirectory(dir.File("hf")).FullName;
        File.WriteAllText(Path.Combine(hf, "config.json"), "{}");
        File.WriteAllText(Path.Combine(hf, "extra.gguf"), "");
        Assert.Equal(hf, Checkpoint.ResolvePath(hf));          // config.json wins: it is a Hugging Face directory
        Assert.Equal(dir.File("x.gguf"), Checkpoint.ResolvePath(dir.File("x.gguf")));

        // Opening goes through the same resolution: the real model in a folder of its own opens.
        var folder = Directory.CreateDirectory(dir.File("tiny")).FullName;
        using (var source = Checkpoint.Open(TinyChatModel.Path))
        using (var weights = LlamaWeights.Load(source))
            Hone.Transforms.ModelConverter.Write(weights, source, Path.Combine(folder, "tiny.gguf"), null, new List<string>());
        using var opened = Checkpoint.Open(folder);
        Assert.Equal(Path.Combine(folder, "tiny.gguf"), opened.Path);
    }

    [Fact]
    public void A_dataset_is_a_file_or_a_folder_holding_one_record_file()
    {
        using var dir = new TempDirectory();
        var one = Directory.CreateDirectory(dir.File("one")).FullName;
        File.WriteAllText(Path.Combine(one, "data.csv"), "a,b\n1,2\n");
        File.WriteAllText(Path.Combine(one, "LICENSE.txt"), "");
        File.WriteAllText(Path.Combine(one, "README.md"), "");
        Assert.Equal(Path.Combine(one, "data.csv"), DataPath.Resolve(one, DataPath.RecordExtensions));

        File.WriteAllText(Path.Combine(one, "more.jsonl"), "");
        var e = Assert.Throws<DataFormatException>(() => DataPath.Resolve(one, DataPath.RecordExtensions));
        Assert.Contains("the folder holds 2 data files; name one: data.csv, more.jsonl", e.Message);
        Assert.Contains("holds no data file", Assert.Throws<DataFormatException>(() => DataPath.Resolve(Directory.CreateDirectory(dir.File("e")).FullName, [".jsonl"])).Message);
        Assert.Contains("no such file or folder", Assert.Throws<FileNotFoundException>(() => DataPath.Resolve(dir.File("missing"), [".jsonl"])).Message);
    }

    [Fact]
    public void Csv_rows_are_records_and_question_answer_pairs_are_conversations()
    {
        using var dir = new TempDirectory();
        var csv = dir.File("qa.csv");
        File.WriteAllText(csv, "instruction,intent,response\n\"Where is my order, please?\",track,\"It ships\ntomorrow.\"\nshort row\n");
        var records = RecordFile.Records(csv, textDocuments: false).ToList();
        Assert.Equal(2, records.Count);
        Assert.Equal(2, records[0].Line);
        var messages = ChatConversation.ToMessages(records[0].Record!, csv, records[0].Line);
        Assert.Equal("Where is my order, please?", (string)messages[0]!["content"]!);
        Assert.Equal("It ships\ntomorrow.", (string)messages[1]!["content"]!);
        Assert.Equal(4, records[1].Line);
        Assert.Contains("1 cells where the header has 3", records[1].Error);

        var pair = ChatConversation.ToMessages(new JsonObject { ["question"] = "Q?", ["answer"] = "A." }, "x", 1);
        Assert.Equal(["user", "assistant"], pair.Select(m => (string)m!["role"]!));
        Assert.Throws<DataFormatException>(() => ChatConversation.ToMessages(new JsonObject { ["prompt"] = "no answer" }, "x", 1));
    }

    [Fact]
    public void A_chat_format_name_stands_for_the_models_own_template_of_that_format()
    {
        var tokenizer = Tokenizer.FromHuggingFaceDirectory(TinyChatModel.Path);  // Hone's format: <|user|>…<|end|>
        var (_, name) = ChatConversation.ResolveTemplate(tokenizer, "phi");
        Assert.Contains("from the model", name);
        Assert.Contains("the model's own chat template is not of that format", Assert.Throws<ArgumentException>(() => ChatConversation.ResolveTemplate(tokenizer, "llama3")).Message);
        Assert.Contains("nor a chat format name", Assert.Throws<FileNotFoundException>(() => ChatConversation.ResolveTemplate(tokenizer, "vicuna")).Message);
    }
}
