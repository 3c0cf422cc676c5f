using System.CommandLine;
using Hone.Server;

namespace Hone.Cli.Commands;

/// <summary><c>hone serve</c>: the OpenAI-compatible HTTP server (the logic is Hone.Server's).</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var model = new ModelInput("a Hugging Face model directory, a .gguf file, or a folder holding one");
        var adapters = new Option<string[]>("--adapter")
        {
            Description = "serve an adapter as NAME=PATH (a PEFT directory or a llama.cpp LoRA .gguf); requests pick it with \"model\": \"NAME\" (repeatable)",
            AllowMultipleArgumentsPerToken = false,
        };
        var allowLoading = new Option<bool>("--allow-adapter-loading")
        {
            Description = "let callers load and unload adapters while serving (vLLM's /v1/load_lora_adapter and /v1/unload_lora_adapter); off by " +
                          "default, since a caller then chooses a path the server reads",
        };
        var router = new Option<string?>("--router")
        {
            Description = "a request router (hone router build): requests for the model \"auto\" go to the adapter (or the base) whose example prompts lie " +
                          "nearest to the prompt's embedding; the response names the model that answered",
        };
        var host = new Option<string>("--host") { Description = "address to listen on (loopback by default; 0.0.0.0 for every interface)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0 = any free port)", DefaultValueFactory = _ => 8080 }.Within(0, 65535);
        var parallel = new Option<int>("--parallel", "-np") { Description = "sequences generated at once (one KV cache each)", DefaultValueFactory = _ => 4 }.Within(1, 1024);
        var queue = new Option<int>("--queue-limit") { Description = "requests that may wait for a free sequence; past this the server answers 429", DefaultValueFactory = _ => 64 }.Within(0, 1_000_000);
        var ctx = CliSupport.Context();
        // Unlike llama-server's -c (one cache split among the slots), each sequence gets this many tokens of its own.
        ctx.Description = "tokens per sequence, prompt and output (each of the --parallel sequences has a KV cache this long; 0 = the model's context, at most 4096)";
        var threads = CliSupport.Threads();
        var precision = CliSupport.Precision(measuring: false);
        var cacheType = CliSupport.CacheType();
        var template = new Option<string?>("--template")
        {
            Description = "a Jinja chat template file to use instead of the model's (tools and tool calls are rendered as this template does)",
        };
        var apiKey = new Option<string?>("--api-key") { Description = "require 'Authorization: Bearer KEY' on every request but /health" };
        var apiKeyFile = new Option<string?>("--api-key-file") { Description = "read the API key from this file (its first line), so it stays out of the process list" };
        var cmd = new Command("serve", "Serve a model over HTTP with OpenAI's API (/v1/chat/completions with tools and JSON Schema output, /v1/completions, /v1/embeddings, /v1/models), " +
                                       "vLLM's adapter loading, llama.cpp's /tokenize and /detokenize, /health and Prometheus /metrics. Ctrl-C stops it.")
        {
            adapters, allowLoading, router, host, port, parallel, queue, ctx, threads, precision, cacheType, template, apiKey, apiKeyFile,
        };
        model.AddTo(cmd);
        var expertCache = new CliSupport.ExpertCacheOptions();
        expertCache.AddTo(cmd);
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            string? key = r.GetValue(apiKey);
            if (r.GetValue(apiKeyFile) is string keyFile)
            {
                if (key != null) throw new ArgumentException("give --api-key or --api-key-file, not both");
                key = File.ReadLines(keyFile).FirstOrDefault()?.Trim();
                if (string.IsNullOrEmpty(key)) throw new ArgumentException($"{keyFile}: the API key file is empty");
            }
            var options = new ServerOptions
            {
                ModelPath = model.Read(r)!,
                Adapters = (r.GetValue(adapters) ?? []).Select(ParseAdapter).ToList(),
                AllowAdapterLoading = r.GetValue(allowLoading), Router = r.GetValue(router),
                Host = r.GetValue(host)!, Port = r.GetValue(port), Parallel = r.GetValue(parallel), QueueLimit = r.GetValue(queue),
                Context = r.GetValue(ctx), Threads = r.GetValue(threads), Precision = CliSupport.ParsePrecision(r.GetValue(precision)),
                CacheType = CliSupport.ParseCacheType(r.GetValue(cacheType)), ApiKey = key, ChatTemplate = r.GetValue(template),
                ExpertCache = expertCache.Read(r),
            };
            using var cancel = CliSupport.CancelOnCtrlC(terminateToo: true);
            return Run(options, cancel.Token).GetAwaiter().GetResult();
        }));
        return cmd;
    }

    static (string Name, string Path) ParseAdapter(string value)
    {
        int eq = value.IndexOf('=');
        if (eq <= 0 || eq == value.Length - 1) throw new ArgumentException($"--adapter {value}: expected NAME=PATH");
        return (value[..eq], value[(eq + 1)..]);
    }

    static async Task<int> Run(ServerOptions options, CancellationToken cancel)
    {
        await using var server = await HoneServer.StartAsync(options, Console.Error, cancel);
        try { await server.Ready.WaitAsync(cancel); }
        catch (OperationCanceledException) { return 130; }
        // The load failed: Ready rethrows, and the guard prints the reason as for any command.
        await server.WaitAsync(cancel);
        Console.Error.WriteLine("hone serve: stopping");
        return 0;
    }
}
