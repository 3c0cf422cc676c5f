using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Tests.Infrastructure;
using Json.Schema;
using Xunit;

namespace Hone.Tests.Grammars;

public class GrammarCliTests
{
    const string Schema = """{"type": "object", "properties": {"order": {"type": "integer", "minimum": 1, "maximum": 99}, "status": {"enum": ["pending", "delivered"]}}, "required": ["order", "status"]}""";

    [Fact]
    public void Generate_with_a_json_schema_writes_valid_json_and_chat_too()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("schema.json"), Schema);
        var validator = JsonSchema.FromText(Schema);
        for (int seed = 1; seed <= 3; seed++)
        {
            var r = HoneCli.Run("generate", TinyChatModel.Path, "-p", "Order status:", "--json-schema", dir.File("schema.json"), "-n", "100",
                "--temperature", "1", "--top-k", "0", "--top-p", "1", "--min-p", "0", "--seed", seed.ToString(), "--json");
            Assert.True(r.ExitCode == 0, r.ToString());
            var result = JsonNode.Parse(r.Stdout)!;
            Assert.Equal("stop", result["finish_reason"]!.GetValue<string>());
            Assert.True(validator.Evaluate(JsonDocument.Parse(result["text"]!.GetValue<string>()).RootElement).IsValid, result["text"]!.GetValue<string>());
        }
        var chat = HoneCli.RunWithInput("Where is my order?\n/exit\n", "chat", TinyChatModel.Path, "--json-schema", dir.File("schema.json"), "-n", "100", "--seed", "5");
        Assert.True(chat.ExitCode == 0, chat.ToString());
        Assert.True(validator.Evaluate(JsonDocument.Parse(chat.Stdout.Trim()).RootElement).IsValid, chat.Stdout);
    }

    [Fact]
    public void A_bad_schema_or_grammar_file_is_one_error_line_naming_it()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("bad.json"), """{"type": "object", "properties": {"a": {"type": "string", "format": "hostname"}}}""");
        File.WriteAllText(dir.File("bad.gbnf"), "root ::= item\nitem ::= \"a\" (\"b\"\n");
        var schema = HoneCli.Run("generate", TinyChatModel.Path, "--json-schema", dir.File("bad.json"), "-n", "4");
        Assert.Equal(1, schema.ExitCode);
        Assert.Contains("bad.json: JSON Schema at #/properties/a/format: format 'hostname' is not enforced", schema.Stderr);
        var grammar = HoneCli.Run("generate", TinyChatModel.Path, "--grammar", dir.File("bad.gbnf"), "-n", "4");
        Assert.Equal(1, grammar.ExitCode);
        Assert.Contains("bad.gbnf:3:1: expected ')' to close the group opened at line 2 column 14", grammar.Stderr);
        var both = HoneCli.Run("generate", TinyChatModel.Path, "--grammar", dir.File("bad.gbnf"), "--json-schema", dir.File("bad.json"));
        Assert.Contains("not both", both.Stderr);
    }
}
