using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.DataTools;
using Hone.Evaluation;
using Hone.Formats;
using Hone.Tensors;
using Microsoft.Extensions.AI;

namespace Hone.Synthesis;

/// <summary>What deduplication compares: the new instruction (before its answer is asked for), the whole example, or nothing.</summary>
public enum SynthDedup { Instruction, Example, Off }

/// <param name="Seeds">seed conversations (JSONL, any shape the training loader reads)</param>
/// <param name="Output">kept examples (JSONL messages with provenance), written under a temporary name and renamed when complete</param>
/// <param name="Count">examples generated (kept and dropped together)</param>
/// <param name="Operations">evol: the operations drawn from (null: all of <see cref="SynthPrompts.Operations"/>)</param>
/// <param name="Examples">self-instruct: seed instructions shown per request</param>
/// <param name="Temperature">sampling temperature of the teacher's instructions and answers (the judge is greedy)</param>
/// <param name="NearThreshold">near-duplicate MinHash Jaccard threshold (character 5-grams); 1 = exact duplicates only</param>
/// <param name="DecontaminateNgram">the word n-gram decontamination matches (13 is GPT-3's; short evaluation prompts need fewer)</param>
/// <param name="Report">also write the report here (JSON)</param>
/// <param name="AnswerSamples">answer each new instruction this many times (self-consistency): the example is kept, with
/// its first answer, only when every answer passes every verifier. An instruction that drifted from its seed's meaning
/// can still get one answer stating the seed's fact; it rarely gets several.</param>
/// <param name="KeptPerSeed">stop deriving from a seed once this many of its examples are kept (null: no limit), so the
/// seeds the teacher finds easy do not crowd out the rest; the run ends early when every seed has its share</param>
public sealed record InstructSynthesisOptions(string Seeds, string Output, int Count = 100, SynthMode Mode = SynthMode.Evol,
    IReadOnlyList<string>? Operations = null, int Examples = 3, float Temperature = 0.7f, float TopP = 0.95f, int InstructionTokens = 64,
    int AnswerTokens = 128, IReadOnlyList<SynthVerifierSpec>? Verify = null, IReadOnlyList<string>? Decontaminate = null, int DecontaminateNgram = 13,
    SynthDedup Dedup = SynthDedup.Instruction, double NearThreshold = 0.8, ulong Seed = 1, string? Report = null,
    bool AllowNetwork = false, bool AllowUnsandboxed = false, int? KeptPerSeed = null, int AnswerSamples = 1);

/// <summary>The counts of a run: every generated example is kept or dropped for exactly one reason (the first met, in
/// the order of <see cref="InstructSynthesis.DropReasons"/>), so kept + Σ dropped = generated. With a per-seed quota,
/// the examples of a seed that already had its share are not generated (SkippedSeedFull, no teacher call), so
/// generated + skipped ≤ count, and KeptPerSeed (in seed order) sums to kept.</summary>
public sealed record InstructSynthesisReport(int Seeds, int Generated, int Kept, IReadOnlyDictionary<string, int> Dropped,
    IReadOnlyDictionary<string, IReadOnlyDictionary<string, int>> VerifierOutcomes, IReadOnlyList<string> DropExamples, string Teacher, string Mode,
    string Output, double Seconds, int SkippedSeedFull = 0, IReadOnlyDictionary<string, int>? KeptPerSeed = null)
{
    public int DroppedTotal => Dropped.Values.Sum();

    public JsonObject ToJson()
    {
        var dropped = new JsonObject();
        foreach (var (k, v) in Dropped) dropped[k] = v;
        var perSeed = new JsonObject();
        foreach (var (k, v) in KeptPerSeed ?? new Dictionary<string, int>()) perSeed[k] = v;
        var verifiers = new JsonObject();
        foreach (var (name, outcomes) in VerifierOutcomes)
        {
            var o = new JsonObject();
            foreach (var (k, v) in outcomes) o[k] = v;
            verifiers[name] = o;
        }
        return new JsonObject
        {
            ["seeds"] = Seeds, ["generated"] = Generated, ["kept"] = Kept, ["dropped_total"] = DroppedTotal, ["dropped"] = dropped,
            ["verifier_outcomes"] = verifiers, ["drop_examples"] = DataJson.Strings(DropExamples), ["teacher"] = Teacher, ["mode"] = Mode,
            ["output"] = Output, ["seconds"] = Math.Round(Seconds, 2), ["skipped_seed_full"] = SkippedSeedFull, ["kept_per_seed"] = perSeed,
        };
    }

    public override string ToString()
    {
        var b = new StringBuilder();
        b.AppendLine($"{Generated:N0} generated from {Seeds:N0} seeds ({Mode}, teacher {Teacher}) in {Seconds:F1} s: {Kept:N0} kept → {Output}, {DroppedTotal:N0} dropped");
        if (SkippedSeedFull > 0) b.AppendLine($"  {SkippedSeedFull:N0} not generated: their seed already had its share of kept examples");
        if (KeptPerSeed is { Count: > 0 } perSeed)
            b.AppendLine($"  kept per seed: {perSeed.Values.Min()} to {perSeed.Values.Max()}, {perSeed.Values.Count(v => v == 0)} seeds with none");
        foreach (var (reason, n) in Dropped.Where(d => d.Value > 0)) b.AppendLine($"  {reason,-28} {n,6:N0}");
        foreach (var (name, outcomes) in VerifierOutcomes)
            b.AppendLine($"  verifier {name}: " + string.Join(", ", outcomes.Select(o => $"{o.Key} {o.Value:N0}")));
        foreach (var e in DropExamples.Take(6)) b.AppendLine($"  e.g. {e}");
        return b.ToString().TrimEnd();
    }
}

/// <summary>
/// <c>hone synth instruct</c>: synthetic instruction data from a teacher. For each of Count examples (the i-th derives
/// from seed i mod seeds): make a new instruction (self-instruct or evol, <see cref="SynthPrompts"/>), have the teacher
/// answer it under the seed's system message, then drop it if it duplicates a seed or a kept example, overlaps an
/// evaluation set, or fails a verifier. Every random choice of example i comes from (seed, i), and requests go one at
/// a time, so a local teacher gives the same file for the same seed.
/// </summary>
public static class InstructSynthesis
{
    /// <summary>Drop reasons in the order they are tested (failed_VERIFIER for each verifier, in order, comes last).</summary>
    public static readonly IReadOnlyList<string> DropReasons =
        ["teacher_error", "empty_instruction", "duplicate_exact_seed", "duplicate_near_seed", "duplicate_exact_generated", "duplicate_near_generated",
         "empty_answer", "contaminated"];

    /// <summary>With more than one answer sample: a later answer failed a verifier the first passed (tested after every
    /// failed_VERIFIER).</summary>
    public const string InconsistentAnswers = "inconsistent_answers";

    const int MaxDropExamples = 3;

    /// <summary>When the teacher has failed on each of the first this many examples, the run stops with its error: an
    /// unreachable endpoint or a prompt too long for the model is a setup problem, not data to count.</summary>
    public const int FailFastErrors = 5;

    public static InstructSynthesisReport Run(InstructSynthesisOptions o, SynthChat teacher, SynthChat? judge = null, Action<string>? progress = null,
        CancellationToken cancel = default)
    {
        if (o.Count < 1) throw new ArgumentException($"--count must be at least 1, found {o.Count}");
        if (o.Examples < 1) throw new ArgumentException($"--examples must be at least 1, found {o.Examples}");
        if (o.InstructionTokens < 1 || o.AnswerTokens < 1) throw new ArgumentException("--instruction-tokens and --answer-tokens must be at least 1");
        if (o.AnswerSamples < 1) throw new ArgumentException($"--answer-samples must be at least 1, found {o.AnswerSamples}");
        if (o.KeptPerSeed is < 1) throw new ArgumentException($"--kept-per-seed must be at least 1, found {o.KeptPerSeed}");
        var clock = Stopwatch.StartNew();
        var seeds = SynthSeeds.Read(o.Seeds);
        var operations = (o.Operations is { Count: > 0 } names ? names.Distinct() : SynthPrompts.Operations.Select(x => x.Name)).Select(SynthPrompts.Operation).ToList();
        var verifiers = SynthVerifiers.Create(o.Verify ?? [], seeds, new Checkers.Settings(o.AllowNetwork, o.AllowUnsandboxed), judge ?? teacher, o.Seeds);
        var contamination = o.Decontaminate is { Count: > 0 } evals ? new ContaminationCheck(evals, o.DecontaminateNgram) : null;
        var dedup = o.Dedup == SynthDedup.Off ? null : new DuplicateIndex(o.NearThreshold, 5, ShingleKind.Character, o.Seed);
        if (dedup != null)
            foreach (var s in seeds) dedup.Add(DedupText(o.Dedup, s.Instruction, s.Answer ?? ""), true, $"seed {s.Id}");

        var dropped = new Dictionary<string, int>();
        foreach (var r in DropReasons) dropped[r] = 0;
        foreach (var v in verifiers) dropped[$"failed_{v.Name}"] = 0;
        if (o.AnswerSamples > 1) dropped[InconsistentAnswers] = 0;
        var outcomes = verifiers.ToDictionary(v => v.Name, _ => new SortedDictionary<string, int>(StringComparer.Ordinal));
        var examples = new List<string>();
        var perReasonExamples = new Dictionary<string, int>();
        int kept = 0, generated = 0, skipped = 0;
        var keptPerSeed = new int[seeds.Count];
        string mode = o.Mode == SynthMode.Evol ? "evol" : "self-instruct";

        using var pending = AtomicFile.Begin(o.Output);
        using (var writer = new StreamWriter(pending.Stream, new UTF8Encoding(false), leaveOpen: true) { NewLine = "\n" })
        {
            for (int i = 0; i < o.Count; i++)
            {
                cancel.ThrowIfCancellationRequested();
                if (o.KeptPerSeed is { } quota)
                {
                    if (keptPerSeed.All(k => k >= quota)) break;
                    if (keptPerSeed[i % seeds.Count] >= quota) { skipped++; continue; }
                }
                generated++;
                if (i > 0 && i % 10 == 0) progress?.Invoke($"{i}/{o.Count} considered, {generated} generated, {kept} kept");
                var random = new Xoshiro256(Xoshiro256.SplitMix64(o.Seed ^ Xoshiro256.SplitMix64(0x5E7A_11CE_0000UL + (ulong)i)));
                var seed = seeds[i % seeds.Count];
                string operation, request;
                if (o.Mode == SynthMode.Evol)
                {
                    var op = operations[random.NextInt(operations.Count)];
                    operation = op.Name;
                    request = SynthPrompts.Evol(op, seed.Instruction);
                }
                else
                {
                    operation = "self-instruct";
                    var others = Enumerable.Range(0, seeds.Count).Where(j => j != i % seeds.Count).ToList();
                    var shown = new List<string> { seed.Instruction };
                    for (int k = 1; k < o.Examples && others.Count > 0; k++)
                    {
                        int pick = random.NextInt(others.Count);
                        shown.Add(seeds[others[pick]].Instruction);
                        others.RemoveAt(pick);
                    }
                    // The derived-from seed is not always shown first, so the teacher does not just continue it.
                    int at = random.NextInt(shown.Count);
                    (shown[0], shown[at]) = (shown[at], shown[0]);
                    request = SynthPrompts.SelfInstruct(shown);
                }

                void Drop(string reason, string detail)
                {
                    if (reason == "teacher_error" && dropped[reason] + 1 == generated && generated == FailFastErrors)
                        throw new InvalidOperationException($"the teacher failed on each of the first {FailFastErrors} examples; the last error: {detail}");
                    dropped[reason]++;
                    if (perReasonExamples.GetValueOrDefault(reason) < MaxDropExamples)
                    {
                        perReasonExamples[reason] = perReasonExamples.GetValueOrDefault(reason) + 1;
                        examples.Add($"#{i} ({reason}): {Preview(detail)}");
                    }
                }

                string instruction;
                try
                {
                    instruction = SynthPrompts.CleanInstruction(teacher.AskAsync(null, request, Sampling(o, o.InstructionTokens, random), cancel).GetAwaiter().GetResult());
                }
                catch (Exception e) when (e is not OperationCanceledException || !cancel.IsCancellationRequested) { Drop("teacher_error", e.Message); continue; }
                if (instruction.Length == 0) { Drop("empty_instruction", "(the teacher wrote no instruction)"); continue; }
                if (o.Dedup == SynthDedup.Instruction && dedup!.Find(instruction) is { } dupe) { Drop(DuplicateReason(dupe), $"{instruction} ≈ {dupe.Of}"); continue; }

                string answer;
                try { answer = teacher.AskAsync(seed.System, instruction, Sampling(o, o.AnswerTokens, random), cancel).GetAwaiter().GetResult().Trim(); }
                catch (Exception e) when (e is not OperationCanceledException || !cancel.IsCancellationRequested) { Drop("teacher_error", e.Message); continue; }
                if (answer.Length == 0) { Drop("empty_answer", instruction); continue; }
                if (contamination?.Match(instruction, answer) is { } where) { Drop("contaminated", $"{instruction} — shares {where}"); continue; }
                if (o.Dedup == SynthDedup.Example && dedup!.Find(DedupText(o.Dedup, instruction, answer)) is { } same) { Drop(DuplicateReason(same), $"{instruction} ≈ {same.Of}"); continue; }

                var candidate = new SynthCandidate(i, seed, operation, instruction, answer);
                var results = new JsonObject();
                string? failed = null;
                foreach (var v in verifiers)
                {
                    // In order; the first failure decides, and a judge or command after it is not paid for.
                    var r = v.CheckAsync(candidate, cancel).GetAwaiter().GetResult();
                    results[v.Name] = r.Outcome;
                    outcomes[v.Name][r.Outcome] = outcomes[v.Name].GetValueOrDefault(r.Outcome) + 1;
                    if (!r.Passed) { failed = v.Name; break; }
                }
                if (failed != null) { Drop($"failed_{failed}", $"{instruction} → {answer} ({results[failed]})"); continue; }

                // Self-consistency: the later answers are checked by the same verifiers but not counted in their
                // outcomes, which stay one per example that reached them.
                string? inconsistent = null;
                bool teacherFailed = false;
                for (int k = 1; k < o.AnswerSamples && inconsistent == null; k++)
                {
                    string again;
                    try { again = teacher.AskAsync(seed.System, instruction, Sampling(o, o.AnswerTokens, random), cancel).GetAwaiter().GetResult().Trim(); }
                    catch (Exception e) when (e is not OperationCanceledException || !cancel.IsCancellationRequested) { Drop("teacher_error", e.Message); teacherFailed = true; break; }
                    var check = candidate with { Answer = again };
                    foreach (var v in verifiers)
                    {
                        var r = v.CheckAsync(check, cancel).GetAwaiter().GetResult();
                        if (!r.Passed) { inconsistent = $"{instruction} → answer {k + 1}: {again} ({v.Name}: {r.Outcome})"; break; }
                    }
                }
                if (teacherFailed) continue;
                if (inconsistent != null) { Drop(InconsistentAnswers, inconsistent); continue; }

                dedup?.Add(DedupText(o.Dedup, instruction, answer), false, $"example {i}");
                kept++;
                keptPerSeed[i % seeds.Count]++;
                writer.WriteLine(Record(seed, instruction, answer, mode, operation, i, teacher.Name, results).ToJsonString(new JsonSerializerOptions { Encoder = DataJson.Readable.Encoder }));
            }
        }
        var perSeed = new Dictionary<string, int>();
        for (int s = 0; s < seeds.Count; s++) perSeed[seeds[s].Id] = keptPerSeed[s];
        var report = new InstructSynthesisReport(seeds.Count, generated, kept, dropped,
            outcomes.ToDictionary(p => p.Key, p => (IReadOnlyDictionary<string, int>)p.Value), examples, teacher.Name, mode, o.Output, clock.Elapsed.TotalSeconds,
            skipped, perSeed);
        if (kept + report.DroppedTotal != generated) throw new InvalidOperationException($"the counts do not add up: {kept} kept + {report.DroppedTotal} dropped ≠ {generated} generated");
        if (o.Report != null)
        {
            using var reportFile = AtomicFile.Begin(o.Report);
            reportFile.Stream.Write(Encoding.UTF8.GetBytes(report.ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = DataJson.Readable.Encoder }) + "\n"));
            pending.Commit();
            reportFile.Commit();
        }
        else pending.Commit();
        return report;
    }

    static ChatOptions Sampling(InstructSynthesisOptions o, int maxTokens, Xoshiro256 random) => new()
    {
        Temperature = o.Temperature, TopP = o.TopP, MaxOutputTokens = maxTokens, Seed = (long)(random.NextUInt64() >> 1),
    };

    static string DedupText(SynthDedup dedup, string instruction, string answer) => dedup == SynthDedup.Example ? instruction + "\n" + answer : instruction;

    static string DuplicateReason(DuplicateMatch d) =>
        $"duplicate_{(d.Kind == DuplicateKind.Exact ? "exact" : "near")}_{(d.OfSeed ? "seed" : "generated")}";

    static string Preview(string text)
    {
        string one = text.ReplaceLineEndings(" ");
        return one.Length <= 160 ? one : one[..157] + "...";
    }

    /// <summary>A kept example: {"messages": [system?, user, assistant], "provenance": {...}}.</summary>
    static JsonObject Record(SynthSeed seed, string instruction, string answer, string mode, string operation, int index, string teacher, JsonObject verifiers)
    {
        var messages = new JsonArray();
        if (seed.System != null) messages.Add((JsonNode)new JsonObject { ["role"] = "system", ["content"] = seed.System });
        messages.Add((JsonNode)new JsonObject { ["role"] = "user", ["content"] = instruction });
        messages.Add((JsonNode)new JsonObject { ["role"] = "assistant", ["content"] = answer });
        return new JsonObject
        {
            ["messages"] = messages,
            ["provenance"] = new JsonObject
            {
                ["seed_id"] = seed.Id, ["seed_line"] = seed.Line, ["mode"] = mode, ["operation"] = operation, ["index"] = index, ["teacher"] = teacher,
                ["verifiers"] = verifiers,
            },
        };
    }
}
