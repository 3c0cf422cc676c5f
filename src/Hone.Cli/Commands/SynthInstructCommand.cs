using System.CommandLine;
using Hone.Synthesis;

namespace Hone.Cli.Commands;

/// <summary><c>hone synth instruct</c>: synthetic instruction data from a teacher (the work is in Hone.Workflows' Synthesis).</summary>
internal static class SynthInstructCommand
{
    public static Command Create()
    {
        var teacher = new Option<string?>("--teacher") { Description = "the teacher: a local model (Hugging Face folder or .gguf)" };
        var teacherAdapter = new Option<string?>("--teacher-adapter") { Description = "an adapter for the local teacher (PEFT folder or GGUF)" };
        var teacherEndpoint = new Option<string?>("--teacher-endpoint") { Description = "the teacher as an OpenAI-compatible endpoint (http://host:port/v1), instead of --teacher" };
        var teacherModel = new Option<string?>("--teacher-model") { Description = "the model name to ask the teacher endpoint for" };
        var judge = new Option<string?>("--judge") { Description = "--verify judge: a local judge model (default: the teacher)" };
        var judgeAdapter = new Option<string?>("--judge-adapter") { Description = "an adapter for the local judge" };
        var judgeEndpoint = new Option<string?>("--judge-endpoint") { Description = "--verify judge: the judge as an OpenAI-compatible endpoint" };
        var judgeModel = new Option<string?>("--judge-model") { Description = "the model name to ask the judge endpoint for" };
        var apiKey = new Option<string?>("--api-key") { Description = $"bearer key for the endpoints (default: ${Hone.Clients.OpenAiEndpoint.ApiKeyVariable}, else none)" };
        var seeds = new Option<string>("--seeds") { Description = "seed conversations, JSONL: messages, conversations (ShareGPT), instruction/output or prompt/completion records; " +
                                                                 "an \"id\" names a seed, a \"facts\" (or \"target\", \"expected\") field is its facts target", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "kept examples, JSONL {\"messages\", \"provenance\"} (written under a temporary name, renamed when complete)", Required = true };
        var count = new Option<int>("--count", "-n") { Description = "examples to generate, kept and dropped together; example i derives from seed i mod seeds", DefaultValueFactory = _ => 100 }.Within(1, 10_000_000);
        var keptPerSeed = new Option<int?>("--kept-per-seed") { Description = "stop deriving from a seed once this many of its examples are kept, so the seeds the teacher finds easy do not crowd out the others; the run ends when every seed has its share (default: no limit)" }.Within(1, 10_000_000);
        var answerSamples = new Option<int>("--answer-samples") { Description = "answer each new instruction this many times (self-consistency) and keep the example, with its first answer, only when every answer passes every verifier: catches instructions that drifted from their seed's meaning but got one answer stating the seed's fact", DefaultValueFactory = _ => 1 }.Within(1, 100);
        var mode = new Option<string>("--mode") { Description = "self-instruct: ask for a new request after k seed requests; evol: rewrite one seed request by an operation", DefaultValueFactory = _ => "evol" }
            .AcceptOnlyFromAmong("self-instruct", "evol");
        var operations = new Option<string[]>("--operations") { Description = "evol: the operations drawn from, comma-separated or repeated: " + string.Join(", ", SynthPrompts.Operations.Select(o => o.Name)) + " (default: all)" };
        var examples = new Option<int>("--examples", "-k") { Description = "self-instruct: seed requests shown per new request", DefaultValueFactory = _ => 3 }.Within(1, 100);
        var temperature = new Option<float>("--temperature") { Description = "the teacher's sampling temperature (instructions and answers; the judge is greedy)", DefaultValueFactory = _ => 0.7f }.Within(0, 2);
        var topP = new Option<float>("--top-p") { Description = "the teacher's nucleus sampling", DefaultValueFactory = _ => 0.95f }.Within(0, 1, minExclusive: true);
        var instructionTokens = new Option<int>("--instruction-tokens") { Description = "most tokens of a new instruction", DefaultValueFactory = _ => 64 }.Within(1, 100_000);
        var answerTokens = new Option<int>("--answer-tokens") { Description = "most tokens of an answer", DefaultValueFactory = _ => 128 }.Within(1, 100_000);
        var verify = new Option<string[]>("--verify")
        {
            Description = "a check every kept example passes (repeatable; run in order, the first failure drops the example): facts (the facts checker: every \"contains\" string verbatim, " +
                          "\"regex\" matches, no \"forbidden\" pattern, with the target from the seed the example derives from), regex:PATTERN (the answer matches), " +
                          "json-schema:FILE (the answer is JSON the schema allows), command:FILE (an eval command checker, JSON as in a task's checker; " +
                          "templates see the seed's fields, {instruction}, {answer}), judge:RUBRIC or judge:@FILE (a model answers PASS or FAIL)",
        };
        var decontaminate = new Option<string[]>("--decontaminate") { Description = "evaluation files (JSONL, CSV, text): drop examples sharing a word n-gram with them (repeatable)" };
        var decontaminateNgram = new Option<int>("--decontaminate-ngram") { Description = "the word n-gram length (13 as GPT-3); evaluation texts shorter than n words are matched whole against the new instruction", DefaultValueFactory = _ => 13 }.Within(1, 1000);
        var dedup = new Option<string>("--dedup") { Description = "compare new instructions (before answering), whole examples, or nothing with the seeds and the kept examples", DefaultValueFactory = _ => "instruction" }
            .AcceptOnlyFromAmong("instruction", "example", "off");
        var near = new Option<double>("--near-threshold") { Description = "near duplicates: MinHash Jaccard estimate of character 5-grams at or over this (1 = exact duplicates only, after lowercasing and deleting punctuation)", DefaultValueFactory = _ => 0.8 }.Within(0, 1, minExclusive: true);
        var seed = new Option<ulong>("--seed", "-s") { Description = "random seed: every choice and sampling seed of example i comes from (seed, i)", DefaultValueFactory = _ => 1UL };
        var report = new Option<string?>("--report") { Description = "also write the report as JSON here" };
        var allowNetwork = new Option<bool>("--allow-network") { Description = "let command verifiers reach the network" };
        var allowUnsandboxed = new Option<bool>("--allow-unsandboxed-commands") { Description = "where no sandbox can be made, run command verifiers anyway with only resource limits" };
        var threads = CliSupport.Threads();
        var context = CliSupport.Context();
        var json = CliSupport.Json();
        var cmd = new Command("instruct",
            "New instruction data from a teacher (a local model, with an adapter, or an OpenAI-compatible endpoint), each example verified.\n" +
            "Example i derives from seed i mod seeds. The teacher gets one user message through its chat template:\n" +
            $"  self-instruct: \"{SynthPrompts.SelfInstructHeader}\\n1. …\\n2. …\\n3. …\\n\\n{SynthPrompts.SelfInstructRequest}\"\n" +
            string.Concat(SynthPrompts.Operations.Select(o => $"  evol {o.Name}: \"{o.Request.Replace("\n", "\\n", StringComparison.Ordinal)}\"\n")) +
            "Its reply (trimmed, a leading number or \"Request:\" label and quotes removed) is the new instruction; the teacher then answers it " +
            "under the seed's system message. A judge gets the system message \"" + SynthPrompts.JudgeSystem + "\" and \"" +
            SynthPrompts.JudgeRequest.Replace("\n", "\\n", StringComparison.Ordinal) + "\"; a reply starting with PASS passes.\n" +
            "Dropped, for the first reason met: " + string.Join(", ", InstructSynthesis.DropReasons) + ", failed_VERIFIER, " + InstructSynthesis.InconsistentAnswers + " (--answer-samples). " +
            "The report (stdout, --report) counts generated = kept + dropped, and kept per seed. A teacher that fails on each of the first " +
            $"{InstructSynthesis.FailFastErrors} examples stops the run. An interrupted run writes nothing; rerun it (same seed, same output).")
        {
            teacher, teacherAdapter, teacherEndpoint, teacherModel, judge, judgeAdapter, judgeEndpoint, judgeModel, apiKey, seeds, output, count, mode,
            operations, examples, temperature, topP, instructionTokens, answerTokens, verify, decontaminate, decontaminateNgram, dedup, near, seed, report,
            allowNetwork, allowUnsandboxed, keptPerSeed, answerSamples, threads, context, json,
        };
        cmd.SetAction(r => CliSupport.GuardInterruptible(cancel =>
        {
            var options = new InstructSynthesisOptions(r.GetValue(seeds)!, r.GetValue(output)!, r.GetValue(count),
                r.GetValue(mode) == "evol" ? SynthMode.Evol : SynthMode.SelfInstruct,
                (r.GetValue(operations) ?? []).SelectMany(x => x.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToList(),
                r.GetValue(examples), r.GetValue(temperature), r.GetValue(topP), r.GetValue(instructionTokens), r.GetValue(answerTokens),
                (r.GetValue(verify) ?? []).Select(SynthVerifierSpec.Parse).ToList(), r.GetValue(decontaminate) ?? [], r.GetValue(decontaminateNgram),
                Enum.Parse<SynthDedup>(r.GetValue(dedup)!, ignoreCase: true), r.GetValue(near), r.GetValue(seed), r.GetValue(report),
                r.GetValue(allowNetwork), r.GetValue(allowUnsandboxed), r.GetValue(keptPerSeed), r.GetValue(answerSamples));
            foreach (var op in options.Operations!) SynthPrompts.Operation(op);
            if (!File.Exists(options.Seeds)) throw new FileNotFoundException($"--seeds {options.Seeds}: file not found", options.Seeds);
            bool wantsJudge = options.Verify!.Any(v => v.Kind == "judge");
            using var teacherChat = Open("--teacher", r.GetValue(teacher), r.GetValue(teacherAdapter), r.GetValue(teacherEndpoint), r.GetValue(teacherModel),
                r.GetValue(apiKey), r.GetValue(context), r.GetValue(threads), required: true)!;
            using var judgeChat = wantsJudge
                ? Open("--judge", r.GetValue(judge), r.GetValue(judgeAdapter), r.GetValue(judgeEndpoint), r.GetValue(judgeModel), r.GetValue(apiKey),
                    r.GetValue(context), r.GetValue(threads), required: false)
                : null;
            if (!wantsJudge && (r.GetValue(judge) ?? r.GetValue(judgeEndpoint)) != null) throw new ArgumentException("--judge and --judge-endpoint are for --verify judge:RUBRIC");
            var result = InstructSynthesis.Run(options, teacherChat, judgeChat, message => Console.Error.WriteLine(message), cancel);
            Console.WriteLine(r.GetValue(json) ? result.ToJson().ToJsonString(new() { WriteIndented = true }) : result.ToString());
            return 0;
        }));
        return cmd;
    }

    /// <summary>A local model or an endpoint, as the options name one; null when none is named and none is required.</summary>
    static SynthChat? Open(string option, string? model, string? adapter, string? endpoint, string? endpointModel, string? apiKey, int context, int threads, bool required)
    {
        if (endpoint != null)
        {
            if (model != null) throw new ArgumentException($"{option} and {option}-endpoint name two models: give one");
            if (adapter != null) throw new ArgumentException($"{option}-adapter applies to a local model; an endpoint serves its adapters by name ({option}-model NAME)");
            if (endpointModel == null) throw new ArgumentException($"{option}-endpoint needs {option}-model: the model name the endpoint serves");
            return SynthChat.Endpoint(endpoint, endpointModel, apiKey, $"{option}-endpoint");
        }
        if (endpointModel != null) throw new ArgumentException($"{option}-model names the model of {option}-endpoint; a local model is {option} PATH");
        if (model == null)
        {
            if (adapter != null) throw new ArgumentException($"{option}-adapter needs {option} MODEL");
            return required ? throw new ArgumentException("a teacher is needed: --teacher MODEL [--teacher-adapter DIR] or --teacher-endpoint URL --teacher-model NAME") : null;
        }
        return SynthChat.Local(model, adapter, context, threads);
    }
}
