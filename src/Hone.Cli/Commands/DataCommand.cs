using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.DataTools;
using Hone.Tensors;

namespace Hone.Cli.Commands;

/// <summary><c>hone data ...</c>: streaming JSONL tools. Each verb maps its options onto a library options record and
/// prints the result; the work is in Hone.DataTools.</summary>
internal static class DataCommand
{
    static readonly (string Name, ShingleKind Kind)[] Shingles = [("word", ShingleKind.Word), ("char", ShingleKind.Character)];

    public static Command Create()
    {
        var cmd = new Command("data",
            "Inspect and clean JSONL training data, streaming in bounded memory: stats, dedup, score, filter, decontaminate, split.\n" +
            "Records are JSON objects, one a line; the text is --field (default \"text\"), or for SFT records without it the " +
            "concatenated contents of messages (OpenAI), conversations (ShareGPT) or instruction/input/output (Alpaca). " +
            "Outputs keep records byte for byte and appear only when complete. A malformed line stops the run with file:line; " +
            "--skip-bad-lines counts and skips it.");
        cmd.Subcommands.Add(Stats());
        cmd.Subcommands.Add(Dedup());
        cmd.Subcommands.Add(Score());
        cmd.Subcommands.Add(Filter());
        cmd.Subcommands.Add(Decontaminate());
        cmd.Subcommands.Add(Split());
        return cmd;
    }

    sealed class Common
    {
        public readonly Argument<string> File = new("file") { Description = "input JSONL file (or a folder holding one)" };
        public readonly Option<string> Field = new("--field") { Description = "the text field", DefaultValueFactory = _ => "text" };
        public readonly Option<bool> SkipBadLines = new("--skip-bad-lines") { Description = "skip malformed lines (counted in the summary) instead of stopping" };
        public readonly Option<int> Threads = CliSupport.Threads();
        public readonly Option<bool> Json = CliSupport.Json();

        /// <summary>The input: a JSONL file, or a folder holding one (resolved as every command resolves data).</summary>
        public string Input(ParseResult r) => Hone.Formats.DataPath.Resolve(r.GetValue(File)!, [".jsonl"]);

        public void AddTo(Command c, bool field = true)
        {
            c.Arguments.Add(File);
            if (field) c.Options.Add(Field);
            c.Options.Add(SkipBadLines);
            c.Options.Add(Threads);
            c.Options.Add(Json);
        }
    }

    static Option<string> Out(string name = "--out", string description = "output JSONL file") =>
        new(name) { Description = description, Required = true };

    static Command Stats()
    {
        var common = new Common();
        var model = new Option<string?>("--model", "-m") { Description = "also count tokens with this model's tokenizer (directory or .gguf)" };
        var cmd = new Command("stats",
            "Counts and distributions: records, bytes, characters (code points), lines; length min/median/p90/max in characters and, " +
            "with --model, tokens; exact duplicates (by content hash); empty and whitespace-only records; charset anomalies " +
            "(U+FFFD, lone surrogates and noncharacters, control characters, non-ASCII share) and writing systems: a record is " +
            "mixed-script when its second most common writing system holds at least 10% of its letters, and has a mixed-script " +
            "word when one run of letters mixes systems other than CJK (homoglyphs); top fields. " +
            "Memory: about 40 bytes per distinct text plus 8 (16 with --model) per record for exact quantiles.") { model };
        common.AddTo(cmd);
        cmd.SetAction(r => Run(common, r, cancel =>
        {
            var result = DataStats.Run(new DataStatsOptions(common.Input(r), r.GetValue(common.Field)!, r.GetValue(model),
                r.GetValue(common.SkipBadLines), r.GetValue(common.Threads)), Progress, cancel);
            return (result.ToJson(), () =>
            {
                Console.WriteLine($"{result.File}: {result.Records:N0} records, {CliSupport.Bytes(result.Bytes)}, {result.Characters:N0} characters, " +
                                  $"{result.Lines:N0} lines ({result.BlankLines:N0} blank){BadSummary(result.BadLines)}");
                PrintDistribution("characters", result.CharacterLengths);
                if (result.TokenLengths != null) { Console.WriteLine($"tokens       {result.Tokens:N0} in all"); PrintDistribution("tokens", result.TokenLengths); }
                Console.WriteLine($"duplicates   {result.DuplicateRecords:N0} exact ({Share(result.DuplicateRecords, result.Records)}), {result.DistinctTexts:N0} distinct texts");
                Console.WriteLine($"empty        {result.EmptyRecords:N0} empty, {result.WhitespaceOnlyRecords:N0} whitespace-only");
                var a = result.Anomalies;
                Console.WriteLine($"charset      non-ASCII {a.NonAsciiShare:P2} of characters ({a.NonAsciiRecords:N0} records); U+FFFD in {a.ReplacementCharacterRecords:N0} records " +
                                  $"({a.ReplacementCharacters:N0}); invalid (lone surrogates, noncharacters) in {a.InvalidCharacterRecords:N0}; control characters in {a.ControlCharacterRecords:N0}");
                Console.WriteLine($"scripts      {string.Join(", ", a.DominantSystems.Select(s => $"{DataJson.Name(s.System)} {s.Records:N0}"))}; " +
                                  $"mixed-script records {a.MixedScriptRecords:N0}, with mixed-script words {a.MixedScriptWordRecords:N0}");
                Console.WriteLine($"fields       {string.Join(", ", result.TopFields.Select(f => $"{f.Name} {f.Records:N0}"))}");
                if (result.Sources.Count > 1 || !result.Sources.ContainsKey(TextSource.Field))
                    Console.WriteLine($"text from    {string.Join(", ", result.Sources.Select(s => $"{DataJson.Name(s.Key)} {s.Value:N0}"))}");
                PrintBadExamples(result.BadLineExamples);
            });
        }));
        return cmd;
    }

    static Command Dedup()
    {
        var common = new Common();
        var output = Out();
        var near = new Option<bool>("--near") { Description = "also remove near duplicates (MinHash LSH)" };
        var threshold = new Option<double>("--threshold") { Description = "Jaccard similarity at which a record is a near duplicate", DefaultValueFactory = _ => 0.8 };
        var ngram = new Option<int>("--ngram") { Description = "shingle length (words or characters)", DefaultValueFactory = _ => 5 };
        var shingle = new Option<string>("--shingle") { Description = "shingles of words (lowercased, punctuation deleted) or characters", DefaultValueFactory = _ => "word" };
        shingle.AcceptOnlyFromAmong(Shingles.Select(s => s.Name).ToArray());
        var numPerm = new Option<int>("--num-perm") { Description = "MinHash permutations (at most 4096: 8 bytes each per record)", DefaultValueFactory = _ => 128 }
            .Within(double.NegativeInfinity, 4096, reason: "8 bytes each per record"); // the lower bound is the library's
        var bands = new Option<int?>("--bands") { Description = "LSH bands (rows = num-perm / bands); default: chosen for the threshold" };
        var seed = new Option<ulong>("--seed") { Description = "seed of the shingle hash and permutations", DefaultValueFactory = _ => 42 };
        var cmd = new Command("dedup",
            "Remove exact duplicates (content hash, first kept) and with --near near duplicates: MinHash signatures of the shingle " +
            "sets, LSH with b bands of r rows — texts with Jaccard J share a band with probability 1-(1-J^r)^b, an S-curve " +
            "steepest near (1/b)^(1/r); the default for 0.8 and 128 permutations is 12×10: P(0.7)=0.29, P(0.8)=0.74, P(0.9)=0.99 — " +
            "then candidates are verified: removed when the signature estimate of J reaches the threshold. Deterministic for a seed. " +
            "Memory: about 48 bytes per distinct text and 15 per band per kept text; signatures go to a temporary file beside the output.")
        {
            output, near, threshold, ngram, shingle, numPerm, bands, seed,
        };
        common.AddTo(cmd);
        cmd.SetAction(r => Run(common, r, cancel =>
        {
            var kind = Shingles.First(s => s.Name == r.GetValue(shingle)).Kind;
            var result = DataDedup.Run(new DataDedupOptions(common.Input(r), r.GetValue(output)!, r.GetValue(near), r.GetValue(threshold),
                r.GetValue(ngram), r.GetValue(numPerm), r.GetValue(bands), kind, r.GetValue(seed), r.GetValue(common.Field)!,
                r.GetValue(common.SkipBadLines), r.GetValue(common.Threads)), Progress, cancel);
            return (result.ToJson(), () =>
            {
                long removed = result.ExactDuplicates + result.NearDuplicates;
                Console.WriteLine($"{result.File}: {result.Records:N0} records, kept {result.Kept:N0}, removed {removed:N0} ({Share(removed, result.Records)}): " +
                                  $"{result.ExactDuplicates:N0} exact, {result.NearDuplicates:N0} near{BadSummary(result.BadLines)}");
                if (result.Near)
                    Console.WriteLine($"minhash      {result.NumPerm} permutations, {DataJson.Name(result.Shingle)} {result.Ngram}-grams, {result.Bands!.Value.Bands} bands × {result.Bands.Value.Rows} rows, " +
                                      $"threshold {result.Threshold} (candidate probability there {result.Bands.Value.CandidateProbability(result.Threshold):F2}), " +
                                      $"{result.Candidates:N0} candidates verified, index {CliSupport.Bytes(result.IndexBytes)}");
                foreach (var e in result.Examples)
                    Console.WriteLine($"  {DataJson.Name(e.Kind)} J={e.Jaccard:F2}: line {e.RemovedLine} \"{e.RemovedPreview}\"\n      ~ line {e.KeptLine} \"{e.KeptPreview}\"");
                Console.WriteLine($"wrote {result.Output}");
                PrintBadExamples(result.BadLineExamples);
            });
        }));
        return cmd;
    }

    static Command Score()
    {
        var common = new Common();
        var model = new Option<string>("--model", "-m") { Description = "reference model (directory or .gguf)", Required = true };
        var output = Out();
        var ctx = new Option<int?>("--ctx") { Description = "context window in tokens, BOS included (default 512, or the model's context when smaller)" }.Within(2, int.MaxValue);
        var stride = new Option<int?>("--stride") { Description = "window advance for texts longer than --ctx (default: --ctx)" }.Within(1, int.MaxValue);
        var column = new Option<string>("--column") { Description = "field for the perplexity", DefaultValueFactory = _ => "ppl" };
        var bpbColumn = new Option<string>("--bpb-column") { Description = "field for bits per byte", DefaultValueFactory = _ => "bits_per_byte" };
        var tokensColumn = new Option<string>("--tokens-column") { Description = "field for the token count", DefaultValueFactory = _ => "tokens" };
        var modelThreads = new Option<int>("--model-threads") { Description = "threads inside each forward pass; documents run in parallel on --threads / this", DefaultValueFactory = _ => 1 }
            .Within(1, Hone.Training.TrainOptions.MaxThreads);
        var precision = CliSupport.Precision(measuring: true);
        var cmd = new Command("score",
            "Per-record perplexity and bits per byte under a reference model, added as fields (nulls for texts with no token to " +
            "score). Protocol \"full\": BOS then the text's tokens, every token after BOS scored once, texts longer than --ctx in " +
            "windows advancing by --stride — the numbers the model gives for each text alone; bits per byte = NLL / ln 2 / UTF-8 bytes. " +
            "The protocol and the precision (exact by default: fp32 activations; see --precision) are also written to OUTPUT.score.json. " +
            "Memory: the weights plus, per worker, a KV cache and ctx × vocabulary logits.")
        {
            model, output, ctx, stride, column, bpbColumn, tokensColumn, modelThreads, precision,
        };
        common.AddTo(cmd);
        cmd.SetAction(r => Run(common, r, cancel =>
        {
            var result = DataScore.Run(new DataScoreOptions(common.Input(r), r.GetValue(model)!, r.GetValue(output)!, r.GetValue(ctx),
                r.GetValue(stride), r.GetValue(column)!, r.GetValue(bpbColumn)!, r.GetValue(tokensColumn)!, r.GetValue(common.Field)!,
                r.GetValue(common.SkipBadLines), r.GetValue(common.Threads), r.GetValue(modelThreads),
                CliSupport.ParsePrecision(r.GetValue(precision))), Progress, cancel);
            return (result.ToJson(), () =>
            {
                Console.WriteLine($"{result.File}: scored {result.Scored:N0} of {result.Records:N0} records ({result.Unscorable:N0} with nothing to score){BadSummary(result.BadLines)}");
                Console.WriteLine($"whole file   perplexity {result.Perplexity:F3}, {result.BitsPerByte:F4} bits per byte, {result.TokensScored:N0} tokens scored " +
                                  $"({result.TokensScored / Math.Max(result.Seconds, 1e-9):F0} tokens/s, {result.Workers} workers × {result.ModelThreads} threads)");
                Console.WriteLine($"protocol     {result.Protocol}");
                Console.WriteLine($"precision    {result.Precision.Name()}");
                Console.WriteLine($"wrote {result.Output} (+ .score.json)");
                PrintBadExamples(result.BadLineExamples);
            });
        }));
        return cmd;
    }

    static Command Filter()
    {
        var common = new Common();
        var output = Out();
        var column = new Option<string>("--column") { Description = "the scored field the perplexity bounds and quantiles apply to", DefaultValueFactory = _ => "ppl" };
        var minPpl = new Option<double?>("--min-ppl") { Description = "keep records with column >= this" }.Within(double.NegativeInfinity);
        var maxPpl = new Option<double?>("--max-ppl") { Description = "keep records with column <= this" }.Within(double.NegativeInfinity);
        var quantiles = new Option<string?>("--keep-quantiles") { Description = "LOW,HIGH: keep records with column between these quantiles of the file (two passes)" };
        var minChars = new Option<int?>("--min-chars") { Description = "keep texts with at least this many characters" }.Within(0);
        var maxChars = new Option<int?>("--max-chars") { Description = "keep texts with at most this many characters" }.Within(0);
        var minTokens = new Option<int?>("--min-tokens") { Description = "keep texts with at least this many tokens (needs --model)" }.Within(0);
        var maxTokens = new Option<int?>("--max-tokens") { Description = "keep texts with at most this many tokens (needs --model)" }.Within(0);
        var model = new Option<string?>("--model", "-m") { Description = "tokenizer for the token bounds (directory or .gguf)" };
        var cmd = new Command("filter",
            "Keep records inside all the given bounds (inclusive). --keep-quantiles reads the file twice: first only the column's " +
            "numbers (exact quantiles, NumPy's linear interpolation; 8 bytes per record), then filters. A null score fails any " +
            "score bound; a record without the column is a bad line.")
        {
            output, column, minPpl, maxPpl, quantiles, minChars, maxChars, minTokens, maxTokens, model,
        };
        common.AddTo(cmd);
        cmd.SetAction(r => Run(common, r, cancel =>
        {
            (double, double)? q = null;
            if (r.GetValue(quantiles) is string text)
            {
                var parts = text.Split(',');
                if (parts.Length != 2 || !double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out double low)
                                      || !double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double high))
                    throw new ArgumentException($"--keep-quantiles takes LOW,HIGH such as 0.1,0.9, got '{text}'");
                q = (low, high);
            }
            var result = DataFilter.Run(new DataFilterOptions(common.Input(r), r.GetValue(output)!, r.GetValue(column)!, r.GetValue(minPpl),
                r.GetValue(maxPpl), q, r.GetValue(minChars), r.GetValue(maxChars), r.GetValue(minTokens), r.GetValue(maxTokens), r.GetValue(model),
                r.GetValue(common.Field)!, r.GetValue(common.SkipBadLines), r.GetValue(common.Threads)), Progress, cancel);
            return (result.ToJson(), () =>
            {
                Console.WriteLine($"{result.File}: {result.Records:N0} records, kept {result.Kept:N0}, removed {result.Records - result.Kept:N0} ({Share(result.Records - result.Kept, result.Records)}){BadSummary(result.BadLines)}");
                if (result.QuantileBounds is { } b) Console.WriteLine($"quantiles    {result.Column} between {b.Low:G6} and {b.High:G6} (from {result.ValuesForQuantiles:N0} values)");
                var x = result.Removed;
                var reasons = new (string Name, long Count)[]
                {
                    ("below min", x.BelowMin), ("above max", x.AboveMax), ("outside quantiles", x.OutsideQuantiles), ($"no {result.Column} value", x.NoValue),
                    ("too few chars", x.TooFewChars), ("too many chars", x.TooManyChars), ("too few tokens", x.TooFewTokens), ("too many tokens", x.TooManyTokens),
                };
                var nonzero = reasons.Where(p => p.Count > 0).ToList();
                if (nonzero.Count > 0) Console.WriteLine($"removed by   {string.Join(", ", nonzero.Select(p => $"{p.Name} {p.Count:N0}"))}");
                Console.WriteLine($"wrote {result.Output}");
                PrintBadExamples(result.BadLineExamples);
            });
        }));
        return cmd;
    }

    static Command Decontaminate()
    {
        var common = new Common();
        var against = new Option<string[]>("--against") { Description = "evaluation files: JSONL, CSV (MMLU layout understood) or plain text; .gz is read too", Required = true, AllowMultipleArgumentsPerToken = true };
        var output = Out();
        var ngram = new Option<int>("--ngram") { Description = "n-gram length in words", DefaultValueFactory = _ => 13 };
        var report = new Option<string?>("--report") { Description = "where to list dropped records (default: OUT with .contamination.jsonl)" };
        var cmd = new Command("decontaminate",
            "Drop training records that share any word n-gram with the evaluation sets (GPT-3 / lm-evaluation-harness rule: words " +
            "lowercased, punctuation deleted, split on whitespace; 13-grams). Each dropped record is listed in the report with the " +
            "evaluation set, its line and an overlapping n-gram. Memory: about 40 bytes per evaluation n-gram.")
        {
            against, output, ngram, report,
        };
        common.AddTo(cmd);
        cmd.SetAction(r => Run(common, r, cancel =>
        {
            var result = Hone.DataTools.Decontaminate.Run(new DecontaminateOptions(common.Input(r), r.GetValue(against)!, r.GetValue(output)!,
                r.GetValue(ngram), r.GetValue(report), r.GetValue(common.Field)!, r.GetValue(common.SkipBadLines), r.GetValue(common.Threads)), Progress, cancel);
            return (result.ToJson(), () =>
            {
                Console.WriteLine($"{result.File}: {result.Records:N0} records, kept {result.Kept:N0}, dropped {result.Dropped:N0} ({Share(result.Dropped, result.Records)}){BadSummary(result.BadLines)}");
                for (int i = 0; i < result.EvalSets.Count; i++)
                {
                    var s = result.EvalSets[i];
                    Console.WriteLine($"  {s.Path} ({s.Format}): {s.Ngrams:N0} {result.Ngram}-grams from {s.Segments:N0} segments ({s.ShortSegments:N0} too short); dropped {result.DroppedBySet[i]:N0}");
                }
                Console.WriteLine($"wrote {result.Output} and {result.Report}");
                PrintBadExamples(result.BadLineExamples);
            });
        }));
        return cmd;
    }

    static Command Split()
    {
        var common = new Common();
        var train = Out("--out-train", "training half");
        var val = Out("--out-val", "validation half");
        var share = new Option<double>("--val") { Description = "share of records (or groups) for validation", DefaultValueFactory = _ => 0.1 };
        var seed = new Option<ulong>("--seed") { Description = "seed of the split", DefaultValueFactory = _ => 0 };
        var by = new Option<string?>("--by") { Description = "keep records with equal values of this field on the same side" };
        var cmd = new Command("split",
            "Split in one reproducible pass: each record (or --by group) goes to validation when a hash of its index (or group value) " +
            "with the seed falls below --val. Memory: the read batch only.")
        {
            train, val, share, seed, by,
        };
        common.AddTo(cmd, field: false);
        cmd.SetAction(r => Run(common, r, cancel =>
        {
            var result = DataSplit.Run(new DataSplitOptions(common.Input(r), r.GetValue(train)!, r.GetValue(val)!, r.GetValue(share),
                r.GetValue(seed), r.GetValue(by), r.GetValue(common.SkipBadLines), r.GetValue(common.Threads)), Progress, cancel);
            return (result.ToJson(), () =>
            {
                Console.WriteLine($"{result.File}: {result.Records:N0} records: train {result.Train:N0}, validation {result.Validation:N0} " +
                                  $"({Share(result.Validation, result.Records)}; asked {result.ValidationShare:P1}){(result.By != null ? $", grouped by {result.By}" : "")}{BadSummary(result.BadLines)}");
                Console.WriteLine($"wrote {result.TrainOutput} and {result.ValidationOutput}");
                PrintBadExamples(result.BadLineExamples);
            });
        }));
        return cmd;
    }

    /// <summary>The error boundary with cancellation: Ctrl+C or SIGTERM stops the run at the next batch, temporary
    /// outputs are deleted, and the exit code is 130.</summary>
    static int Run(Common common, ParseResult r, Func<CancellationToken, (JsonObject Json, Action Print)> body)
    {
        using var cancel = new CancellationTokenSource();
        void Stop(PosixSignalContext context) { context.Cancel = true; cancel.Cancel(); }
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        return CliSupport.Guard(() =>
        {
            try
            {
                var (json, print) = body(cancel.Token);
                if (r.GetValue(common.Json)) Console.WriteLine(json.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
                else print();
                return 0;
            }
            catch (OperationCanceledException)
            {
                Console.Error.WriteLine("cancelled: nothing written");
                return 130;
            }
        });
    }

    static void Progress(string message) => Console.Error.WriteLine(message);

    static string BadSummary(long bad) => bad > 0 ? $"; skipped {bad:N0} bad lines" : "";

    static string Share(long part, long whole) => whole == 0 ? "0%" : $"{(double)part / whole:P1}";

    static void PrintDistribution(string unit, Distribution? d)
    {
        if (d == null) return;
        Console.WriteLine($"{"  " + unit,-12} min {d.Min:N0}  median {d.Median:N1}  p90 {d.P90:N1}  max {d.Max:N0}  mean {d.Mean:N1}");
    }

    static void PrintBadExamples(IReadOnlyList<string> examples)
    {
        foreach (var e in examples) Console.WriteLine($"  bad line: {e}");
    }
}
