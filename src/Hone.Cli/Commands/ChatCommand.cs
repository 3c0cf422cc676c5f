using System.CommandLine;
using System.Text.Json.Nodes;
using Hone.DataTools;
using Hone.Inference;
using Hone.Tokenization.Templates;
using Hone.Tokenization;

namespace Hone.Cli.Commands;

internal static class ChatCommand
{
    public static Command Create()
    {
        var model = new ModelInput("a Hugging Face model directory, a .gguf file, or a folder holding one");
        var system = new Option<string?>("--system") { Description = "a system message" };
        var template = new Option<string?>("--template") { Description = "a Jinja chat template file to use instead of the model's" };
        var adapter = new Option<string?>("--adapter") { Description = $"apply an adapter: a PEFT directory ({string.Join(", ", Hone.Model.AdapterKinds.Names)}) or a llama.cpp LoRA .gguf" };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "most tokens per reply", DefaultValueFactory = _ => 512 }.Within(0, int.MaxValue);
        var ctx = CliSupport.Context();
        var sampling = new SamplingOptions();
        var precision = CliSupport.Precision(measuring: false);
        var cacheType = CliSupport.CacheType();
        var expertCache = new CliSupport.ExpertCacheOptions();
        var threads = CliSupport.Threads();
        var cmd = new Command("chat", "Chat with a model using its chat template (or --template). Multi-turn; the KV cache is reused between turns.\n" +
                                      "Type a message and press Enter; /reset starts over, /exit (or end of input) quits.")
        {
            system, template, adapter, maxTokens, ctx, precision, cacheType, threads,
        };
        model.AddTo(cmd);
        expertCache.AddTo(cmd);
        sampling.AddTo(cmd);
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            var sampler = sampling.Read(r);
            var grammar = sampling.ReadGrammar(r);
            using var loaded = LoadedModel.Open(model.Read(r)!, r.GetValue(adapter), r.GetValue(threads), r.GetValue(ctx),
                precision: CliSupport.ParsePrecision(r.GetValue(precision)), cacheType: CliSupport.ParseCacheType(r.GetValue(cacheType)),
                expertCache: expertCache.Read(r));
            var (chatTemplate, templateName) = ChatConversation.ResolveTemplate(loaded.Tokenizer, r.GetValue(template));
            var generator = new Generator(loaded.Model, loaded.Tokenizer);
            var options = new GenerationOptions(r.GetValue(maxTokens), sampler, Grammar: grammar);
            var messages = new JsonArray();
            void Start()
            {
                messages.Clear();
                if (r.GetValue(system) is string s) messages.Add((JsonNode)new JsonObject { ["role"] = "system", ["content"] = s });
                generator.Reset();
            }
            Start();
            bool interactive = !Console.IsInputRedirected;
            Console.Error.WriteLine($"chat with {loaded.Checkpoint.Path} (template: {templateName}); /reset, /exit");
            while (true)
            {
                if (interactive) Console.Write("> ");
                string? line = Console.ReadLine();
                if (line == null || line.Trim() == "/exit") break;
                if (line.Trim() == "/reset") { Start(); Console.Error.WriteLine("(conversation reset)"); continue; }
                if (line.Trim().Length == 0) continue;
                messages.Add((JsonNode)new JsonObject { ["role"] = "user", ["content"] = line });
                var ids = Hone.Batching.ChatPrompt.Encode(loaded.Tokenizer, chatTemplate, messages);
                using var cancel = CliSupport.CancelOnCtrlC();
                var result = generator.Generate(ids, options, text => { Console.Write(text); Console.Out.Flush(); }, cancel.Token);
                Console.WriteLine();
                messages.Add((JsonNode)new JsonObject { ["role"] = "assistant", ["content"] = result.Text });
                Console.Error.WriteLine($"[{result.Ids.Length} tokens, {result.CachedPromptTokens} of {result.PromptTokens} prompt tokens reused from the cache, {result.GenerationTokensPerSecond:F1} t/s]");
                if (loaded.ExpertCache != null) Console.Error.WriteLine(loaded.ExpertCache.Statistics.Summary);
            }
            return 0;
        }));
        return cmd;
    }
}
