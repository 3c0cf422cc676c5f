using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Evaluation;
using Hone.Formats;
using Hone.Model;
using Hone.Synthesis;
using Hone.Tests.Infrastructure;
using Microsoft.Extensions.AI;
using Xunit;

namespace Hone.Tests.Synthetic;

public class InstructSynthesisTests
{
    const string System = "You are the store's assistant.";

    /// <summary>A teacher whose replies the test scripts: the n-th instruction request gets Instructions[n] (null: it
    /// throws), the answer to an instruction is Answers[instruction]. Every request is recorded.</summary>
    sealed class ScriptedChat : IChatClient
    {
        public readonly List<string?> Instructions = [];
        public readonly Dictionary<string, string> Answers = new(StringComparer.Ordinal);
        /// <summary>Answers given in turn to repeated requests for the same instruction (before <see cref="Answers"/>).</summary>
        public readonly Dictionary<string, Queue<string>> AnswersInTurn = new(StringComparer.Ordinal);
        public Func<string, string>? Judge;
        public readonly ConcurrentQueue<(IReadOnlyList<ChatMessage> Messages, ChatOptions? Options)> Requests = new();
        public Action<int>? OnRequest;
        int _instructionRequests;

        public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        {
            var list = messages.ToList();
            Requests.Enqueue((list, options));
            OnRequest?.Invoke(Requests.Count);
            cancellationToken.ThrowIfCancellationRequested();
            string user = list[^1].Text;
            string reply;
            if (list[0].Text == SynthPrompts.JudgeSystem) reply = Judge!(user);
            else if (user.StartsWith(SynthPrompts.SelfInstructHeader, StringComparison.Ordinal) || SynthPrompts.Operations.Any(o => user.StartsWith(o.Request[..20], StringComparison.Ordinal)))
            {
                int n = _instructionRequests++;
                reply = n < Instructions.Count ? Instructions[n] ?? throw new HttpRequestException("the teacher is down") : $"Generated request number {n} about delivery times?";
            }
            else if (AnswersInTurn.TryGetValue(user, out var inTurn) && inTurn.Count > 0) reply = inTurn.Dequeue();
            else reply = Answers.TryGetValue(user, out var a) ? a : "I do not know.";
            return Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, reply)));
        }

        public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
            throw new NotSupportedException();

        public object? GetService(Type serviceType, object? serviceKey = null) => null;
        public void Dispose() { }
    }

    static string Seeds(TempDirectory dir, params string[] lines)
    {
        string path = dir.File("seeds.jsonl");
        File.WriteAllText(path, string.Join("\n", lines) + "\n");
        return path;
    }

    /// <summary>Three seeds in three shapes, each with a facts target in a different form.</summary>
    static string ThreeSeeds(TempDirectory dir) => Seeds(dir,
        $$$"""{"id": "a", "messages": [{"role": "system", "content": "{{{System}}}"}, {"role": "user", "content": "What are your support hours?"}, {"role": "assistant", "content": "From 8:00 to 20:00."}], "facts": {"contains": ["8:00 to 20:00"]}}""",
        """{"id": "b", "instruction": "How much is express shipping?", "output": "It is 9.90 euros.", "facts": "9.90 euros"}""",
        """{"id": "c", "prompt": "Which cards do you take?", "completion": "Visa, Mastercard and PayPal.", "target": ["Visa"]}""");

    const string LongEvalQuestion = "I ordered a lamp last week and the box arrived crushed so what should I do now";

    static string EvalFile(TempDirectory dir)
    {
        string path = dir.File("eval.jsonl");
        File.WriteAllText(path,
            """{"prompt": "Hi, what are your support hours at the weekend? Cheers.", "expected": {"contains": ["8:00 to 20:00"]}}""" + "\n" +
            $$$"""{"prompt": "{{{LongEvalQuestion}}}", "expected": {"contains": ["refund"]}}""" + "\n");
        return path;
    }

    static SynthChat Chat(IChatClient client) => new(client, null, "scripted");

    [Fact]
    public void With_several_answer_samples_an_example_is_kept_only_when_every_answer_passes()
    {
        using var dir = new TempDirectory();
        var teacher = new ScriptedChat();
        string[] instructions = ["When can I phone your help desk on Sundays?", "Is delivery free for big orders?", "Do you accept American Express cards?"];
        teacher.Instructions.AddRange(instructions);
        teacher.AnswersInTurn[instructions[0]] = new(["From 8:00 to 20:00 every day.", "We are there from 8:00 to 20:00.", "8:00 to 20:00, weekends too."]);
        // Drifted from seed b's express shipping to free delivery: one answer in three states b's fact.
        teacher.AnswersInTurn[instructions[1]] = new(["Express is 9.90 euros.", "Free on orders over 50 euros.", "Orders over 50 euros ship free."]);
        teacher.AnswersInTurn[instructions[2]] = new(["Only Mastercard.", "Visa and Mastercard.", "Visa."]);
        var o = new InstructSynthesisOptions(ThreeSeeds(dir), dir.File("out.jsonl"), Count: 3, Operations: ["reword"], Verify: [SynthVerifierSpec.Parse("facts")],
            AnswerSamples: 3);
        var report = InstructSynthesis.Run(o, Chat(teacher));

        Assert.Equal(3, report.Generated);
        Assert.Equal(1, report.Kept);
        Assert.Equal(1, report.Dropped[InstructSynthesis.InconsistentAnswers]);
        Assert.Equal(1, report.Dropped["failed_facts"]); // c's first answer already failed: no more samples asked
        Assert.Equal(report.Generated, report.Kept + report.DroppedTotal);
        // Outcomes count each example's first answer only.
        Assert.Equal(new Dictionary<string, int> { ["missing_fact"] = 1, ["pass"] = 2 }, report.VerifierOutcomes["facts"]);
        Assert.Equal(3 + 3 + 2 + 1, teacher.Requests.Count); // 3 instructions; answers: 3 for a, 2 for b (the second failed), 1 for c
        var kept = JsonNode.Parse(File.ReadAllLines(o.Output).Single())!;
        Assert.Equal("From 8:00 to 20:00 every day.", kept["messages"]!.AsArray()[^1]!["content"]!.GetValue<string>());
        Assert.DoesNotContain(InstructSynthesis.InconsistentAnswers, InstructSynthesis.Run(o with { AnswerSamples = 1, Output = dir.File("one.jsonl") },
            Chat(new ScriptedChat())).Dropped.Keys);
    }

    [Fact]
    public void A_seed_with_its_share_of_kept_examples_is_not_asked_again_and_the_run_ends_when_every_seed_has_its_share()
    {
        using var dir = new TempDirectory();
        var teacher = new ScriptedChat();
        string[] instructions =
        [
            /* 0 a */ "When can I phone your help desk on Sundays?",
            /* 1 b */ "What does next-day delivery to Vienna cost?",
            /* 2 c */ "Do you accept American Express cards?",
            /* 5 c */ "Can I pay for my order using a debit card instead?",
        ];
        teacher.Instructions.AddRange(instructions);
        teacher.Answers[instructions[0]] = "From 8:00 to 20:00 on every day of the week.";
        teacher.Answers[instructions[1]] = "It costs 9.90 euros.";
        teacher.Answers[instructions[2]] = "We take Mastercard.";
        teacher.Answers[instructions[3]] = "Yes: Visa debit and credit cards both work.";
        var o = new InstructSynthesisOptions(ThreeSeeds(dir), dir.File("out.jsonl"), Count: 30, Operations: ["reword"], Verify: [SynthVerifierSpec.Parse("facts")],
            KeptPerSeed: 1, Report: dir.File("report.json"));
        var report = InstructSynthesis.Run(o, Chat(teacher));

        // 0 a kept, 1 b kept, 2 c failed, 3 a and 4 b skipped, 5 c kept, then every seed has its one: the run ends at 6 of 30.
        Assert.Equal(4, report.Generated);
        Assert.Equal(3, report.Kept);
        Assert.Equal(1, report.Dropped["failed_facts"]);
        Assert.Equal(report.Generated, report.Kept + report.DroppedTotal);
        Assert.Equal(2, report.SkippedSeedFull);
        Assert.Equal(new Dictionary<string, int> { ["a"] = 1, ["b"] = 1, ["c"] = 1 }, report.KeptPerSeed);
        Assert.Equal(4 * 2, teacher.Requests.Count); // an instruction and an answer per generated example, none for the skipped
        Assert.Equal([0, 1, 5], File.ReadAllLines(o.Output).Select(l => JsonNode.Parse(l)!["provenance"]!["index"]!.GetValue<int>()));
        var json = (JsonObject)JsonNode.Parse(File.ReadAllText(o.Report!))!;
        Assert.Equal(2, json["skipped_seed_full"]!.GetValue<int>());
        Assert.Equal(3, json["kept_per_seed"]!.AsObject().Sum(p => p.Value!.GetValue<int>()));
        Assert.Throws<ArgumentException>(() => InstructSynthesis.Run(o with { KeptPerSeed = 0 }, Chat(new ScriptedChat())));
    }

    [Fact]
    public void Every_example_is_kept_or_dropped_for_one_reason_and_the_counts_add_up()
    {
        using var dir = new TempDirectory();
        var teacher = new ScriptedChat();
        string[] instructions =
        [
            /* 0 a */ "When can I call customer support during the week?",
            /* 1 b */ "   ",
            /* 2 c */ "\"what are your SUPPORT hours\"",
            /* 3 a */ "1. WHEN can I call customer support during the week",
            /* 4 b */ "Is express shipping expensive for a small parcel going to Berlin?",
            /* 5 c */ "Do you take cards?",
            /* 6 a */ "Hi, what are your support hours at the weekend? Cheers.",
            /* 7 b */ "What does the fastest delivery option cost, and how quickly does it arrive?",
            /* 8 c */ "Can I pay by bank transfer for large orders?",
            /* 9 a */ "My parcel came damaged, what now?",
        ];
        teacher.Instructions.AddRange(instructions);
        teacher.Instructions.Add(null); // 10 b: the teacher fails
        teacher.Answers[instructions[0]] = "From 8:00 to 20:00 every day, 12 euros.";
        teacher.Answers[instructions[4]] = "Express costs 12 euros.";
        teacher.Answers[instructions[5]] = "  \n ";
        teacher.Answers[instructions[6]] = "8:00 to 20:00, euros.";
        teacher.Answers[instructions[7]] = "Express delivery is 9.90 euros and arrives the next day.";
        teacher.Answers[instructions[8]] = "We accept Visa cards only.";
        teacher.Answers[instructions[9]] = "8:00 to 20:00 euros. " + LongEvalQuestion + "?";
        var o = new InstructSynthesisOptions(ThreeSeeds(dir), dir.File("out.jsonl"), Count: 11, Operations: ["reword"],
            Verify: [SynthVerifierSpec.Parse("facts"), SynthVerifierSpec.Parse("regex:euros")], Decontaminate: [EvalFile(dir)], Report: dir.File("report.json"));
        var report = InstructSynthesis.Run(o, Chat(teacher));

        Assert.Equal(11, report.Generated);
        Assert.Equal(2, report.Kept);
        var expected = new Dictionary<string, int>
        {
            ["teacher_error"] = 1, ["empty_instruction"] = 1, ["duplicate_exact_seed"] = 1, ["duplicate_near_seed"] = 0, ["duplicate_exact_generated"] = 1,
            ["duplicate_near_generated"] = 0, ["empty_answer"] = 1, ["contaminated"] = 2, ["failed_facts"] = 1, ["failed_regex"] = 1,
        };
        Assert.Equal(expected.OrderBy(p => p.Key), report.Dropped.OrderBy(p => p.Key));
        Assert.Equal(report.Generated, report.Kept + report.DroppedTotal);
        // Verifiers ran only on examples that got that far (0, 4, 7, 8), in order, until one failed (4 never met the regex).
        Assert.Equal(new Dictionary<string, int> { ["missing_fact"] = 1, ["pass"] = 3 }, report.VerifierOutcomes["facts"]);
        Assert.Equal(new Dictionary<string, int> { ["no_match"] = 1, ["pass"] = 2 }, report.VerifierOutcomes["regex"]);

        var kept = File.ReadAllLines(o.Output).Select(l => (JsonObject)JsonNode.Parse(l)!).ToList();
        Assert.Equal(2, kept.Count);
        var first = kept[0];
        var messages = first["messages"]!.AsArray();
        Assert.Equal(3, messages.Count);
        Assert.Equal(System, messages[0]!["content"]!.GetValue<string>());
        Assert.Equal(instructions[0], messages[1]!["content"]!.GetValue<string>());
        Assert.Equal("a", first["provenance"]!["seed_id"]!.GetValue<string>());
        Assert.Equal("evol", first["provenance"]!["mode"]!.GetValue<string>());
        Assert.Equal("reword", first["provenance"]!["operation"]!.GetValue<string>());
        Assert.Equal("pass", first["provenance"]!["verifiers"]!["facts"]!.GetValue<string>());
        // Seed b had no system message: the example has none either.
        Assert.Equal(2, kept[1]["messages"]!.AsArray().Count);
        Assert.Equal(7, kept[1]["provenance"]!["index"]!.GetValue<int>());

        var json = (JsonObject)JsonNode.Parse(File.ReadAllText(o.Report!))!;
        Assert.Equal(11, json["generated"]!.GetValue<int>());
        Assert.Equal(2, json["kept"]!.GetValue<int>());
        Assert.Equal(9, json["dropped_total"]!.GetValue<int>());
        Assert.Equal(9, json["dropped"]!.AsObject().Sum(p => p.Value!.GetValue<int>()));
        Assert.Equal(9 - 0, report.DroppedTotal);
        // The answer of an example dropped before answering was never asked for.
        Assert.DoesNotContain(teacher.Requests, r => r.Messages[^1].Text == "what are your SUPPORT hours");
        // Answers are asked under the seed's system message.
        Assert.Contains(teacher.Requests, r => r.Messages.Count == 2 && r.Messages[0].Text == System && r.Messages[1].Text == instructions[0]);
    }

    [Fact]
    public void Near_duplicates_of_seeds_and_of_kept_examples_are_dropped()
    {
        using var dir = new TempDirectory();
        string long1 = "Could you please tell me how many business days a standard parcel takes to reach an address in the north of Scotland";
        var teacher = new ScriptedChat();
        teacher.Instructions.AddRange([
            "Could you please tell me how many business days a standard parcel takes to reach an address in the north of Scotland, thanks",
            "Which payment methods can I use when I order a gift card for a friend who lives abroad in another country",
            "Which payment methods can I use when I order a gift card for a friend who lives abroad in another country please",
        ]);
        var seeds = Seeds(dir, $$"""{"id": "s", "question": "{{long1}}", "answer": "Two to three days."}""");
        var report = InstructSynthesis.Run(new InstructSynthesisOptions(seeds, dir.File("out.jsonl"), Count: 3), Chat(teacher));
        Assert.Equal(1, report.Dropped["duplicate_near_seed"]);
        Assert.Equal(0, report.Dropped["duplicate_exact_seed"] + report.Dropped["duplicate_exact_generated"]);
        Assert.Equal(1, report.Dropped["duplicate_near_generated"]);
        Assert.Equal(1, report.Kept);

        // Exact duplicates only (threshold 1): all three are kept.
        var again = new ScriptedChat();
        again.Instructions.AddRange(teacher.Instructions);
        var exactOnly = InstructSynthesis.Run(new InstructSynthesisOptions(seeds, dir.File("out2.jsonl"), Count: 3, NearThreshold: 1), Chat(again));
        Assert.Equal(3, exactOnly.Kept);
    }

    [Fact]
    public void The_index_finds_exact_duplicates_after_normalization_and_near_ones_by_jaccard()
    {
        var index = new DuplicateIndex(0.8, 5, Hone.DataTools.ShingleKind.Character, 7);
        index.Add("What are your support hours?", true, "seed a");
        var exact = index.Find("  what ARE your support hours ");
        Assert.NotNull(exact);
        Assert.Equal(Hone.DataTools.DuplicateKind.Exact, exact!.Kind);
        Assert.True(exact.OfSeed);
        Assert.Equal("seed a", exact.Of);
        Assert.Null(index.Find("How much is express shipping to Spain?"));
        string text = "The quick brown fox jumps over the lazy dog while the farmer watches from the old wooden gate near the barn";
        index.Add(text, false, "example 3");
        var near = index.Find(text + " today");
        Assert.NotNull(near);
        Assert.Equal(Hone.DataTools.DuplicateKind.Near, near!.Kind);
        Assert.False(near.OfSeed);
        Assert.InRange(near.Jaccard, 0.8, 1.0);
    }

    [Fact]
    public void Json_schema_and_judge_verifiers_drop_what_they_must()
    {
        using var dir = new TempDirectory();
        string schema = dir.File("schema.json");
        File.WriteAllText(schema, """{"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"], "additionalProperties": false}""");
        var teacher = new ScriptedChat();
        string[] instructions = ["Question one about hours?", "Question two about parcels?", "Question three about returns?", "Question four about cards?"];
        teacher.Instructions.AddRange(instructions);
        teacher.Answers[instructions[0]] = """{"answer": "good"}""";
        teacher.Answers[instructions[1]] = """{"answer": 5}""";
        teacher.Answers[instructions[2]] = """{"answer": "bad"}""";
        teacher.Answers[instructions[3]] = """{"answer": "unsure"}""";
        var judge = new ScriptedChat
        {
            Judge = prompt => prompt.Contains("\"good\"", StringComparison.Ordinal) ? "PASS" : prompt.Contains("\"bad\"", StringComparison.Ordinal) ? "**FAIL**" : "I think so",
        };
        var o = new InstructSynthesisOptions(Seeds(dir, """{"question": "Tell me about the shop", "answer": "{}"}"""), dir.File("out.jsonl"), Count: 4,
            Verify: [SynthVerifierSpec.Parse("json-schema:" + schema), SynthVerifierSpec.Parse("judge:The answer must be good.")]);
        var report = InstructSynthesis.Run(o, Chat(teacher), new SynthChat(judge, "judge-model", "judge"));
        Assert.Equal(1, report.Kept);
        Assert.Equal(1, report.Dropped["failed_json_schema"]);
        Assert.Equal(2, report.Dropped["failed_judge"]);
        Assert.Equal(new Dictionary<string, int> { ["judge_fail"] = 1, ["judge_unclear"] = 1, ["pass"] = 1 }, report.VerifierOutcomes["judge"]);
        // The judge saw the rubric, the request and the response, greedily, under its model name.
        var (messages, options) = judge.Requests.First();
        Assert.Equal(SynthPrompts.JudgeSystem, messages[0].Text);
        Assert.Equal(SynthPrompts.Judge("The answer must be good.", instructions[0], """{"answer": "good"}"""), messages[1].Text);
        Assert.Equal(0f, options!.Temperature);
        Assert.Equal("judge-model", options.ModelId);
        // The schema verifier ran on all four, the judge only on the three that passed it.
        Assert.Equal(3, judge.Requests.Count);
    }

    [Fact]
    public void The_command_verifier_runs_the_checker_with_the_example_in_its_templates()
    {
        using var dir = new TempDirectory();
        string checker = dir.File("checker.json");
        File.WriteAllText(checker, """{"command": ["sh", "-c", "test \"$(cat)\" = \"{topic}: yes\""], "stdin": "{topic}: {answer}"}""");
        var teacher = new ScriptedChat();
        teacher.Instructions.AddRange(["First question here?", "Second question here?"]);
        teacher.Answers["First question here?"] = "yes";
        teacher.Answers["Second question here?"] = "no";
        var sandbox = CommandSandbox.Current;
        var o = new InstructSynthesisOptions(Seeds(dir, """{"question": "Q?", "answer": "A.", "topic": "hours"}"""), dir.File("out.jsonl"), Count: 2,
            Verify: [SynthVerifierSpec.Parse("command:" + checker)], AllowNetwork: !sandbox.SandboxAvailable && !sandbox.NetworkNamespace,
            AllowUnsandboxed: !sandbox.SandboxAvailable);
        var report = InstructSynthesis.Run(o, Chat(teacher));
        Assert.Equal(1, report.Kept);
        Assert.Equal(1, report.Dropped["failed_command"]);
        Assert.Equal(new Dictionary<string, int> { ["exit_1"] = 1, ["pass"] = 1 }, report.VerifierOutcomes["command"]);
    }

    [Fact]
    public void Self_instruct_shows_k_seed_requests_and_the_same_seed_gives_the_same_prompts_and_sampling()
    {
        using var dir = new TempDirectory();
        var seeds = Seeds(dir, Enumerable.Range(0, 6).Select(i => $$"""{"id": "s{{i}}", "question": "Seed question number {{i}}?", "answer": "Answer {{i}}."}""").ToArray());
        List<(IReadOnlyList<ChatMessage> Messages, ChatOptions? Options)> RunOnce(ulong seed, string output)
        {
            var teacher = new ScriptedChat();
            InstructSynthesis.Run(new InstructSynthesisOptions(seeds, dir.File(output), Count: 12, Mode: SynthMode.SelfInstruct, Examples: 3, Seed: seed), Chat(teacher));
            return teacher.Requests.ToList();
        }
        var a = RunOnce(5, "a.jsonl");
        var b = RunOnce(5, "b.jsonl");
        var c = RunOnce(6, "c.jsonl");
        var instructionPrompts = a.Where(r => r.Messages[^1].Text.StartsWith(SynthPrompts.SelfInstructHeader, StringComparison.Ordinal)).ToList();
        Assert.Equal(12, instructionPrompts.Count);
        for (int i = 0; i < 12; i++)
        {
            string prompt = instructionPrompts[i].Messages[^1].Text;
            var shown = prompt.Split('\n').Where(l => l.Length > 3 && char.IsAsciiDigit(l[0]) && l[1] == '.').ToList();
            Assert.Equal(3, shown.Count);
            Assert.Equal(3, shown.Distinct().Count());
            // The seed example i derives from is among those shown.
            Assert.Contains(shown, l => l.EndsWith($"Seed question number {i % 6}?", StringComparison.Ordinal));
        }
        Assert.Equal(a.Select(r => (r.Messages[^1].Text, r.Options!.Seed, r.Options.Temperature)), b.Select(r => (r.Messages[^1].Text, r.Options!.Seed, r.Options.Temperature)));
        Assert.Equal(File.ReadAllBytes(dir.File("a.jsonl")), File.ReadAllBytes(dir.File("b.jsonl")));
        Assert.NotEqual(a.Select(r => r.Options!.Seed), c.Select(r => r.Options!.Seed));
        Assert.NotEqual(a.Select(r => r.Messages[^1].Text), c.Select(r => r.Messages[^1].Text));
    }

    [Fact]
    public void Bad_seed_lines_are_one_line_errors_naming_the_line()
    {
        using var dir = new TempDirectory();
        string good = """{"question": "Q?", "answer": "A."}""";
        (string Line, string Message)[] cases =
        [
            ("{\"question\": \"Q?\"", "not valid JSON"),
            ("[1, 2]", "a seed must be a JSON object"),
            ("""{"text": "just text"}""", "unrecognized record"),
            ("""{"messages": [{"role": "assistant", "content": "hello"}]}""", "no user message"),
            ("""{"id": 5, "question": "Q?", "answer": "A."}""", "used twice"),
            ("""{"id": {"a": 1}, "question": "Q?", "answer": "A."}""", "\"id\" must be"),
        ];
        foreach (var (line, message) in cases)
        {
            string path = Seeds(dir, """{"id": 5, "question": "Q?", "answer": "A."}""", "", line, good);
            var e = Assert.Throws<DataFormatException>(() => SynthSeeds.Read(path));
            Assert.StartsWith($"{path}:3: ", e.Message);
            Assert.Contains(message, e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
        // A facts verifier needs every seed's target, named by line, before anything is generated.
        var teacher = new ScriptedChat();
        string noTarget = Seeds(dir, """{"question": "Q?", "answer": "A.", "facts": "A"}""", good);
        var missing = Assert.Throws<FormatException>(() =>
            InstructSynthesis.Run(new InstructSynthesisOptions(noTarget, dir.File("out.jsonl"), Count: 2, Verify: [SynthVerifierSpec.Parse("facts")]), Chat(teacher)));
        Assert.StartsWith($"{noTarget}:2: ", missing.Message);
        Assert.Empty(teacher.Requests);
        Assert.False(File.Exists(dir.File("out.jsonl")));
        Assert.Throws<ArgumentException>(() => SynthVerifierSpec.Parse("regex"));
        Assert.Throws<ArgumentException>(() => SynthVerifierSpec.Parse("spelling:en"));
    }

    [Fact]
    public void The_cli_names_the_bad_seed_line_in_one_line_and_writes_nothing()
    {
        using var dir = new TempDirectory();
        string seeds = Seeds(dir, """{"question": "Q?", "answer": "A."}""", """{"question": 5, "answer": "A."}""");
        var r = HoneCli.Run("synth", "instruct", "--teacher-endpoint", "http://127.0.0.1:9/v1", "--teacher-model", "m", "--seeds", seeds, "--out", dir.File("out.jsonl"));
        Assert.Equal(1, r.ExitCode);
        var error = r.Stderr.Trim();
        Assert.DoesNotContain('\n', error);
        Assert.StartsWith($"error: {seeds}:2: ", error);
        Assert.False(File.Exists(dir.File("out.jsonl")));
    }

    [Fact]
    public void A_teacher_that_fails_from_the_start_stops_the_run_with_its_error()
    {
        using var dir = new TempDirectory();
        var teacher = new ScriptedChat();
        teacher.Instructions.AddRange(Enumerable.Repeat<string?>(null, 10));
        string output = dir.File("out.jsonl");
        var e = Assert.Throws<InvalidOperationException>(() =>
            InstructSynthesis.Run(new InstructSynthesisOptions(Seeds(dir, """{"question": "Q?", "answer": "A."}"""), output, Count: 10), Chat(teacher)));
        Assert.Contains("the teacher is down", e.Message);
        Assert.Equal(InstructSynthesis.FailFastErrors, teacher.Requests.Count);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void An_interrupted_run_leaves_no_output()
    {
        using var dir = new TempDirectory();
        using var cancel = new CancellationTokenSource();
        var teacher = new ScriptedChat { OnRequest = n => { if (n == 5) cancel.Cancel(); } };
        string output = dir.File("out.jsonl");
        Assert.ThrowsAny<OperationCanceledException>(() =>
            InstructSynthesis.Run(new InstructSynthesisOptions(Seeds(dir, """{"question": "Q?", "answer": "A."}"""), output, Count: 10, Report: dir.File("r.json")),
                Chat(teacher), cancel: cancel.Token));
        Assert.Equal([dir.File("seeds.jsonl")], Directory.GetFiles(dir.Path));
    }

    /// <summary>A tiny random model with a context long enough for the prompts (the shared tiny chat model has 128).</summary>
    static readonly Lazy<string> LongContextModel = new(() => TinyChatModel.Build("synth", vocab => new ModelConfig
    {
        Architecture = "llama", VocabSize = vocab, HiddenSize = 32, IntermediateSize = 64, Layers = 2, Heads = 2, KvHeads = 1,
        HeadDim = 16, RotaryDims = 16, MaxPositions = 1024, TiedEmbeddings = false,
    }, seed: 11, std: 0.05f, embeddingStd: 0.1f));

    [Fact]
    public void A_local_model_teacher_gives_the_same_file_for_the_same_seed()
    {
        using var dir = new TempDirectory();
        var seeds = ThreeSeeds(dir);
        InstructSynthesisReport Run(ulong seed, string output)
        {
            using var teacher = SynthChat.Local(LongContextModel.Value, null, threads: 1);
            return InstructSynthesis.Run(new InstructSynthesisOptions(seeds, dir.File(output), Count: 6, InstructionTokens: 12, AnswerTokens: 12, Seed: seed,
                Dedup: SynthDedup.Example, Verify: [SynthVerifierSpec.Parse("regex:.")], Report: dir.File(output + ".report.json")), teacher);
        }
        var a = Run(3, "a.jsonl");
        var b = Run(3, "b.jsonl");
        var c = Run(4, "c.jsonl");
        Assert.Equal(6, a.Kept + a.DroppedTotal);
        Assert.Equal(6, c.Kept + c.DroppedTotal);
        Assert.True(a.Kept > 0, a.ToString());
        Assert.Equal(a.Dropped, b.Dropped);
        Assert.Equal(File.ReadAllBytes(dir.File("a.jsonl")), File.ReadAllBytes(dir.File("b.jsonl")));
        Assert.NotEqual(File.ReadAllText(dir.File("a.jsonl")), File.ReadAllText(dir.File("c.jsonl")));
    }

    /// <summary>An OpenAI-compatible chat endpoint on loopback (non-streaming): a rewrite request gets a new question, any
    /// other message an answer stating the fact for questions about hours and not otherwise.</summary>
    sealed class FakeEndpoint : LoopbackHttpServer
    {
        public readonly ConcurrentQueue<JsonObject> Requests = new();
        public Uri Address => new Uri(Root, "v1");

        protected override async Task Serve(HttpListenerContext context)
        {
            try
            {
                var body = (JsonObject)JsonNode.Parse(await new StreamReader(context.Request.InputStream).ReadToEndAsync())!;
                Requests.Enqueue(body);
                string user = body["messages"]!.AsArray().Last()!["content"]!.GetValue<string>();
                long seed = body["seed"]?.GetValue<long>() ?? 0;
                string reply = user.StartsWith("Rewrite", StringComparison.Ordinal)
                    ? (seed % 2 == 0 ? "When does support open in the morning" : "How late can I call support on a Sunday evening") + (user.Contains("hours", StringComparison.Ordinal) ? "?" : " about shipping?")
                    : user.Contains("support", StringComparison.Ordinal) && !user.Contains("shipping", StringComparison.Ordinal) ? "Support is open from 8:00 to 20:00." : "Please ask again.";
                await WriteChatCompletionAsync(context, body["model"]!.GetValue<string>(), new JsonObject { ["role"] = "assistant", ["content"] = reply }, "stop");
            }
            catch (Exception e) when (e is HttpListenerException or IOException or ObjectDisposedException) { }
        }
    }

    [Fact]
    public void An_endpoint_teacher_through_the_cli_keeps_what_the_facts_checker_passes_and_reports_counts_that_add_up()
    {
        using var dir = new TempDirectory();
        using var server = new FakeEndpoint();
        string seeds = Seeds(dir,
            """{"id": "hours", "messages": [{"role": "user", "content": "What are your support hours?"}, {"role": "assistant", "content": "8:00 to 20:00."}], "facts": "8:00 to 20:00"}""",
            """{"id": "ship", "messages": [{"role": "user", "content": "Is shipping free?"}, {"role": "assistant", "content": "Over 50 euros."}], "facts": "50 euros"}""");
        var r = HoneCli.Run("synth", "instruct", "--teacher-endpoint", server.Address.ToString(), "--teacher-model", "teacher-x", "--seeds", seeds,
            "--out", dir.File("out.jsonl"), "--count", "8", "--operations", "reword", "--verify", "facts", "--report", dir.File("report.json"), "--seed", "9");
        Assert.True(r.ExitCode == 0, r.ToString());
        var report = (JsonObject)JsonNode.Parse(File.ReadAllText(dir.File("report.json")))!;
        int kept = report["kept"]!.GetValue<int>();
        var dropped = report["dropped"]!.AsObject().ToDictionary(p => p.Key, p => p.Value!.GetValue<int>());
        Assert.Equal(8, kept + dropped.Values.Sum());
        // The hours seed's rewordings are answered with the fact, the shipping seed's are not. The endpoint knows two
        // rewordings per seed: two of the hours seed's four are duplicates of kept ones; a dropped example is not
        // remembered, so all four of the shipping seed's fail the facts checker.
        Assert.Equal(2, kept);
        Assert.Equal(4, dropped["failed_facts"]);
        Assert.Equal(2, dropped["duplicate_exact_generated"]);
        Assert.Equal(2, File.ReadAllLines(dir.File("out.jsonl")).Length);
        Assert.Contains("2 kept", r.Stdout);
        // Every request named the model and carried the run's sampling.
        Assert.All(server.Requests, q => Assert.Equal("teacher-x", q["model"]!.GetValue<string>()));
        Assert.All(server.Requests, q => Assert.Equal(0.7, q["temperature"]!.GetValue<double>(), 3));
        Assert.All(server.Requests, q => Assert.NotNull(q["seed"]));
    }
}
