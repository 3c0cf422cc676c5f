using System.CommandLine;
using System.Text.Json;
using Hone.Clients;
using Hone.Inference;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Cli.Commands;

internal static class BenchCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model", "-m") { Description = "benchmark this model (directory or .gguf) instead of random weights; with --serve, the model name to request (default: the first the server lists)" };
        var shape = new Option<string>("--shape") { Description = $"random-weight model shape: {string.Join(", ", ModelShapes.Names)}", DefaultValueFactory = _ => "smollm2-135m" };
        var type = CliSupport.MatrixType("weight type (random models default to f32)");
        var prompt = new Option<int>("--prompt", "-p") { Description = "prompt tokens processed in one batch (pp)", DefaultValueFactory = _ => 512 }.Within(1, 1 << 20);
        var gen = new Option<int>("--gen", "-n") { Description = "tokens generated one at a time (tg)", DefaultValueFactory = _ => 128 }.Within(1, 1 << 20);
        var reps = new Option<int>("--repetitions", "-r") { Description = "timed repetitions after a warm-up", DefaultValueFactory = _ => 3 }.Within(1, 10_000);
        var train = new Option<string?>("--train") { Description = "benchmark training instead: lora | dora | full | freeze (batch × seq-len tokens per step, fp32)" };
        var batch = TrainLimit(new Option<int>("--batch-size", "-b") { Description = "--train: sequences per step", DefaultValueFactory = _ => 4 }, "batch_size");
        var seqLen = TrainLimit(new Option<int>("--seq-len") { Description = "--train: tokens per sequence", DefaultValueFactory = _ => 256 }, "seq_len");
        var loraR = TrainLimit(new Option<int>("--lora-r", "--lora-rank") { Description = "--train: LoRA rank (alpha = 2r, all linear layers)", DefaultValueFactory = _ => 16 }, "lora_r");
        var checkpointActivations = new Option<bool>("--checkpoint-activations") { Description = "--train: recompute activations in backward" };
        var parallel = new Option<string?>("--parallel", "-npl")
        {
            Description = "benchmark the batched engine instead, like llama-batched-bench: for each N in this list (e.g. 1,4,16,64), N sequences " +
                          "with their own pp-token prompts and tg generated tokens at once; reports generated tokens/s over the whole run (prefill " +
                          "included) and in the decode phase",
        };
        var grammarCost = new Option<bool>("--grammar-cost")
        {
            Description = "measure constrained decoding instead: per grammar (a nested object schema, an enum-heavy schema, 10 tools in Hermes " +
                          "calls), the token-mask cost per generated token as a share of a decode step, cold and warm, and the compile time; " +
                          "random --shape weights with the vocabulary of --tokenizer",
        };
        var tokenizerPath = new Option<string?>("--tokenizer")
        {
            Description = "--grammar-cost: the tokenizer (a Hugging Face directory or tokenizer.json, a .gguf, or a folder with Llama 3's encoder.json and vocab.bpe)",
        };
        var outputs = new Option<int>("--outputs") { Description = "--grammar-cost: outputs per grammar (the first is cold)", DefaultValueFactory = _ => 8 }.Within(1, 10_000);
        var precision = CliSupport.Precision(measuring: false);
        var skip = new Option<float>("--moe-skip-threshold")
        {
            Description = "a mixture of experts: skip each token's routed experts after its first whose weight is under this (dynamic skipping; " +
                          "with normalized top-k the kept weights are rescaled to sum to 1); 0 = run every chosen expert",
        }.Within(0f, 1f);
        var cacheType = CliSupport.CacheType();
        cacheType.Description = "--parallel: " + cacheType.Description;
        var expertCache = new CliSupport.ExpertCacheOptions();
        var threads = CliSupport.Threads();
        var json = CliSupport.Json();
        var serve = new ServeOptions();
        var cmd = new Command("bench",
            "Measure prompt processing and generation speed (tokens/s), like llama-bench, with their ratios to this machine's FMA peak " +
            "and memory bandwidth, measured in the same run.\nProtocol: pp = one batch from an empty cache, logits for the last token; " +
            "tg = one token per step from an empty cache; mean ± sd of the repetitions after a warm-up.\n" +
            "With --serve URL it is a load generator for a running OpenAI-compatible server instead (hone serve, llama-server, vLLM): " +
            "streaming clients at each --clients level, reporting generated tokens/s, TTFT and TPOT p50/p99.\n" + ServeBenchmark.ProtocolText)
        {
            model, shape, type, prompt, gen, reps, train, batch, seqLen, loraR, checkpointActivations, parallel, grammarCost, tokenizerPath, outputs, precision, cacheType, skip, threads, json,
        };
        serve.AddTo(cmd);
        expertCache.AddTo(cmd);
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            if (r.GetValue(serve.Url) is string url)
            {
                foreach (var o in new Option[] { shape, type, prompt, gen, reps, train, batch, seqLen, loraR, checkpointActivations, parallel, precision, cacheType, threads })
                    if (Given(r, o)) throw new ArgumentException($"{o.Name} measures the engine in this process; it does not go with --serve");
                return ServeBench(r, url, serve, r.GetValue(model), r.GetValue(json));
            }
            foreach (var o in serve.Only)
                if (Given(r, o)) throw new ArgumentException($"{o.Name} goes with --serve URL");
            if (Given(r, cacheType) && r.GetValue(parallel) == null) throw new ArgumentException("--cache-type goes with --parallel");
            if (r.GetValue(grammarCost)) return GrammarBench(r, r.GetValue(tokenizerPath), shape, type, outputs, threads, json);
            if (Given(r, tokenizerPath) || Given(r, outputs)) throw new ArgumentException("--tokenizer and --outputs go with --grammar-cost");
            if (r.GetValue(train) is string method) return TrainBench(r, method, shape, batch, seqLen, loraR, reps, checkpointActivations, threads, json);
            if (r.GetValue(parallel) is string list) return ParallelBench(r, list, model, shape, type, prompt, gen, reps, precision, cacheType, threads, json);
            var options = new BenchOptions(r.GetValue(model), r.GetValue(shape)!, CliSupport.ParseType(r.GetValue(type)), r.GetValue(threads),
                r.GetValue(prompt), r.GetValue(gen), r.GetValue(reps), Precision: CliSupport.ParsePrecision(r.GetValue(precision)), ExpertSkipThreshold: r.GetValue(skip),
                ExpertCache: expertCache.Read(r));
            bool asJson = r.GetValue(json);
            var result = Benchmark.Run(options, m => Console.Error.WriteLine(m));
            if (asJson)
            {
                var o = new
                {
                    model = result.Model, type = result.Type, precision = result.Precision.Name(), threads = result.Threads, prompt = result.Prompt, gen = result.Gen,
                    parameters = result.Parameters, active_parameters = result.ActiveParameters, weight_bytes = result.WeightBytes,
                    prompt_tokens_per_s = result.PromptTokensPerSecond, prompt_tokens_per_s_sd = result.PromptStdDev,
                    gen_tokens_per_s = result.GenTokensPerSecond, gen_tokens_per_s_sd = result.GenStdDev,
                    prompt_flop_ratio = result.PromptFlopRatio, gen_bandwidth_ratio = result.GenBandwidthRatio,
                    prompt_bound_tokens_per_s = result.PromptBoundTokensPerSecond, gen_bound_tokens_per_s = result.GenBoundTokensPerSecond,
                    peak_gflops = result.Limits.PeakGflops, bandwidth_gb_s = result.Limits.BandwidthGBs, bandwidth_after_gb_s = result.BandwidthAfterGBs, vectors = result.Limits.Vectors,
                    protocol = result.Protocol, moe_skip_threshold = options.ExpertSkipThreshold, skipped_expert_share = result.SkippedExpertShare,
                    resident_bytes_after_tg = result.ResidentBytes,
                    expert_cache = result.GenCache == null ? null : new
                    {
                        policy = result.GenCache.Policy.ToString().ToLowerInvariant(), budget_bytes = result.GenCache.BudgetBytes, resident_experts = result.GenCache.Slots,
                        experts = result.GenCache.Experts, pp_hit_rate = result.PromptCache?.HitRate, tg_hit_rate = result.GenCache.HitRate,
                        pp_bytes_read = result.PromptCache?.BytesRead, tg_bytes_read = result.GenCache.BytesRead,
                    },
                };
                Console.WriteLine(JsonSerializer.Serialize(o, new JsonSerializerOptions { WriteIndented = true }));
                return 0;
            }
            Console.WriteLine($"model {result.Model}  type {result.Type}  precision {result.Precision.Name()}  threads {result.Threads}  parameters {result.Parameters:N0}{(result.ActiveParameters != result.Parameters ? $" ({result.ActiveParameters:N0} active per token)" : "")}  weights {CliSupport.Bytes(result.WeightBytes)}");
            Console.WriteLine($"machine: {result.Limits.PeakGflops:F0} GFLOP/s fp32 FMA peak, {result.Limits.BandwidthGBs:F1} GB/s read bandwidth before the runs, {result.BandwidthAfterGBs:F1} right after tg ({result.Limits.Vectors})");
            Console.WriteLine($"{"test",-8} {"tokens/s",14} {"bound",10} {"of bound",9}");
            Console.WriteLine($"{"pp" + result.Prompt,-8} {result.PromptTokensPerSecond,8:F1} ± {result.PromptStdDev,-4:F1} {result.PromptBoundTokensPerSecond,10:F0} {result.PromptFlopRatio,8:P0}  (FLOP peak)");
            Console.WriteLine($"{"tg" + result.Gen,-8} {result.GenTokensPerSecond,8:F1} ± {result.GenStdDev,-4:F1} {result.GenBoundTokensPerSecond,10:F0} {result.GenBandwidthRatio,8:P0}  (memory bandwidth)");
            if (result.GenCache is { } genCache)
                Console.WriteLine($"{genCache.Resident}; hit rate pp {result.PromptCache?.HitRate:P1}, tg {genCache.HitRate:P1}; resident set after tg {CliSupport.Bytes(result.ResidentBytes)}");
            if (options.ExpertSkipThreshold > 0) Console.WriteLine($"skipped {result.SkippedExpertShare:P1} of the routed expert evaluations (weight under {options.ExpertSkipThreshold})");
            Console.WriteLine(result.Protocol);
            return 0;
        }));
        return cmd;
    }

    static int ParallelBench(ParseResult r, string list, Option<string?> model, Option<string> shape, Option<string?> type, Option<int> prompt,
        Option<int> gen, Option<int> reps, Option<string> precision, Option<string> cacheType, Option<int> threads, Option<bool> json)
    {
        var counts = list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(x => int.TryParse(x, out int n) && n is >= 1 and <= 1024 ? n : throw new ArgumentException($"--parallel: expected whole numbers from 1 to 1024 separated by commas, found '{x}'"))
            .ToList();
        if (counts.Count == 0) throw new ArgumentException("--parallel: expected a list such as 1,4,16,64");
        var result = Hone.Batching.BatchBenchmark.Run(new Hone.Batching.BatchBenchOptions(r.GetValue(model), r.GetValue(shape)!, CliSupport.ParseType(r.GetValue(type)),
            r.GetValue(threads), counts, r.GetValue(prompt), r.GetValue(gen), r.GetValue(reps), Precision: CliSupport.ParsePrecision(r.GetValue(precision)),
            CacheType: CliSupport.ParseCacheType(r.GetValue(cacheType))), m => Console.Error.WriteLine(m));
        if (r.GetValue(json))
        {
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                model = result.Model, type = result.Type, threads = result.Threads, prompt = result.Prompt, gen = result.Gen, step_tokens = result.StepTokens,
                rows = result.Rows.Select(x => new
                {
                    parallel = x.Parallel, total_tokens_per_s = x.TotalTokensPerSecond, total_min = x.TotalMin, total_max = x.TotalMax,
                    decode_tokens_per_s = x.DecodeTokensPerSecond, decode_min = x.DecodeMin, decode_max = x.DecodeMax, prefill_s = x.PrefillSeconds, seconds = x.Seconds,
                }),
                protocol = result.Protocol,
            }, new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        }
        Console.WriteLine($"model {result.Model}  type {result.Type}  threads {result.Threads}  pp {result.Prompt}  tg {result.Gen}  step {result.StepTokens} rows");
        Console.WriteLine($"{"N",4} {"total t/s",10} {"(range)",17} {"decode t/s",11} {"(range)",17} {"prefill s",10}");
        foreach (var x in result.Rows)
            Console.WriteLine($"{x.Parallel,4} {x.TotalTokensPerSecond,10:F1} {$"{x.TotalMin:F1}–{x.TotalMax:F1}",17} {x.DecodeTokensPerSecond,11:F1} {$"{x.DecodeMin:F1}–{x.DecodeMax:F1}",17} {x.PrefillSeconds,10:F2}");
        Console.WriteLine(result.Protocol);
        return 0;
    }

    static bool Given(ParseResult r, Option o) => r.GetResult(o) is { Implicit: false };

    static int GrammarBench(ParseResult r, string? tokenizerPath, Option<string> shape, Option<string?> type, Option<int> outputs, Option<int> threads, Option<bool> json)
    {
        if (tokenizerPath == null) throw new ArgumentException("--grammar-cost needs --tokenizer (the vocabulary decides the mask's cost)");
        var tokenizer = LoadTokenizer(tokenizerPath);
        var result = GrammarBenchmark.Run(new GrammarBenchOptions(tokenizer, tokenizerPath, r.GetValue(shape)!, CliSupport.ParseType(r.GetValue(type)),
            r.GetValue(threads), r.GetValue(outputs)), m => Console.Error.WriteLine(m));
        if (r.GetValue(json))
        {
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                model = result.Model, tokenizer = result.TokenizerName, vocabulary = result.Vocabulary, threads = result.Threads, vocabulary_index_ms = result.VocabularyMs,
                cases = result.Cases.Select(c => new
                {
                    name = c.Name, compile_ms = c.CompileMs, outputs = c.Outputs, tokens = c.Tokens, completed = c.Completed, decode_ms_per_token = c.DecodeMsPerToken,
                    mask_ms_per_token_cold = c.MaskMsPerTokenCold, mask_ms_per_token_warm = c.MaskMsPerTokenWarm, mask_ms_per_token_all = c.MaskMsPerTokenAll,
                    share_cold = c.ShareCold, share_warm = c.ShareWarm, share_all = c.ShareAll, sample_ms_per_token = c.SampleMsPerToken, masks_computed = c.MasksComputed,
                }),
                protocol = GrammarBenchResult.Protocol,
            }, new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        }
        Console.WriteLine($"model {result.Model}  tokenizer {result.TokenizerName} ({result.Vocabulary} tokens)  threads {result.Threads}  vocabulary index {result.VocabularyMs:F0} ms");
        Console.WriteLine($"{"grammar",-26} {"compile ms",10} {"decode ms",10} {"mask µs cold",13} {"share",7} {"mask µs warm",13} {"share",7} {"masks",6} {"tokens",7}");
        foreach (var c in result.Cases)
            Console.WriteLine($"{c.Name,-26} {c.CompileMs,10:F1} {c.DecodeMsPerToken,10:F2} {c.MaskMsPerTokenCold * 1000,13:F0} {c.ShareCold,7:P1} {c.MaskMsPerTokenWarm * 1000,13:F0} {c.ShareWarm,7:P1} {c.MasksComputed,6} {c.Tokens,7}");
        Console.WriteLine(GrammarBenchResult.Protocol);
        return 0;
    }

    static Hone.Tokenization.Tokenizer LoadTokenizer(string path)
    {
        if (File.Exists(path) && path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
        {
            using var gguf = Hone.Formats.GgufFile.Open(path);
            return Hone.Tokenization.Tokenizer.FromGguf(gguf);
        }
        if (File.Exists(path)) return Hone.Tokenization.Tokenizer.FromHuggingFace(path);
        if (!Directory.Exists(path)) throw new FileNotFoundException($"{path}: no tokenizer file or folder there", path);
        if (File.Exists(Path.Combine(path, "tokenizer.json"))) return Hone.Tokenization.Tokenizer.FromHuggingFaceDirectory(path);
        if (File.Exists(Path.Combine(path, "encoder.json")) && File.Exists(Path.Combine(path, "vocab.bpe")))
            return Hone.Tokenization.Tokenizer.FromLlama3Files(Path.Combine(path, "encoder.json"), Path.Combine(path, "vocab.bpe"));
        throw new FileNotFoundException($"{path}: holds no tokenizer.json, nor Llama 3's encoder.json and vocab.bpe", path);
    }

    /// <summary>The load generator's options (bench --serve).</summary>
    sealed class ServeOptions
    {
        public readonly Option<string?> Url = new("--serve") { Description = "drive this OpenAI-compatible server (http://host:port) with streaming clients instead of running a model here" };
        public readonly Option<string> Clients = new("--clients") { Description = "--serve: numbers of concurrent clients, one level after another", DefaultValueFactory = _ => "1,4,16,64" };
        public readonly Option<int> Requests = new Option<int>("--requests") { Description = "--serve: requests each client sends, one after another", DefaultValueFactory = _ => 4 }.Within(1, 1_000_000);
        public readonly Option<int> PromptTokens = new Option<int>("--prompt-tokens") { Description = "--serve: prompt length to aim for (the server's usage count is reported)", DefaultValueFactory = _ => 128 }.Within(1, 1 << 20);
        public readonly Option<int> GenTokens = new Option<int>("--gen-tokens") { Description = "--serve: max_tokens of each request", DefaultValueFactory = _ => 128 }.Within(1, 1 << 20);
        public readonly Option<string?> ApiKey = new("--api-key") { Description = "--serve: bearer token (default: the HONE_API_KEY environment variable, if set)" };
        public readonly Option<string> Endpoint = new("--endpoint") { Description = "--serve: chat (/v1/chat/completions) or completions (/v1/completions)", DefaultValueFactory = _ => "chat" };
        public readonly Option<bool> IgnoreEos = new("--ignore-eos") { Description = "--serve: send ignore_eos (llama.cpp, vLLM) so that every request generates --gen-tokens" };
        public readonly Option<int> Timeout = new Option<int>("--request-timeout") { Description = "--serve: seconds one request may take, stream included", DefaultValueFactory = _ => 600 }.Within(1, 86_400);

        public Option[] Only => [Clients, Requests, PromptTokens, GenTokens, ApiKey, Endpoint, IgnoreEos, Timeout];

        public void AddTo(Command c)
        {
            c.Options.Add(Url);
            foreach (var o in Only) c.Options.Add(o);
        }
    }

    static int ServeBench(ParseResult r, string url, ServeOptions o, string? model, bool asJson)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var server)) throw new ArgumentException($"--serve: '{url}' is not an address (http://host:port)");
        var clients = new List<int>();
        foreach (var part in r.GetValue(o.Clients)!.Split(',', StringSplitOptions.TrimEntries))
            clients.Add(int.TryParse(part, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n)
                ? n : throw new ArgumentException($"--clients: '{part}' is not a whole number (give e.g. 1,4,16,64)"));
        var endpoint = r.GetValue(o.Endpoint) switch
        {
            "chat" => ServeEndpoint.Chat,
            "completions" => ServeEndpoint.Completions,
            var e => throw new ArgumentException($"--endpoint: '{e}' is not chat or completions"),
        };
        var options = new ServeBenchOptions(server, clients, r.GetValue(o.Requests), r.GetValue(o.PromptTokens), r.GetValue(o.GenTokens), model,
            r.GetValue(o.ApiKey) ?? Environment.GetEnvironmentVariable("HONE_API_KEY"), endpoint, r.GetValue(o.IgnoreEos), TimeSpan.FromSeconds(r.GetValue(o.Timeout)));
        options.Validate();
        using var cancel = CliSupport.CancelOnCtrlC();
        var result = ServeBenchmark.RunAsync(options, m => Console.Error.WriteLine(m), cancel.Token).GetAwaiter().GetResult();
        if (asJson)
        {
            Console.WriteLine(JsonSerializer.Serialize(result, CliSupport.JsonOptions));
            return result.Levels.Any(l => l.Failed > 0) ? 1 : 0;
        }
        Console.WriteLine($"server {result.Server}  model {result.Model}  {result.Endpoint}  {result.RequestsPerClient} requests per client, prompt ~{result.PromptTokens} tokens, max_tokens {result.GenTokens}");
        Console.WriteLine($"{"clients",7} {"requests",8} {"failed",6} {"gen tok/s",10} {"req/s",7} {"TTFT p50",9} {"TTFT p99",9} {"TPOT p50",9} {"TPOT p99",9} {"prompt",7} {"gen",6}");
        foreach (var l in result.Levels)
            Console.WriteLine($"{l.Clients,7} {l.Requests,8} {l.Failed,6} {l.GeneratedTokensPerSecond,10:F1} {l.RequestsPerSecond,7:F2} {Ms(l.TtftP50Seconds),9} {Ms(l.TtftP99Seconds),9} " +
                              $"{Ms(l.TpotP50Seconds),9} {Ms(l.TpotP99Seconds),9} {l.MeanPromptTokens,7:F1} {l.MeanGeneratedTokens,6:F1}");
        foreach (var l in result.Levels.Where(l => l.Failed > 0))
            Console.Error.WriteLine($"warning: {l.Failed} of {l.Requests} requests failed at {l.Clients} clients; the first: {l.FirstError}");
        Console.WriteLine("(TTFT/TPOT in ms; prompt and gen are mean tokens per request, from the server's usage)");
        Console.WriteLine(result.Protocol);
        return result.Levels.Any(l => l.Failed > 0) ? 1 : 0;

        static string Ms(double seconds) => double.IsNaN(seconds) ? "-" : (seconds * 1000).ToString("F1", System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>The limits `hone train` has for the same setting (one source: <see cref="Hone.Training.TrainOptions.Settings"/>).</summary>
    static Option<int> TrainLimit(Option<int> option, string key)
    {
        var s = Hone.Training.TrainOptions.Setting(key)!;
        return option.Within(s.Min, s.Max, s.MinExclusive, s.MaxExclusive, s.LimitReason);
    }

    static int TrainBench(ParseResult r, string method, Option<string> shape, Option<int> batch, Option<int> seqLen, Option<int> loraR,
        Option<int> reps, Option<bool> checkpointActivations, Option<int> threads, Option<bool> json)
    {
        var m = Enum.TryParse<Hone.Training.TrainingMethod>(method, true, out var parsed) && parsed != Hone.Training.TrainingMethod.QLora ? parsed
            : throw new ArgumentException($"--train: unknown method '{method}' (lora, dora, full, freeze)");
        var result = Hone.Training.TrainingBenchmark.Run(new Hone.Training.TrainingBenchOptions(r.GetValue(shape)!, m, r.GetValue(batch), r.GetValue(seqLen),
            r.GetValue(reps), r.GetValue(threads), r.GetValue(loraR), r.GetValue(checkpointActivations)), s => Console.Error.WriteLine(s));
        if (r.GetValue(json))
        {
            Console.WriteLine(new System.Text.Json.Nodes.JsonObject
            {
                ["shape"] = result.Shape, ["method"] = result.Method, ["threads"] = result.Threads, ["batch"] = result.Batch, ["seq_len"] = result.Sequence,
                ["parameters"] = result.Parameters, ["trainable_parameters"] = result.TrainableParameters,
                ["tokens_per_s"] = result.TokensPerSecond, ["flops_per_token"] = result.FlopsPerToken, ["flop_ratio"] = result.FlopRatio,
                ["bound_tokens_per_s"] = result.BoundTokensPerSecond, ["peak_rss_bytes"] = result.PeakRssBytes, ["peak_gflops"] = result.Limits.PeakGflops,
            }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        }
        Console.WriteLine($"train {result.Method} on random {result.Shape}: {result.TrainableParameters:N0} of {result.Parameters:N0} parameters train, batch {result.Batch} x {result.Sequence}, {result.Threads} threads");
        Console.WriteLine($"{result.TokensPerSecond:F1} tokens/s (FLOP bound {result.BoundTokensPerSecond:F0}, {result.FlopRatio:P0} of the {result.Limits.PeakGflops:F0} GFLOP/s peak), peak RSS {CliSupport.Bytes(result.PeakRssBytes)}");
        return 0;
    }
}
