using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Hone.Synthetic;
using Hone.Tokenization;

namespace Hone.Cli.Commands;

internal static class SynthCommand
{
    static readonly int DefaultConversations = new EcommerceOptions().Count;
    static readonly int DefaultVocabulary = new BpeTrainerOptions().VocabSize;
    static readonly string DefaultSize = $"{GeneralCorpus.DefaultBytes / 1_000_000}M";

    public static Command Create()
    {
        var cmd = new Command("synth", "Generate the quickstart's data: a general-English corpus, an e-commerce customer-service dataset " +
                                       "with verified answers and its evaluation task, and a byte-level BPE tokenizer; or (instruct) new instruction data " +
                                       "from a teacher model, filtered by verifiers; or (trajectories) a teacher agent's conversations on the agent benchmark, kept when its " +
                                       "grader passes them. Deterministic per seed.");
        cmd.Subcommands.Add(General());
        cmd.Subcommands.Add(Ecommerce());
        cmd.Subcommands.Add(TokenizerVerb());
        cmd.Subcommands.Add(SynthInstructCommand.Create());
        cmd.Subcommands.Add(SynthTrajectoriesCommand.Create());
        cmd.Subcommands.Add(PolicyUnlearningVerb());
        return cmd;
    }

    static Command PolicyUnlearningVerb()
    {
        var output = Out();
        var data = new Option<string>("--data") { Description = "the domain training conversations (JSONL {\"messages\"}), e.g. QUICKSTART/data/domain/train.filtered.jsonl", Required = true };
        var tasks = new Option<string>("--task-items") { Description = "the policy questions' items, e.g. QUICKSTART/data/domain/task-policies.jsonl", Required = true };
        var forget = new Option<string?>("--forget-topics")
        {
            Description = $"comma-separated policies to forget (default: every fourth, {string.Join(",", PolicyUnlearning.DefaultForgetTopics)}); known: {string.Join(", ", PolicyFaq.Topics.Select(t => t.Name))}",
        };
        var reference = new Option<string?>("--reference")
        {
            Description = "an eval results file (hone eval --out) of a model never trained on the forget policies, with truth_ratio_forget evaluated: " +
                          "truth_ratio_forget.json then also reports forget quality (KS test against it)",
        };
        var cmd = new Command("policy-unlearning", "An unlearning benchmark from the quickstart's store-policy data: the forget policies' training conversations " +
                                                   "(forget.jsonl), the other policies' (retain.jsonl), the training data without the forget set (train-without-forget.jsonl), the policy " +
                                                   "questions split the same way, TOFU-style truth-ratio items (the true fact against three wrong facts in the same answer wording), and " +
                                                   "task files for hone eval: policies_forget/retain.json (answer pass rate), forget/retain_perplexity.json, truth_ratio_forget/retain.json.")
        {
            output, data, tasks, forget, reference,
        };
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            var topics = r.GetValue(forget)?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            var files = PolicyUnlearning.Build(new PolicyUnlearningOptions(r.GetValue(data)!, r.GetValue(tasks)!, r.GetValue(output)!, topics, r.GetValue(reference)));
            Console.WriteLine($"forget: {string.Join(", ", files.ForgetTopics)} — {files.ForgetConversations} training conversations, {files.ForgetQuestions} questions");
            Console.WriteLine($"retain: {files.RetainConversations} policy conversations, {files.RetainQuestions} questions; {files.OtherConversations} other conversations kept in train-without-forget.jsonl");
            foreach (var f in files.Written) Console.WriteLine($"wrote {f}");
            return 0;
        }));
        return cmd;
    }

    static Option<string> Out() => new("--out", "-o") { Description = "output directory", Required = true };
    static Option<ulong> Seed() => new("--seed") { Description = "random seed", DefaultValueFactory = _ => 1UL };

    static Command General()
    {
        var output = Out();
        var seed = Seed();
        var size = new Option<string>("--size") { Description = "corpus size in bytes (suffix K or M allowed)", DefaultValueFactory = _ => DefaultSize };
        var heldOut = new Option<double>("--held-out") { Description = "fraction of documents held out (heldout.txt)", DefaultValueFactory = _ => 0.05 }.Within(0, 1, maxExclusive: true);
        var json = CliSupport.Json();
        var cmd = new Command("general", "Everyday English documents (stories, facts, dialogues, reports…) without e-commerce vocabulary.\n" +
                                         "Writes train.jsonl ({\"text\"} records for --stage cpt) and heldout.txt (documents separated by blank lines).")
        {
            output, seed, size, heldOut, json,
        };
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            var clock = Stopwatch.StartNew();
            var documents = GeneralCorpus.Generate(r.GetValue(seed), ParseSize(r.GetValue(size)!));
            double seconds = clock.Elapsed.TotalSeconds;
            var files = SyntheticFiles.WriteGeneral(documents, r.GetValue(output)!, r.GetValue(heldOut));
            var stats = CorpusStatistics.Measure(documents);
            if (r.GetValue(json))
            {
                Console.WriteLine(new JsonObject
                {
                    ["train"] = files.Train, ["heldout"] = files.HeldOut, ["train_documents"] = files.TrainDocuments, ["heldout_documents"] = files.HeldOutDocuments,
                    ["generate_seconds"] = Math.Round(seconds, 3), ["statistics"] = Statistics(stats),
                }.ToJsonString(new() { WriteIndented = true }));
                return 0;
            }
            Console.WriteLine($"general corpus: {files.TrainDocuments:N0} training documents → {files.Train}, {files.HeldOutDocuments:N0} held out → {files.HeldOut}");
            Console.WriteLine($"generated in {seconds:F2} s: {stats}");
            return 0;
        }));
        return cmd;
    }

    static Command Ecommerce()
    {
        var output = Out();
        var seed = Seed();
        var count = new Option<int>("--count", "-n") { Description = "conversations kept, training and held-out together", DefaultValueFactory = _ => DefaultConversations }
            .Within(1, 1_000_000, reason: "they are generated in memory");
        var heldOut = new Option<double>("--held-out") { Description = "fraction held out for evaluation", DefaultValueFactory = _ => 0.1 }.Within(0, 1, maxExclusive: true);
        var faultRate = new Option<double>("--fault-rate") { Description = "falsify this fraction of answers before verification, to see the verifier reject them (demonstration only)", DefaultValueFactory = _ => 0 }
            .Within(0, 1);
        var json = CliSupport.Json();
        var cmd = new Command("ecommerce", "Customer-service conversations over generated order records; every answer is checked against the order's facts " +
                                           "and discarded if wrong.\nWrites train.jsonl and heldout.jsonl ({\"messages\"} for --stage sft), eval.jsonl (the domain task: " +
                                           "prompt_messages and expected {contains, regex}) and heldout.txt (plain text for domain perplexity).")
        {
            output, seed, count, heldOut, faultRate, json,
        };
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            var clock = Stopwatch.StartNew();
            var data = EcommerceDataset.Generate(new EcommerceOptions(r.GetValue(seed), r.GetValue(count), r.GetValue(heldOut), FaultRate: r.GetValue(faultRate)));
            double seconds = clock.Elapsed.TotalSeconds;
            var files = SyntheticFiles.WriteEcommerce(data, r.GetValue(output)!);
            var answers = CorpusStatistics.Measure(data.Train.SelectMany(c => c.Messages.Where(m => m.Role == "assistant").Select(m => m.Content)));
            var questions = CorpusStatistics.Measure(data.Train.SelectMany(c => c.Messages.Where(m => m.Role == "user").Select(m => m.Content)));
            if (r.GetValue(json))
            {
                var rejections = new JsonObject();
                foreach (var (intent, n) in data.RejectionsByIntent) rejections[intent.ToString()] = n;
                Console.WriteLine(new JsonObject
                {
                    ["train"] = files.Train, ["heldout"] = files.HeldOut, ["eval"] = files.Evaluation, ["heldout_text"] = files.HeldOutText,
                    ["train_conversations"] = data.Train.Count, ["heldout_conversations"] = data.HeldOut.Count, ["eval_items"] = data.Evaluation.Count,
                    ["answers_written"] = data.AnswersWritten, ["answers_rejected"] = data.AnswersRejected, ["faults_injected"] = data.FaultsInjected,
                    ["rejections_by_intent"] = rejections, ["generate_seconds"] = Math.Round(seconds, 3),
                    ["answer_statistics"] = Statistics(answers), ["question_statistics"] = Statistics(questions),
                }.ToJsonString(new() { WriteIndented = true }));
                return 0;
            }
            Console.WriteLine($"e-commerce: {data.Train.Count:N0} training conversations → {files.Train}, {data.HeldOut.Count:N0} held out → {files.HeldOut}, {files.HeldOutText}");
            Console.WriteLine($"evaluation task: {data.Evaluation.Count:N0} items → {files.Evaluation}");
            Console.WriteLine($"verification: {data.AnswersWritten:N0} answers written, {data.AnswersRejected:N0} rejected" +
                              (data.FaultsInjected > 0 ? $" ({data.FaultsInjected:N0} falsified on purpose)" : "") + $"; generated in {seconds:F2} s");
            foreach (var example in data.RejectionExamples.Take(3)) Console.WriteLine($"  rejected: {example}");
            Console.WriteLine($"answers: {answers}");
            Console.WriteLine($"questions: {questions}");
            return 0;
        }));
        return cmd;
    }

    static Command TokenizerVerb()
    {
        var output = Out();
        var seed = Seed();
        var vocab = new Option<int>("--vocab") { Description = "vocabulary size: special tokens, 256 bytes and merges", DefaultValueFactory = _ => DefaultVocabulary }.Within(1, 1 << 20);
        var from = new Option<string[]>("--from") { Description = "train on these files (.txt documents, or .jsonl with text / messages); repeatable. Default: a freshly generated general corpus" };
        var size = new Option<string>("--size") { Description = "without --from: general corpus size (suffix K or M allowed)", DefaultValueFactory = _ => DefaultSize };
        var numbers = new Option<string>("--numbers")
        {
            Description = "how numbers are cut before merging: runs = GPT-2's split (a digit run is one piece, merged by frequency); " +
                          "digits = one token per digit (SmolLM's); groups = Llama 3's split (groups of up to three digits)",
            DefaultValueFactory = _ => "runs",
        }.AcceptOnlyFromAmong("runs", "digits", "groups");
        var json = CliSupport.Json();
        var cmd = new Command("tokenizer", "Train a byte-level BPE tokenizer (GPT-2 split, or Llama 3's with --numbers groups; special tokens " + string.Join(" ", ChatFormat.SpecialTokens) +
                                           ", BOS added, chat template) and write tokenizer.json and tokenizer_config.json.")
        {
            output, seed, vocab, from, size, numbers, json,
        };
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            var clock = Stopwatch.StartNew();
            var files = r.GetValue(from) ?? [];
            IReadOnlyList<string> texts = files.Length > 0
                ? files.SelectMany(SyntheticFiles.ReadTexts).ToList()
                : GeneralCorpus.Generate(r.GetValue(seed), ParseSize(r.GetValue(size)!));
            double readSeconds = clock.Elapsed.TotalSeconds;
            string directory = r.GetValue(output)!;
            var learned = BpeTrainer.Train(texts, new BpeTrainerOptions(r.GetValue(vocab),
                Numbers: Enum.Parse<NumberSplit>(r.GetValue(numbers)!, ignoreCase: true)), directory);
            var tokenizer = Tokenizer.FromHuggingFaceDirectory(directory);
            var report = BpeTrainer.Measure(tokenizer, texts);
            if (r.GetValue(json))
            {
                Console.WriteLine(new JsonObject
                {
                    ["directory"] = directory, ["vocab_size"] = tokenizer.VocabSize, ["merges"] = learned.Merges.Count,
                    ["training_bytes"] = learned.TrainingBytes, ["pre_tokens"] = learned.PreTokens, ["distinct_pre_tokens"] = learned.DistinctPreTokens,
                    ["input_seconds"] = Math.Round(readSeconds, 3), ["train_seconds"] = Math.Round(learned.Elapsed.TotalSeconds, 3),
                    ["bytes_per_token"] = Math.Round(report.BytesPerToken, 4), ["tokens"] = report.Tokens, ["round_trip_failures"] = report.RoundTripFailures,
                }.ToJsonString(new() { WriteIndented = true }));
                return report.RoundTripFailures == 0 ? 0 : 1;
            }
            Console.WriteLine($"tokenizer: {tokenizer.VocabSize:N0} ids ({learned.SpecialTokenCount} special, 256 bytes, {learned.Merges.Count:N0} merges) → {directory}");
            Console.WriteLine($"trained on {learned.TrainingBytes:N0} bytes ({learned.DistinctPreTokens:N0} distinct of {learned.PreTokens:N0} pieces) in {learned.Elapsed.TotalSeconds:F2} s" +
                              (files.Length == 0 ? $" (corpus generated in {readSeconds:F2} s)" : ""));
            Console.WriteLine($"compression: {report.BytesPerToken:F3} bytes per token ({report.Tokens:N0} tokens); round trip: " +
                              (report.RoundTripFailures == 0 ? $"all {report.Texts:N0} texts exact" : $"{report.RoundTripFailures} of {report.Texts} texts differ"));
            return report.RoundTripFailures == 0 ? 0 : 1;
        }));
        return cmd;
    }

    static JsonObject Statistics(CorpusStatistics s) => new()
    {
        ["documents"] = s.Documents, ["bytes"] = s.Bytes, ["sentences"] = s.Sentences, ["distinct_sentences"] = s.DistinctSentences,
        ["distinct_sentence_ratio"] = Math.Round(s.DistinctSentenceRatio, 4), ["words"] = s.Words, ["distinct_words"] = s.DistinctWords,
        ["unigram_entropy_bits"] = Math.Round(s.UnigramEntropy, 3), ["bigram_entropy_bits"] = Math.Round(s.BigramEntropy, 3),
        ["conditional_bigram_entropy_bits"] = Math.Round(s.ConditionalBigramEntropy, 3),
    };

    /// <summary>"4M", "500K", "4000000" → bytes (K = 1,000, M = 1,000,000).</summary>
    const long MaxSize = 1_000_000_000;

    static long ParseSize(string text)
    {
        string t = text.Trim().ToUpperInvariant().TrimEnd('B');
        long factor = t.EndsWith('K') ? 1_000 : t.EndsWith('M') ? 1_000_000 : 1;
        if (factor > 1) t = t[..^1];
        if (!double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) || value < 0 || !double.IsFinite(value))
            throw new ArgumentException($"--size: '{text}' is not a size (examples: 4M, 500K, 250000)");
        if (value * factor > MaxSize) throw new ArgumentException($"--size: at most {MaxSize / 1_000_000}M (the corpus is generated in memory), found {text}");
        return (long)(value * factor);
    }
}
