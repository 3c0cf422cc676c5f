using System.CommandLine;
using System.Runtime.InteropServices;
using System.CommandLine.Parsing;
using System.Text.Json;
using System.Text.Json.Serialization;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Training;

namespace Hone.Cli.Commands;

/// <summary>Shared options and the error boundary: every failure becomes one line on stderr and a non-zero exit.</summary>
internal static class CliSupport
{
    /// <summary>--expert-cache and --expert-cache-policy: a mixture of experts' resident-expert budget
    /// (<see cref="Hone.Model.ExpertCache"/>).</summary>
    public sealed class ExpertCacheOptions
    {
        public readonly Option<string?> Budget = new("--expert-cache")
        {
            Description = "a mixture of experts: leave the experts in the file (memory-mapped) and keep only this much of them resident; a size " +
                          "(512M, 2G) or a share of all experts (50%). Results are identical; a miss reads the expert from the file; the hit rate " +
                          "is reported. The file must hold the experts in the type to run (convert first)",
        };
        public readonly Option<string> Policy = new("--expert-cache-policy")
        {
            Description = "which resident expert a miss evicts: frequency (the least often fetched, counts decaying; keeps the hot ones) or " +
                          "recency (the least recently used)",
            DefaultValueFactory = _ => "frequency",
        };

        public void AddTo(Command command) { command.Options.Add(Budget); command.Options.Add(Policy); }

        public Hone.Model.ExpertCacheOptions? Read(ParseResult r)
        {
            var policy = r.GetValue(Policy) switch
            {
                "frequency" => Hone.Model.ExpertCachePolicy.Frequency,
                "recency" => Hone.Model.ExpertCachePolicy.Recency,
                var other => throw new ArgumentException($"--expert-cache-policy: '{other}' is not a policy (frequency or recency)"),
            };
            if (r.GetValue(Budget) is string budget) return new(budget, policy);
            if (r.GetResult(Policy) is { Implicit: false }) throw new ArgumentException("--expert-cache-policy goes with --expert-cache");
            return null;
        }
    }

    /// <summary>The expert cache's counts for --json output, or null without one.</summary>
    public static System.Text.Json.Nodes.JsonObject? ExpertCacheJson(Hone.Model.ExpertCache? cache) => cache?.Statistics is { } s ? new()
    {
        ["budget_bytes"] = s.BudgetBytes, ["slot_bytes"] = s.SlotBytes, ["resident_experts"] = s.Slots, ["experts"] = s.Experts,
        ["hits"] = s.Hits, ["misses"] = s.Misses, ["hit_rate"] = s.HitRate, ["bytes_read"] = s.BytesRead,
    } : null;

    public static Option<int> Threads() => new Option<int>("--threads", "-t")
    {
        Description = $"worker threads (0 = one per core; at most {TrainOptions.MaxThreads})",
        DefaultValueFactory = _ => 0,
    }.Within(0, TrainOptions.MaxThreads, reason: "0 = one per core");

    /// <summary>Refuse values outside [min, max] (or the open ends) at parse time, before any work, naming the option.</summary>
    public static Option<T> Within<T>(this Option<T> option, double min, double max = double.PositiveInfinity, bool minExclusive = false,
        bool maxExclusive = false, string? reason = null)
    {
        option.Validators.Add(result =>
        {
            if (result.Implicit) return;
            object? value;
            try { value = result.GetValueOrDefault<T>(); }
            catch (InvalidOperationException) { return; } // not a number: the parser reports that itself
            if (value == null) return;
            if (Limits.Violation(Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture), min, max, minExclusive, maxExclusive, reason) is string message)
                result.AddError($"{option.Name}: {message}");
        });
        return option;
    }

    /// <summary>A --type option: one of the matrix types Hone stores weights in, checked at parse time.</summary>
    public static Option<string?> MatrixType(string description)
    {
        var option = new Option<string?>("--type") { Description = $"{description}: {MatrixTypes.Names}" };
        option.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string?>() is string name)
                try { MatrixTypes.Parse(name); }
                catch (ArgumentException e) { result.AddError(e.Message); }
        });
        return option;
    }

    /// <summary>The KV cache length of generate, chat and eval, refused at parse time when negative and, once the
    /// model's config is read, when longer than its context (before anything is allocated).</summary>
    public static Option<int> Context() => new Option<int>("--ctx", "-c")
    {
        Description = $"context length (0 = the model's, at most {Hone.Inference.LoadedModel.DefaultContextCap}; never more than the model's)",
        DefaultValueFactory = _ => 0,
    }.Within(0, reason: "0 = the model's");

    public static Option<bool> Json() => new("--json") { Description = "print the result as JSON" };

    /// <summary>--precision exact|fast: exact by default where numbers are measured (evaluation, perplexity, scoring),
    /// fast where text is produced (generation, chat).</summary>
    public static Option<string> Precision(bool measuring) => new("--precision")
    {
        Description = "how activations meet the weights: " +
                      "exact = fp32 activations in every weight product (bf16/f16 weights widen exactly, quantized blocks dequantize to fp32; " +
                      "the result is the F32 model's of the same weights up to fp32 summation order); " +
                      "fast = llama.cpp's kernels: in prompt processing bf16 weights multiply bf16-rounded activations (about 1e-3 relative " +
                      "on perplexity) and q8_0/q4_0 weights Q8_0-quantized activations and q4_k/q6_k weights Q8_K-rounded ones, and one-token steps with quantized weights quantize " +
                      "the activations to 8 bits; faster, most of all for bf16 models. " +
                      (measuring ? "Default exact here (a measurement); the choice is recorded with the result."
                                 : "Default fast here (generation); use exact to match evaluation numerics."),
        DefaultValueFactory = _ => measuring ? "exact" : "fast",
    };

    public static ComputePrecision ParsePrecision(string? name) => ComputePrecisions.Parse(name ?? "exact");

    /// <summary>--cache-type: how the KV cache holds keys and values.</summary>
    public static Option<string> CacheType() => new Option<string>("--cache-type", "-ctk")
    {
        Description = "how the KV cache holds keys and values (llama.cpp's --cache-type-k/-v): f32 = exactly as computed; " +
                      "bf16 = rounded to bfloat16 after RoPE (half the cache memory and half the bytes each decode step reads; " +
                      "attention still computes in fp32). Results with one type are the same alone and in a batch",
        DefaultValueFactory = _ => "f32",
    }.AcceptOnlyFromAmong("f32", "bf16");

    public static Hone.Tensors.KvCacheType ParseCacheType(string? name) => Hone.Tensors.KvCacheTypes.Parse(name ?? "f32");

    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public static TensorType? ParseType(string? name) => name == null ? null : MatrixTypes.Parse(name);

    /// <summary>Run a command body; known failures print "error: ..." and exit 1, never a stack dump
    /// (set HONE_DEBUG=1 to see one).</summary>
    public static int Guard(Func<int> body)
    {
        try { return body(); }
        catch (Exception e) when (e is ModelFormatException or DataFormatException or FileNotFoundException or DirectoryNotFoundException or ArgumentException
                                    or NotSupportedException or InvalidOperationException or IOException or UnauthorizedAccessException
                                    or JsonException or FormatException or DataFormatException
                                    or Tokenization.Templates.TemplateException or Grammars.GrammarException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            if (Environment.GetEnvironmentVariable("HONE_DEBUG") == "1") Console.Error.WriteLine(e);
            return 1;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"error: unexpected {e.GetType().Name}: {e.Message} (set HONE_DEBUG=1 for details and please report it)");
            if (Environment.GetEnvironmentVariable("HONE_DEBUG") == "1") Console.Error.WriteLine(e);
            return 2;
        }
    }

    /// <summary>The error boundary for a command that writes outputs through temporaries: Ctrl+C or SIGTERM cancels the
    /// token, the body's cleanup deletes what it had written, and the exit code is 130. A second signal ends the
    /// process at once, as usual.</summary>
    public static int GuardInterruptible(Func<CancellationToken, int> body)
    {
        using var cancel = CancelOnCtrlC(terminateToo: true);
        return Guard(() =>
        {
            try { return body(cancel.Token); }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested)
            {
                Console.Error.WriteLine("cancelled: nothing written");
                return 130;
            }
        });
    }

    /// <summary>A token source that Ctrl-C cancels (once; a second Ctrl-C ends the process as usual) and, with
    /// <paramref name="terminateToo"/>, SIGTERM as well (what a job scheduler or `kill` sends): long runs stop as they
    /// do on Ctrl-C (training writes its checkpoint). Chat keeps SIGTERM's default, since its Ctrl-C only stops a reply.</summary>
    public static CancellationTokenSource CancelOnCtrlC(bool terminateToo = false)
    {
        var cts = terminateToo ? new TerminateCancellation() : new CancellationTokenSource();
        ConsoleCancelEventHandler? handler = null;
        handler = (_, e) =>
        {
            if (cts.IsCancellationRequested) return;
            e.Cancel = true;
            try { cts.Cancel(); } catch (ObjectDisposedException) { }
            Console.CancelKeyPress -= handler;
        };
        Console.CancelKeyPress += handler;
        cts.Token.Register(() => Console.CancelKeyPress -= handler);
        return cts;
    }

    sealed class TerminateCancellation : CancellationTokenSource
    {
        readonly PosixSignalRegistration _terminate;

        public TerminateCancellation()
        {
            _terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
            {
                if (IsCancellationRequested) return; // a second SIGTERM ends the process
                context.Cancel = true;
                try { Cancel(); } catch (ObjectDisposedException) { }
            });
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) _terminate.Dispose();
            base.Dispose(disposing);
        }
    }

    /// <summary>A done/total progress reporter on stderr: redrawn in place on a terminal, silent when redirected.</summary>
    public static Action<int, int> Progress(string what)
    {
        if (Console.IsErrorRedirected) return (_, _) => { };
        var clock = System.Diagnostics.Stopwatch.StartNew();
        return (done, total) =>
        {
            double eta = done == 0 ? 0 : clock.Elapsed.TotalSeconds / done * (total - done);
            Console.Error.Write($"\r{what} [{Bar(done, total, 30)}] {done}/{total}  ETA {eta:F0}s   ");
            if (done == total) Console.Error.WriteLine();
        };
    }

    public static string Bar(long done, long total, int width)
    {
        int filled = total <= 0 ? width : (int)Math.Round(width * Math.Clamp((double)done / total, 0, 1));
        return new string('=', filled) + (filled < width ? ">" + new string(' ', width - filled - 1) : "");
    }

    public static string Bytes(long b) => b switch
    {
        >= 1L << 30 => $"{b / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{b / (double)(1L << 20):F1} MiB",
        >= 1L << 10 => $"{b / 1024.0:F1} KiB",
        _ => $"{b} B",
    };

    /// <summary>System.CommandLine's "Cannot parse argument 'x' for option '--ctx' as expected type 'System.Int32'." in
    /// the user's words: "--ctx: expected a whole number from -2147483648 to 2147483647, found 'x'".</summary>
    static string Plain(string message)
    {
        var m = System.Text.RegularExpressions.Regex.Match(message,
            @"^Cannot parse argument '(?<value>.*)' for option '(?<option>[^']+)' as expected type '(?<type>[^']+)'\.?$");
        if (!m.Success) return message;
        string type = m.Groups["type"].Value; // also System.Nullable`1[System.Int32]
        string expected = type.Contains("UInt64") ? $"a whole number from 0 to {ulong.MaxValue}"
            : type.Contains("Int64") ? $"a whole number from {long.MinValue} to {long.MaxValue}"
            : type.Contains("Int32") ? $"a whole number from {int.MinValue} to {int.MaxValue}"
            : type.Contains("Double") || type.Contains("Single") ? "a number"
            : type.Contains("Boolean") ? "true or false"
            : $"a value of type {type}";
        return $"{m.Groups["option"].Value}: expected {expected}, found '{m.Groups["value"].Value}'";
    }

    /// <summary>
    /// Usage errors, found before any command runs, in one line each: a mistyped option gets the nearest real one
    /// ("unknown option '--lora-rnak'; did you mean '--lora-rank'?"), not the whole help; so does a mistyped command.
    /// System.CommandLine takes an unknown "--x" for a positional argument when one is free (the model), so those are
    /// looked for there too, and an option's bad value (a validator's message) is printed as it is. Returns the exit
    /// code, or null when the command line is fine.
    /// </summary>
    public static int? ReportUsageErrors(ParseResult result, string[] args)
    {
        if (result.Action is System.CommandLine.Help.HelpAction || result.Action?.GetType().Name == "VersionOptionAction") return null;
        var commandResult = result.CommandResult;
        var command = commandResult.Command;
        var optionNames = new List<string>();
        for (SymbolResult? s = commandResult; s != null; s = s.Parent)
            if (s is CommandResult c)
                foreach (var o in c.Command.Options)
                    if (c == commandResult || o.Recursive) { optionNames.Add(o.Name); optionNames.AddRange(o.Aliases); }
        int doubleDash = Array.IndexOf(args, "--");
        var afterDoubleDash = doubleDash >= 0 ? args.Skip(doubleDash + 1).ToHashSet() : [];
        bool LooksLikeOption(string token) => token.Length > 1 && token[0] == '-' && !afterDoubleDash.Contains(token)
                                              && !double.TryParse(token, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out _);

        var problems = new List<string>();
        var positional = commandResult.Children.OfType<ArgumentResult>().SelectMany(a => a.Tokens).Select(t => t.Value);
        foreach (var token in positional.Concat(result.UnmatchedTokens).Distinct())
            if (LooksLikeOption(token)) problems.Add($"unknown option '{token}'{Spelling.Suggestion(token, optionNames)}");
        if (problems.Count == 0 && result.Errors.Count > 0)
        {
            // A mistyped command leaves it and everything after it unmatched: name the first, the rest is its.
            bool unknownCommand = command.Subcommands.Count > 0 && result.UnmatchedTokens.Count > 0;
            if (unknownCommand)
            {
                string token = result.UnmatchedTokens[0];
                problems.Add($"unknown command '{token}'{Spelling.Suggestion(token, command.Subcommands.SelectMany(c => c.Aliases.Prepend(c.Name)))}");
            }
            else foreach (var token in result.UnmatchedTokens) problems.Add($"unexpected argument '{token}'");
            foreach (var error in result.Errors)
            {
                if (error.Message.StartsWith("Unrecognized command or argument", StringComparison.Ordinal)) continue;
                if (unknownCommand && error.Message.StartsWith("Required command was not provided", StringComparison.Ordinal)) continue;
                problems.Add(Plain(error.Message));
            }
        }
        if (problems.Count == 0) return null;
        foreach (var p in problems.Distinct()) Console.Error.WriteLine($"error: {p}");
        return 1;
    }
}

/// <summary>The model a command works on: the positional MODEL or -m/--model (llama.cpp's habit), either one.</summary>
internal sealed class ModelInput
{
    public readonly Argument<string?> Positional;
    public readonly Option<string?> Flag;
    readonly bool _required;

    public ModelInput(string description, bool required = true)
    {
        _required = required;
        Positional = new Argument<string?>("model") { Description = description + " (or -m MODEL)", Arity = ArgumentArity.ZeroOrOne };
        Flag = new Option<string?>("--model", "-m") { Description = "the model, as an option instead of the positional MODEL" };
    }

    public void AddTo(Command command)
    {
        command.Arguments.Add(Positional);
        command.Options.Add(Flag);
    }

    /// <summary>The model path given either way; null when neither is given and the model is optional.</summary>
    public string? Read(ParseResult r)
    {
        string? positional = r.GetValue(Positional), flag = r.GetValue(Flag);
        if (positional != null && flag != null && positional != flag)
            throw new ArgumentException($"two models given: '{positional}' and -m '{flag}'; give one");
        var model = positional ?? flag;
        if (model == null && _required) throw new ArgumentException($"a model is required: hone {r.CommandResult.Command.Name} MODEL (or -m MODEL)");
        return model;
    }
}
