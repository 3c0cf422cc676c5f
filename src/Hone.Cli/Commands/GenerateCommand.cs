using System.CommandLine;
using System.Text.Json.Nodes;
using Hone.Inference;

namespace Hone.Cli.Commands;

internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = new ModelInput("a Hugging Face model directory, a .gguf file, or a folder holding one");
        var prompt = new Option<string>("--prompt", "-p") { Description = "the text to continue (empty: start from BOS)", DefaultValueFactory = _ => "" };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "most tokens to generate", DefaultValueFactory = _ => 128 }.Within(0, int.MaxValue);
        var stop = new Option<string[]>("--stop") { Description = "stop before this text (repeatable)", AllowMultipleArgumentsPerToken = false };
        var adapter = new Option<string?>("--adapter") { Description = $"apply an adapter: a PEFT directory ({string.Join(", ", Hone.Model.AdapterKinds.Names)}) or a llama.cpp LoRA .gguf" };
        var ctx = CliSupport.Context();
        var sampling = new SamplingOptions();
        var precision = CliSupport.Precision(measuring: false);
        var cacheType = CliSupport.CacheType();
        var expertCache = new CliSupport.ExpertCacheOptions();
        var threads = CliSupport.Threads();
        var json = CliSupport.Json();
        var cmd = new Command("generate", "Continue a prompt. Streams the text; --json prints {text, ids (generated only), finish_reason, timings}.")
        {
            prompt, maxTokens, stop, adapter, ctx, precision, cacheType, threads, json,
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
            var ids = loaded.EncodePrompt(r.GetValue(prompt)!);
            var generator = new Generator(loaded.Model, loaded.Tokenizer);
            bool asJson = r.GetValue(json);
            using var cancel = CliSupport.CancelOnCtrlC(terminateToo: true);
            var result = generator.Generate(ids, new GenerationOptions(r.GetValue(maxTokens), sampler, r.GetValue(stop), Grammar: grammar),
                asJson ? null : text => { Console.Write(text); Console.Out.Flush(); }, cancel.Token);
            if (asJson)
            {
                Console.WriteLine(new JsonObject
                {
                    ["text"] = result.Text,
                    ["ids"] = new JsonArray(result.Ids.Select(i => (JsonNode)i).ToArray()),
                    ["finish_reason"] = result.FinishReason,
                    ["prompt_tokens"] = result.PromptTokens,
                    ["generated_tokens"] = result.Ids.Length,
                    ["timings"] = new JsonObject
                    {
                        ["prompt_seconds"] = Math.Round(result.PromptSeconds, 6), ["generation_seconds"] = Math.Round(result.GenerationSeconds, 6),
                        ["prompt_tokens_per_s"] = Math.Round(result.PromptTokensPerSecond, 2), ["gen_tokens_per_s"] = Math.Round(result.GenerationTokensPerSecond, 2),
                    },
                    ["expert_cache"] = CliSupport.ExpertCacheJson(loaded.ExpertCache),
                }.ToJsonString());
                return 0;
            }
            Console.WriteLine();
            Console.Error.WriteLine($"[{result.Ids.Length} tokens, {result.FinishReason}; prompt {result.PromptTokensPerSecond:F1} t/s, generation {result.GenerationTokensPerSecond:F1} t/s]");
            if (loaded.ExpertCache != null) Console.Error.WriteLine(loaded.ExpertCache.Statistics.Summary);
            return 0;
        }));
        return cmd;
    }
}
