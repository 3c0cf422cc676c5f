using System.CommandLine;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Evaluation;
using Hone.Formats;
using Hone.Inference;
using Hone.Tensors;

namespace Hone.Cli.Commands;

internal static class PerplexityCommand
{
    public static Command Create()
    {
        var model = new ModelInput("a Hugging Face model directory, a .gguf file, or a folder holding one");
        var file = new Option<string?>("--file", "-f") { Description = "a UTF-8 text file (with --kl-divergence optional: the tokens come from the base file; if given, it must tokenize to them)" };
        var ctx = new Option<int>("--ctx", "-c") { Description = "window length in tokens (at most the model's context)", DefaultValueFactory = _ => 512 }.Within(2, int.MaxValue);
        var protocol = new Option<string?>("--protocol") { Description = "full | llama.cpp (see below; default full, llama.cpp with the KL-divergence options)" };
        var chunks = new Option<int?>("--chunks") { Description = "llama.cpp protocol: score at most this many chunks" }.Within(1, int.MaxValue);
        var klBase = new Option<string?>("--kl-divergence-base", "--kl-base")
        {
            Description = "FILE of the base model's token distributions (llama-perplexity's layout): written by a run without --kl-divergence, read with it",
        };
        var klCompare = new Option<bool>("--kl-divergence") { Description = "compare this model with the distributions in --kl-divergence-base FILE (KL divergence, Δp, same top token, PPL ratio)" };
        var stride = new Option<int?>("--stride") { Description = "full protocol: how far windows advance (default: ctx, no overlap)" }.Within(1, int.MaxValue);
        var adapter = new Option<string?>("--adapter") { Description = $"apply an adapter: a PEFT directory ({string.Join(", ", Hone.Model.AdapterKinds.Names)}) or a llama.cpp LoRA .gguf" };
        var precision = CliSupport.Precision(measuring: true);
        var skip = new Option<float>("--moe-skip-threshold")
        {
            Description = "a mixture of experts: skip each token's routed experts after its first whose weight is under this (dynamic skipping; " +
                          "with normalized top-k the kept weights are rescaled to sum to 1); 0 = run every chosen expert",
        }.Within(0f, 1f);
        var expertCache = new CliSupport.ExpertCacheOptions();
        var threads = CliSupport.Threads();
        var json = CliSupport.Json();
        var cmd = new Command("perplexity",
            "Perplexity and bits per byte of a text. Log-likelihoods accumulate in double.\n" +
            "Protocol full: BOS + the whole text, windows of ctx advancing by stride, every token after BOS scored once.\n" +
            "Protocol llama.cpp: as llama-perplexity — chunks of ctx tokens, each chunk's first token replaced by BOS (when the tokenizer adds one), positions ctx/2..ctx-2 scored.\n" +
            "KL divergence (as llama-perplexity): run the full-precision model with --kl-divergence-base FILE to record its token\n" +
            "distributions at the scored positions (llama.cpp protocol; about 2·vocabulary bytes per scored token), then run a compressed\n" +
            "model with --kl-divergence --kl-divergence-base FILE: the same tokens (ctx from the file) are scored and compared.\n" +
            "Base files are interchangeable with llama-perplexity's --kl-divergence-base files.\n" +
            "Precision: exact by default (fp32 activations; see --precision; fast matches llama.cpp's numerics).\n" +
            "JSON: ppl, bits_per_byte, tokens_scored, protocol, ctx, stride, nll, bytes_scored, precision (and kl_divergence_base when saving);\n" +
            "with --kl-divergence: ppl, ppl_base, ppl_ratio, ln_ppl_ratio, ppl_diff (each with _uncertainty), ln_ppl_correlation,\n" +
            "kld {mean, uncertainty, max, p99_9, p99, p95, p90, median, p10, p5, p1, p0_1, min}, delta_p {mean, uncertainty, rms,\n" +
            "rms_uncertainty, max, p99_9 .. p0_1, min; fractions, not percent}, same_top_p, same_top_p_uncertainty, tokens_scored, ctx, chunks.")
        {
            file, ctx, protocol, stride, chunks, klBase, klCompare, adapter, precision, skip, threads, json,
        };
        model.AddTo(cmd);
        expertCache.AddTo(cmd);
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            string? basePath = r.GetValue(klBase);
            bool compare = r.GetValue(klCompare);
            if (compare && basePath == null) throw new ArgumentException("--kl-divergence compares with a base file: give it with --kl-divergence-base FILE (written by a first run on the base model)");
            var kind = r.GetValue(protocol) switch
            {
                null => basePath != null ? PerplexityProtocol.LlamaCpp : PerplexityProtocol.Full,
                "full" => PerplexityProtocol.Full,
                "llama.cpp" or "llamacpp" => PerplexityProtocol.LlamaCpp,
                var other => throw new ArgumentException($"unknown protocol '{other}': use full or llama.cpp"),
            };
            if (basePath != null && kind != PerplexityProtocol.LlamaCpp)
                throw new ArgumentException("the KL-divergence base records the positions llama-perplexity scores (chunks of ctx, second half): use --protocol llama.cpp");
            if (kind == PerplexityProtocol.LlamaCpp && r.GetValue(stride) != null) throw new ArgumentException("--stride applies to the full protocol; the llama.cpp protocol's chunks do not overlap");
            if (kind == PerplexityProtocol.Full && r.GetValue(chunks) != null) throw new ArgumentException("--chunks applies to the llama.cpp protocol");
            var computePrecision = CliSupport.ParsePrecision(r.GetValue(precision));
            string? path = r.GetValue(file);
            if (path == null && !compare) throw new ArgumentException("give the text with --file (-f)");
            if (path != null && !File.Exists(path)) throw new FileNotFoundException($"{path}: file not found", path);
            KlBaseFile? baseFile = null;
            int context = r.GetValue(ctx);
            if (compare)
            {
                baseFile = KlBaseFile.Open(basePath!);
                if (r.GetResult(ctx) is { Implicit: false } && context != baseFile.Context)
                    throw new ArgumentException($"{basePath}: recorded with a context of {baseFile.Context} tokens, but --ctx is {context} (leave --ctx out: it comes from the file)");
                if (r.GetValue(chunks) != null) throw new ArgumentException($"--chunks applies when the base is recorded; {basePath} holds {baseFile.Chunks} chunks");
                context = baseFile.Context;
            }
            if (r.GetValue(stride) is int s && s > context) throw new ArgumentException($"--stride {s} is more than --ctx {context}");
            LoadedModel Open()
            {
                try
                {
                    return LoadedModel.Open(model.Read(r)!, r.GetValue(adapter), r.GetValue(threads), context, maxBatch: context, computePrecision,
                        expertCache: expertCache.Read(r));
                }
                catch (ArgumentException e) when (baseFile != null && e.Message.StartsWith($"--ctx {context} "))
                {
                    throw new DataFormatException(baseFile.Path, 0, $"recorded with a context of {context} tokens, more than the model's ({e.Message})");
                }
            }
            using var loaded = Open();
            float threshold = r.GetValue(skip);
            if (threshold > 0 && !loaded.Weights.Config.IsMixtureOfExperts) throw new ArgumentException("--moe-skip-threshold applies to mixtures of experts; this model is dense");
            loaded.Model.ExpertSkipThreshold = threshold;
            var bos = Perplexity.BosFor(kind, loaded.Tokenizer);
            if (baseFile != null)
            {
                var recorded = baseFile.Tokens;
                KlDivergence.CheckFits(baseFile, loaded.Model);
                if (path != null) CheckSameTokens(loaded.Tokenizer.Encode(File.ReadAllText(path), addSpecialTokens: false, parseSpecialTokens: false), bos, baseFile, path);
                var scored = bos != null ? recorded.AsSpan(1).ToArray() : recorded;
                long RecordedBytes(int start, int count) => Encoding.UTF8.GetByteCount(loaded.Tokenizer.Decode(scored.AsSpan(start, count)));
                var kl = KlDivergence.Compare(loaded.Model, baseFile, bos, RecordedBytes, CliSupport.Progress("kl-divergence"));
                if (r.GetValue(json)) Console.WriteLine(KlJson(kl, basePath!, computePrecision.Name(), loaded.AdapterPath).ToJsonString());
                else PrintKl(kl, basePath!, computePrecision.Name());
                return 0;
            }
            var tokens = loaded.Tokenizer.Encode(File.ReadAllText(path!), addSpecialTokens: false, parseSpecialTokens: false);
            long SpanBytes(int start, int count) => Encoding.UTF8.GetByteCount(loaded.Tokenizer.Decode(tokens.AsSpan(start, count)));
            var result = basePath != null
                ? KlDivergence.SaveBase(loaded.Model, tokens, bos, SpanBytes, context, r.GetValue(chunks), basePath, CliSupport.Progress("perplexity"))
                : Perplexity.Compute(loaded.Model, tokens, bos, SpanBytes, new PerplexityOptions(context, kind, r.GetValue(stride), r.GetValue(chunks)), CliSupport.Progress("perplexity"));
            if (r.GetValue(json))
            {
                Console.WriteLine(new JsonObject
                {
                    ["ppl"] = result.Perplexity, ["bits_per_byte"] = result.BitsPerByte, ["tokens_scored"] = result.TokensScored,
                    ["protocol"] = result.Protocol, ["ctx"] = result.Context, ["stride"] = result.Stride, ["nll"] = result.NegativeLogLikelihood,
                    ["bytes_scored"] = result.ScoredBytes, ["tokens"] = result.Tokens, ["adapter"] = loaded.AdapterPath,
                    ["precision"] = computePrecision.Name(),
                    ["moe_skip_threshold"] = threshold > 0 ? threshold : null,
                    ["skipped_expert_share"] = threshold > 0 ? (double)loaded.Model.SkippedExpertRuns / Math.Max(1, loaded.Model.RoutedExpertRuns) : null,
                    ["expert_cache"] = CliSupport.ExpertCacheJson(loaded.ExpertCache),
                    ["kl_divergence_base"] = basePath,
                }.ToJsonString());
                return 0;
            }
            Console.WriteLine($"perplexity {result.Perplexity:F4}  bits/byte {result.BitsPerByte:F4}  ({result.TokensScored:N0} tokens scored, protocol {result.Protocol}, ctx {result.Context}, precision {computePrecision.Name()})");
            if (threshold > 0)
                Console.WriteLine($"skipped {(double)loaded.Model.SkippedExpertRuns / Math.Max(1, loaded.Model.RoutedExpertRuns):P1} of {loaded.Model.RoutedExpertRuns:N0} routed expert evaluations (weight under {threshold})");
            if (loaded.ExpertCache != null) Console.WriteLine(loaded.ExpertCache.Statistics.Summary);
            if (basePath != null) Console.WriteLine($"base distributions of {result.TokensScored:N0} tokens written to {basePath}; compare a model with --kl-divergence --kl-divergence-base {basePath}");
            return 0;
        }));
        return cmd;
    }

    /// <summary>A text given with --kl-divergence must be the one the base was recorded on.</summary>
    static void CheckSameTokens(int[] tokens, int? bos, KlBaseFile baseFile, string path)
    {
        var recorded = baseFile.Tokens;
        int offset = bos != null ? 1 : 0;
        int n = Math.Min(recorded.Length - offset, tokens.Length);
        for (int i = 0; i < n; i++)
            if (tokens[i] != recorded[i + offset])
                throw new ArgumentException($"{path} is not the text {baseFile.Path} was recorded on: token {i + offset} is {tokens[i]} here, {recorded[i + offset]} there");
        if (n < recorded.Length - offset)
            throw new ArgumentException($"{path} is not the text {baseFile.Path} was recorded on: it has {tokens.Length + offset} tokens, the file {recorded.Length}");
    }

    static JsonObject Stats(KlDivergenceResult.Distribution d, bool quartiles)
    {
        var o = new JsonObject { ["max"] = d.Max, ["p99_9"] = d.P999, ["p99"] = d.P99, ["p95"] = d.P95, ["p90"] = d.P90 };
        if (quartiles) o["p75"] = d.P75;
        o["median"] = d.Median;
        if (quartiles) o["p25"] = d.P25;
        o["p10"] = d.P10; o["p5"] = d.P5; o["p1"] = d.P1; o["p0_1"] = d.P01; o["min"] = d.Min;
        return o;
    }

    static JsonObject KlJson(KlDivergenceResult k, string basePath, string precision, string? adapter)
    {
        var kld = Stats(k.Kld, quartiles: false);
        kld.Insert(0, "mean", k.KldMean);
        kld.Insert(1, "uncertainty", k.KldUncertainty);
        var dp = Stats(k.DeltaP, quartiles: true);
        dp.Insert(0, "mean", k.DeltaPMean);
        dp.Insert(1, "uncertainty", k.DeltaPUncertainty);
        dp.Insert(2, "rms", k.DeltaPRms);
        dp.Insert(3, "rms_uncertainty", k.DeltaPRmsUncertainty);
        return new JsonObject
        {
            ["kl_divergence_base"] = basePath, ["protocol"] = "llama.cpp", ["ctx"] = k.Context, ["chunks"] = k.Chunks, ["tokens_scored"] = k.Count,
            ["precision"] = precision, ["adapter"] = adapter,
            ["ppl"] = k.Ppl, ["ppl_uncertainty"] = k.PplUncertainty, ["ppl_base"] = k.PplBase, ["ppl_base_uncertainty"] = k.PplBaseUncertainty,
            ["ln_ppl_correlation"] = k.LnPplCorrelation, ["ln_ppl_ratio"] = k.LnPplRatio, ["ln_ppl_ratio_uncertainty"] = k.LnPplRatioUncertainty,
            ["ppl_ratio"] = k.PplRatio, ["ppl_ratio_uncertainty"] = k.PplRatioUncertainty, ["ppl_diff"] = k.PplDifference, ["ppl_diff_uncertainty"] = k.PplDifferenceUncertainty,
            ["kld"] = kld, ["delta_p"] = dp, ["same_top_p"] = k.SameTop, ["same_top_p_uncertainty"] = k.SameTopUncertainty,
        };
    }

    static void PrintKl(KlDivergenceResult k, string basePath, string precision)
    {
        Console.WriteLine($"KL divergence against {basePath}: {k.Count:N0} tokens scored in {k.Chunks} chunks of {k.Context} (protocol llama.cpp, precision {precision})");
        Console.WriteLine();
        Console.WriteLine("====== Perplexity statistics ======");
        Console.WriteLine($"Mean PPL(Q)                   : {k.Ppl,10:F6} ± {k.PplUncertainty,10:F6}");
        Console.WriteLine($"Mean PPL(base)                : {k.PplBase,10:F6} ± {k.PplBaseUncertainty,10:F6}");
        Console.WriteLine($"Cor(ln(PPL(Q)), ln(PPL(base))): {100 * k.LnPplCorrelation,6:F2}%");
        Console.WriteLine($"Mean ln(PPL(Q)/PPL(base))     : {k.LnPplRatio,10:F6} ± {k.LnPplRatioUncertainty,10:F6}");
        Console.WriteLine($"Mean PPL(Q)/PPL(base)         : {k.PplRatio,10:F6} ± {k.PplRatioUncertainty,10:F6}");
        Console.WriteLine($"Mean PPL(Q)-PPL(base)         : {k.PplDifference,10:F6} ± {k.PplDifferenceUncertainty,10:F6}");
        Console.WriteLine();
        Console.WriteLine("====== KL divergence statistics ======");
        var d = k.Kld;
        Console.WriteLine($"Mean    KLD: {k.KldMean,10:F6} ± {k.KldUncertainty,10:F6}");
        foreach (var (label, value) in new[] { ("Maximum", d.Max), ("99.9%  ", d.P999), ("99.0%  ", d.P99), ("95.0%  ", d.P95), ("90.0%  ", d.P90), ("Median ", d.Median),
                     ("10.0%  ", d.P10), (" 5.0%  ", d.P5), (" 1.0%  ", d.P1), (" 0.1%  ", d.P01), ("Minimum", d.Min) })
            Console.WriteLine($"{label} KLD: {value,10:F6}");
        Console.WriteLine();
        Console.WriteLine("====== Token probability statistics ======");
        var p = k.DeltaP;
        Console.WriteLine($"Mean    Δp: {100 * k.DeltaPMean,6:F3} ± {100 * k.DeltaPUncertainty,5:F3} %");
        foreach (var (label, value) in new[] { ("Maximum", p.Max), ("99.9%  ", p.P999), ("99.0%  ", p.P99), ("95.0%  ", p.P95), ("90.0%  ", p.P90), ("75.0%  ", p.P75),
                     ("Median ", p.Median), ("25.0%  ", p.P25), ("10.0%  ", p.P10), (" 5.0%  ", p.P5), (" 1.0%  ", p.P1), (" 0.1%  ", p.P01), ("Minimum", p.Min) })
            Console.WriteLine($"{label} Δp: {100 * value,6:F3}%");
        Console.WriteLine($"RMS Δp    : {100 * k.DeltaPRms,6:F3} ± {100 * k.DeltaPRmsUncertainty,5:F3} %");
        Console.WriteLine($"Same top p: {100 * k.SameTop,6:F3} ± {100 * k.SameTopUncertainty,5:F3} %");
    }
}
