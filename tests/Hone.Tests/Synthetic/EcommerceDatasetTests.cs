using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Hone.Synthetic;
using Hone.Inference;
using Hone.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;
using Hone.Tensors;
using Hone.Formats;
using Hone.Tokenization;

namespace Hone.Tests.Synthetic;

public class EcommerceDatasetTests(ITestOutputHelper output)
{
    static readonly Lazy<EcommerceData> Data = new(() => EcommerceDataset.Generate(new EcommerceOptions(Seed: 3, Count: 1500)));

    [Fact]
    public void Is_deterministic_and_split_as_asked()
    {
        var data = Data.Value;
        var again = EcommerceDataset.Generate(new EcommerceOptions(Seed: 3, Count: 1500));
        Assert.Equal(data.Train.Select(c => c.Messages), again.Train.Select(c => c.Messages), new MessagesComparer());
        Assert.Equal(1350, data.Train.Count);
        Assert.Equal(150, data.HeldOut.Count);
        Assert.Equal(150, data.Evaluation.Count);
        var other = EcommerceDataset.Generate(4, 50);
        Assert.NotEqual(data.Train[0].Messages[^1].Content, other.Train[0].Messages[^1].Content);
    }

    [Fact]
    public void Conversations_have_the_sft_shape_with_the_facts_in_the_system_message()
    {
        foreach (var c in Data.Value.Train.Concat(Data.Value.HeldOut))
        {
            Assert.Equal("system", c.Messages[0].Role);
            Assert.Contains(c.Facts.Shop.Name, c.Messages[0].Content);
            Assert.Contains($"Order: {c.Facts.OrderId}\n", c.Messages[0].Content);
            Assert.Equal(1 + 2 * c.Intents.Count, c.Messages.Count);
            for (int i = 1; i < c.Messages.Count; i++) Assert.Equal(i % 2 == 1 ? "user" : "assistant", c.Messages[i].Role);
            Assert.DoesNotContain("\n\n", c.PlainText);
            Assert.DoesNotMatch(@"[{}\[\]\u0001\u0002]", string.Join("", c.Messages.Skip(1).Select(m => m.Content)));
        }
    }

    [Fact]
    public void Every_kept_answer_passes_the_verifier_and_restates_the_record()
    {
        int answers = 0;
        foreach (var c in Data.Value.Train.Concat(Data.Value.HeldOut))
            for (int t = 0; t < c.Intents.Count; t++)
            {
                string answer = c.Messages[2 + 2 * t].Content;
                var verdict = EcommerceVerifier.Verify(c.Facts, c.Intents[t], answer);
                Assert.True(verdict.Passed, $"{c.Intents[t]}: {verdict.Problem}: {answer}");
                // Whatever an answer requires is written in the order record (or the customer's own message): a fact to copy.
                string context = c.Messages[0].Content + "\n" + c.Messages[1 + 2 * t].Content;
                foreach (var fact in EcommerceVerifier.Expect(c.Facts, c.Intents[t]).Required)
                    Assert.True(context.Contains(fact, StringComparison.Ordinal), $"'{fact}' is not in the prompt");
                answers++;
            }
        output.WriteLine($"{answers} answers verified; generation wrote {Data.Value.AnswersWritten} and rejected {Data.Value.AnswersRejected}");
        Assert.Equal(Data.Value.AnswersWritten, answers + Data.Value.AnswersRejected);
    }

    [Fact]
    public void Falsified_answers_are_all_rejected_and_none_is_kept()
    {
        var clock = Stopwatch.StartNew();
        var data = EcommerceDataset.Generate(new EcommerceOptions(Seed: 11, Count: 1000, FaultRate: 0.3));
        output.WriteLine($"{data.FaultsInjected} answers falsified, {data.AnswersRejected} rejected of {data.AnswersWritten} in {clock.Elapsed.TotalSeconds:F2} s");
        foreach (var (intent, n) in data.RejectionsByIntent.OrderBy(p => p.Key)) output.WriteLine($"  {intent}: {n}");
        foreach (var example in data.RejectionExamples.Take(5)) output.WriteLine($"  {example}");
        Assert.True(data.FaultsInjected > 200, $"{data.FaultsInjected} faults");
        Assert.Equal(data.FaultsInjected, data.AnswersRejected);
        Assert.Equal(1000, data.Train.Count + data.HeldOut.Count);
        foreach (var c in data.Train.Concat(data.HeldOut))
            for (int t = 0; t < c.Intents.Count; t++)
                Assert.True(EcommerceVerifier.Verify(c.Facts, c.Intents[t], c.Messages[2 + 2 * t].Content).Passed);
        // Every kind of intent had faults caught, not just the easy ones.
        Assert.True(data.RejectionsByIntent.Count >= 9, string.Join(", ", data.RejectionsByIntent.Keys));
    }

    static OrderFacts Facts(OrderStatus status, Func<OrderFacts, bool> where, int seed = 5)
    {
        var random = new Xoshiro256((ulong)seed);
        for (int i = 0; i < 10_000; i++)
        {
            var f = OrderFactsGenerator.Generate(random, status);
            if (where(f)) return f;
        }
        throw new InvalidOperationException("no such order drawn");
    }

    [Fact]
    public void Verifier_checks_each_stated_fact_and_claim_independently_of_the_phrasings()
    {
        var f = Facts(OrderStatus.Shipped, f => f.Payment != "PayPal" && f.EstimatedDelivery!.Value.Month == f.Shipped!.Value.Month && f.Shipped.Value.Day > 3);
        string shipped = Dates.Short(f.Shipped!.Value), eta = Dates.Short(f.EstimatedDelivery!.Value);
        string Good() => $"Your order {f.OrderId} shipped on {shipped} with {f.Carrier} (tracking {f.Tracking}), and it should arrive by {eta}.";
        Assert.True(EcommerceVerifier.Verify(f, Intent.OrderStatus, Good()).Passed, EcommerceVerifier.Verify(f, Intent.OrderStatus, Good()).Problem);

        void Rejects(Intent intent, string answer, string why)
        {
            var verdict = EcommerceVerifier.Verify(f, intent, answer);
            output.WriteLine($"{why}: {verdict.Problem}");
            Assert.False(verdict.Passed, $"{why} was accepted: {answer}");
        }
        var dayBefore = f.Shipped.Value.AddDays(-1);
        Rejects(Intent.OrderStatus, Good().Replace($"shipped on {shipped}", $"shipped on {Dates.Short(dayBefore)}", StringComparison.Ordinal), "a wrong ship date");
        Rejects(Intent.OrderStatus, $"Your order {f.OrderId} shipped on {eta} with {f.Carrier}, and it should arrive by {eta}. It shipped on {shipped}.", "the delivery date given as the ship date");
        Rejects(Intent.OrderStatus, Good().Replace(f.OrderId, "#10000", StringComparison.Ordinal), "another order id");
        Rejects(Intent.OrderStatus, Good().Replace(f.Tracking!, f.Tracking![..^1] + (f.Tracking[^1] == '1' ? "2" : "1"), StringComparison.Ordinal), "a wrong tracking number");
        string otherCarrier = OrderFactsGenerator.TrackingPatterns.Keys.First(c => c != f.Carrier);
        Rejects(Intent.OrderStatus, Good().Replace($"with {f.Carrier}", $"with {otherCarrier}", StringComparison.Ordinal), "another carrier");
        Rejects(Intent.OrderStatus, Good() + $" It was delivered on {eta}.", "a delivery that has not happened");
        Rejects(Intent.OrderStatus, $"Your order {f.OrderId} has not shipped yet.", "no ship date and a false claim");
        var weekday = f.Shipped.Value.AddDays(1).DayOfWeek;
        Rejects(Intent.OrderStatus, Good().Replace($"shipped on {shipped}", $"shipped on {weekday}, {shipped}", StringComparison.Ordinal), "the wrong weekday");
        Rejects(Intent.CancelOrder, $"I have cancelled order {f.OrderId}. {f.Money(f.Total)} will go back to {f.PaymentDestination}.", "cancelling a shipped order");
        Rejects(Intent.PaymentDetails, $"Order {f.OrderId} was paid with {f.Payment}. The total was {f.Money(f.Total + 1)}.", "a wrong total");
        Rejects(Intent.PaymentDetails, $"Order {f.OrderId} was paid with {f.Payment[..^4]}0000. The total was {f.Money(f.Total)}.", "another card");
        Rejects(Intent.AccountEmail, $"The email address on your account is x{f.Email}.", "another email");
        Rejects(Intent.ChangeAddress, $"I have updated the delivery address for order {f.OrderId} to {f.NewAddress}.", "changing the address of a shipped order");
        string other = OrderFactsGenerator.FirstNames.First(n => n != f.FirstName);
        Rejects(Intent.AccountEmail, $"Hi {other}! The email address on your account is {f.Email}.", "the wrong name");

        var late = Facts(OrderStatus.Delivered, d => d.Today > d.ReturnBy);
        var lateVerdict = EcommerceVerifier.Verify(late, Intent.ReturnItem, $"Yes, you can still return order {late.OrderId}. You have until {Dates.Short(late.ReturnBy!.Value)} to send it back.");
        Assert.False(lateVerdict.Passed);
        Assert.True(EcommerceVerifier.Verify(late, Intent.ReturnItem, $"Sorry, the {late.Shop.ReturnDays}-day return window for order {late.OrderId} closed on {Dates.Short(late.ReturnBy.Value)}, so it can no longer be returned.").Passed);
        Assert.False(EcommerceVerifier.Verify(late, Intent.ReturnItem, $"Sorry, the {late.Shop.ReturnDays + 1}-day return window for order {late.OrderId} closed on {Dates.Short(late.ReturnBy.Value)}, so it can no longer be returned.").Passed);
    }

    [Fact]
    public void Wording_varies_casual_messages_appear_and_every_intent_is_covered()
    {
        var train = Data.Value.Train;
        var questions = train.SelectMany(c => c.Messages.Where(m => m.Role == "user").Select(m => m.Content)).ToList();
        var answers = train.SelectMany(c => c.Messages.Where(m => m.Role == "assistant").Select(m => m.Content)).ToList();
        Assert.Contains(questions, q => Regex.IsMatch(q, @"\b(pls|thx|u)\b"));
        Assert.Contains(questions, q => q.Length > 10 && q == q.ToLowerInvariant());
        foreach (var intent in Enum.GetValues<Intent>())
        {
            var forIntent = train.Where(c => c.Intents[0] == intent).ToList();
            Assert.True(forIntent.Count > 40, $"{intent}: {forIntent.Count}");
            // Several wordings per intent: the answers' first five words differ.
            int openings = forIntent.Select(c => string.Join(' ', c.Messages[2].Content.Split(' ').Take(5))).Distinct().Count();
            Assert.True(openings >= 5, $"{intent}: {openings} distinct openings");
            Assert.Contains(Data.Value.Evaluation, e => e.Intent == intent.ToString());
        }
        Assert.Contains(train, c => c.Intents.Count == 2);
        var stats = CorpusStatistics.Measure(answers);
        output.WriteLine($"answers: {stats}");
        output.WriteLine($"questions: {CorpusStatistics.Measure(questions)}");
        Assert.True(stats.DistinctSentenceRatio > 0.3, stats.ToString());
    }

    [Fact]
    public void Task_items_accept_the_reference_answer_and_reject_wrong_facts()
    {
        int passed = 0, rejectedOther = 0;
        var items = Data.Value.Evaluation;
        for (int i = 0; i < items.Count; i++)
        {
            var item = items[i];
            var conversation = Data.Value.HeldOut[i];
            Assert.Equal(conversation.Messages.Take(2), item.Prompt);
            Assert.NotEmpty(item.Contains);
            Assert.True(item.Passes(conversation.Messages[2].Content), $"{item.Id} {item.Intent}/{item.Situation} refuses its reference answer");
            passed++;
            // Another order's answer to the same intent has other facts.
            var other = Data.Value.HeldOut.FirstOrDefault(c => c != conversation && c.Intents[0] == conversation.Intents[0] && c.Facts.OrderId != conversation.Facts.OrderId);
            if (other != null && !item.Passes(other.Messages[2].Content)) rejectedOther++;
            else if (other != null) output.WriteLine($"{item.Id} accepts another order's answer: {other.Messages[2].Content}");
        }
        output.WriteLine($"{passed} reference answers pass; {rejectedOther} of {items.Count} items reject another order's answer");
        Assert.True(rejectedOther >= items.Count * 0.95);

        var first = items.First(i => i.Regex != null);
        var back = DomainTaskItem.FromJson(JsonNode.Parse(first.ToJson().ToJsonString())!);
        Assert.Equal(first.Id, back.Id);
        Assert.Equal(first.Prompt, back.Prompt);
        Assert.Equal(first.Contains, back.Contains);
        Assert.Equal(first.Regex, back.Regex);
        // Strict about the fact, lenient about the wording: the facts in any order and phrasing pass.
        string reworded = "Sure. " + string.Join(" — ", first.Contains.Reverse()) + ". " + Regex.Match(Data.Value.HeldOut[items.ToList().IndexOf(first)].Messages[2].Content, first.Regex!).Value;
        Assert.True(first.Passes(reworded), reworded);
        Assert.False(first.Passes(reworded.Replace(first.Contains[0], "(forgotten)", StringComparison.Ordinal)));
        Assert.False(first.Passes(string.Join(" ", first.Contains)), "the facts alone, without the claim, pass");
        // A contradicting claim fails even with every fact and the right claim present.
        var contradicted = items.First(i => i.Regex != null && i.Forbidden.Any(f => f[4..].Replace(@"\b", "").All(c => char.IsLetter(c) || c == ' ')));
        Assert.Equal(contradicted.Forbidden, DomainTaskItem.FromJson(JsonNode.Parse(contradicted.ToJson().ToJsonString())!).Forbidden);
        string reference = Data.Value.HeldOut[items.ToList().IndexOf(contradicted)].Messages[2].Content;
        Assert.True(contradicted.Passes(reference));
        // A forbidden pattern that is a plain phrase ("(?i)shipped on", "(?i)\bdelivered\b"), said outright.
        string phrase = contradicted.Forbidden.Select(f => f[4..].Replace(@"\b", "")).First(f => f.All(c => char.IsLetter(c) || c == ' '));
        string contradiction = $" Note: {phrase}.";
        Assert.False(contradicted.Passes(reference + contradiction), reference + contradiction);
    }

    [Fact]
    public void Files_load_as_sft_and_task_data()
    {
        using var dir = new TempDirectory();
        var files = SyntheticFiles.WriteEcommerce(EcommerceDataset.Generate(2, 200), dir.Path);
        var records = RecordFile.Records(files.Train, textDocuments: false).ToList();
        Assert.Equal(180, records.Count);
        foreach (var (line, record, error) in records)
        {
            Assert.Null(error);
            var messages = ChatConversation.ToMessages(record!, files.Train, line);
            Assert.Equal("assistant", messages[^1]!["role"]!.GetValue<string>());
        }
        var task = SyntheticFiles.ReadEvaluation(files.Evaluation);
        Assert.Equal(20, task.Count);
        string text = File.ReadAllText(files.HeldOutText);
        Assert.Equal(20, text.Split("\n\n").Length);
        Assert.Contains("Order record:", text);
    }

    sealed class MessagesComparer : IEqualityComparer<IReadOnlyList<ChatMessage>>
    {
        public bool Equals(IReadOnlyList<ChatMessage>? x, IReadOnlyList<ChatMessage>? y) => x!.SequenceEqual(y!);
        public int GetHashCode(IReadOnlyList<ChatMessage> obj) => obj.Count;
    }
}
