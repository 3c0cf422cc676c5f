using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Hone.Tensors;

namespace Hone.Synthetic;

public sealed record ChatMessage(string Role, string Content);

/// <param name="Count">conversations kept (after verification), training and held-out together</param>
/// <param name="HeldOutFraction">the last conversations, held out for evaluation</param>
/// <param name="FollowUpFraction">conversations with a second question about the same order</param>
/// <param name="CasualFraction">customer messages written casually (lower case, typos, "u", "pls")</param>
/// <param name="FaultRate">answers deliberately falsified before verification (a wrong date, amount, id, claim…);
/// for showing that the verifier rejects them, never for real data</param>
public sealed record EcommerceOptions(
    ulong Seed = 1, int Count = 3000, double HeldOutFraction = 0.1, double FollowUpFraction = 0.15,
    double CasualFraction = 0.2, double FaultRate = 0);

/// <summary>One conversation: the system message (shop and order record), then user/assistant turns, one per intent.</summary>
public sealed record EcommerceConversation(OrderFacts Facts, IReadOnlyList<Intent> Intents, IReadOnlyList<ChatMessage> Messages)
{
    /// <summary>The conversation as plain text (message contents, one per paragraph line), for domain perplexity.</summary>
    public string PlainText => string.Join("\n", Messages.Select(m => m.Content));
}

/// <param name="AnswersWritten">assistant answers produced, kept or not</param>
/// <param name="AnswersRejected">answers the verifier refused (their conversations were dropped)</param>
/// <param name="FaultsInjected">answers falsified on purpose (<see cref="EcommerceOptions.FaultRate"/>)</param>
/// <param name="RejectionExamples">the first few refusals, "intent: problem"</param>
public sealed record EcommerceData(
    IReadOnlyList<EcommerceConversation> Train, IReadOnlyList<EcommerceConversation> HeldOut, IReadOnlyList<DomainTaskItem> Evaluation,
    int AnswersWritten, int AnswersRejected, int FaultsInjected, IReadOnlyDictionary<Intent, int> RejectionsByIntent,
    IReadOnlyList<string> RejectionExamples);

/// <summary>
/// Generates the e-commerce customer-service dataset: each conversation draws an order's facts
/// (<see cref="OrderFactsGenerator"/>), shows them as an order record in the system message, asks about them in one of
/// many wordings (some casual, with typos), and answers from the facts. Every answer is then read back by
/// <see cref="EcommerceVerifier"/>; a conversation with an answer that fails is discarded and counted.
/// Held-out conversations also become the domain evaluation task (<see cref="DomainTaskItem"/>).
/// Deterministic per seed.
/// </summary>
public static class EcommerceDataset
{
    public static EcommerceData Generate(ulong seed, int count) => Generate(new EcommerceOptions(seed, count));

    public static EcommerceData Generate(EcommerceOptions options)
    {
        if (options.Count < 1) throw new ArgumentException("count must be at least 1");
        if (options.HeldOutFraction is < 0 or >= 1) throw new ArgumentException("the held-out fraction must be in [0, 1)");
        var random = new Xoshiro256(options.Seed ^ 0x45434F4D4D455243); // "ECOMMERC": a stream of its own per seed
        var intents = Enum.GetValues<Intent>();
        var kept = new List<EcommerceConversation>(options.Count);
        var rejectionsByIntent = new Dictionary<Intent, int>();
        var examples = new List<string>();
        int written = 0, rejected = 0, faults = 0;
        while (kept.Count < options.Count)
        {
            if (rejected > 100 + options.Count * 2)
                throw new InvalidOperationException($"the verifier rejected {rejected} answers (first: {examples.FirstOrDefault()}); the phrasing tables are wrong");
            var intent = random.One(intents);
            var facts = OrderFactsGenerator.Generate(random, random.One(EcommercePhrasings.Statuses[intent]));
            var turns = new List<Intent> { intent };
            if (random.Chance(options.FollowUpFraction))
            {
                var second = intents.Where(i => i != intent && EcommercePhrasings.Statuses[i].Contains(facts.Status)).ToArray();
                turns.Add(random.One(second));
            }
            var messages = new List<ChatMessage> { new("system", SystemMessage(random, facts)) };
            bool ok = true;
            for (int t = 0; t < turns.Count && ok; t++)
            {
                string question = Question(random, facts, turns[t], followUp: t > 0, casual: random.Chance(options.CasualFraction));
                string answer = Answer(random, facts, turns[t]);
                written++;
                if (random.Chance(options.FaultRate) && InjectFault(random, facts, turns[t], answer) is string faulty)
                {
                    answer = faulty;
                    faults++;
                }
                var verdict = EcommerceVerifier.Verify(facts, turns[t], answer);
                if (!verdict.Passed)
                {
                    rejected++;
                    rejectionsByIntent[turns[t]] = rejectionsByIntent.GetValueOrDefault(turns[t]) + 1;
                    if (examples.Count < 10) examples.Add($"{turns[t]}: {verdict.Problem} — \"{answer}\"");
                    ok = false;
                }
                messages.Add(new("user", question));
                messages.Add(new("assistant", answer));
            }
            if (ok) kept.Add(new EcommerceConversation(facts, turns, messages));
        }
        int heldCount = (int)Math.Round(options.Count * options.HeldOutFraction);
        var train = kept.Take(kept.Count - heldCount).ToList();
        var heldOut = kept.Skip(kept.Count - heldCount).ToList();
        var evaluation = heldOut.Select((c, i) => DomainTaskItem.From(c, $"ecommerce-{i:D4}")).ToList();
        return new EcommerceData(train, heldOut, evaluation, written, rejected, faults, rejectionsByIntent, examples);
    }

    static string SystemMessage(Xoshiro256 random, OrderFacts f) =>
        TemplateText.Expand(random.One(EcommercePhrasings.SystemIntros), random, s => s == "shop" ? f.Shop.Name : throw UnknownSlot(s))
        + "\nOrder record:\n" + f.RecordText();

    // ---- customer messages --------------------------------------------------------------------------------------

    const char SlotStart = '\u0001', SlotEnd = '\u0002';
    static readonly Regex Placeholders = new("\u0001([a-z]+)\u0002", RegexOptions.CultureInvariant);
    static readonly string[] FollowUpOpeners = ["", "Thanks! ", "Also, ", "One more thing: ", "OK. ", "Great, thanks. ", "And "];

    static string Question(Xoshiro256 random, OrderFacts f, Intent intent, bool followUp, bool casual)
    {
        // Facts go in as placeholders so that casual rewriting never touches them.
        string Slot(string name) => name switch
        {
            "order" => TemplateText.Expand(random.One(EcommercePhrasings.OrderReferences), random, Slot, tidy: false),
            "id" or "idnumber" or "newaddress" => $"{SlotStart}{name}{SlotEnd}",
            _ => throw UnknownSlot(name),
        };
        string opener = followUp ? random.One(FollowUpOpeners)
            : random.Chance(0.08) ? random.One(EcommercePhrasings.ImpatientOpeners)
            : random.One(EcommercePhrasings.Openers);
        string body = TemplateText.Expand(random.One(EcommercePhrasings.Questions[intent]), random, Slot, tidy: false);
        if (opener.Length == 0 || opener.TrimEnd().EndsWith('.') || opener.TrimEnd().EndsWith('!') || opener.TrimEnd().EndsWith('?'))
            body = TemplateText.Capitalize(body);
        string closer = followUp ? "" : random.One(EcommercePhrasings.Closers);
        string text = opener + body + closer;
        if (casual) text = Casual(random, text);
        return Placeholders.Replace(text, m => m.Groups[1].Value switch
        {
            "id" => f.OrderId,
            "idnumber" => f.OrderId.TrimStart('#'),
            _ => f.NewAddress,
        });
    }

    static readonly (string From, string To)[] CasualWords =
        [("you", "u"), ("please", "pls"), ("Please", "pls"), ("thanks", "thx"), ("Thanks", "thx"), ("I'm", "im"), ("don't", "dont"), ("can't", "cant"), ("What's", "whats"), ("what's", "whats")];

    /// <summary>Lower case, dropped final punctuation, shorthand and typos (a swapped, dropped or doubled letter).</summary>
    static string Casual(Xoshiro256 random, string text)
    {
        bool lower = random.Chance(0.6), shorthand = random.Chance(0.5), dropPunctuation = random.Chance(0.4);
        var parts = Regex.Split(text, "(\u0001[a-z]+\u0002)");
        var b = new StringBuilder(text.Length);
        foreach (var part in parts)
        {
            if (part.Length > 0 && part[0] == SlotStart) { b.Append(part); continue; }
            string s = part;
            if (shorthand)
                foreach (var (from, to) in CasualWords)
                    s = Regex.Replace(s, $@"\b{Regex.Escape(from)}\b", to);
            if (lower) s = s.ToLowerInvariant();
            s = Regex.Replace(s, @"\b[A-Za-z]{4,}\b", m => random.Chance(0.07) ? Typo(random, m.Value) : m.Value);
            b.Append(s);
        }
        string result = b.ToString();
        if (dropPunctuation) result = result.TrimEnd('.', '!');
        return result;
    }

    static string Typo(Xoshiro256 random, string word)
    {
        int i = random.Between(1, word.Length - 2);
        return random.NextInt(3) switch
        {
            0 => string.Concat(word.AsSpan(0, i), word[i + 1].ToString(), word[i].ToString(), word.AsSpan(i + 2)),
            1 => word.Remove(i, 1),
            _ => word.Insert(i, word[i].ToString()),
        };
    }

    // ---- answers ------------------------------------------------------------------------------------------------

    sealed class MissingFactException(string slot) : Exception($"the order has no '{slot}'");

    static FormatException UnknownSlot(string name) => new($"unknown template slot '{{{name}}}'");

    static string Answer(Xoshiro256 random, OrderFacts f, Intent intent) =>
        Answer(random, f, intent, EcommerceVerifier.Situation(f, intent));

    static string Answer(Xoshiro256 random, OrderFacts f, Intent intent, string situation)
    {
        string Date(DateOnly? d, string slot) => d is DateOnly v
            ? (random.Chance(0.15) ? Dates.WithWeekday(v) : Dates.Short(v))
            : throw new MissingFactException(slot);
        string Slot(string name) => name switch
        {
            "id" => f.OrderId,
            "first" => f.FirstName,
            "shop" => f.Shop.Name,
            "placed" => Date(f.Placed, name),
            "shipped" => Date(f.Shipped, name),
            "eta" => Date(f.EstimatedDelivery, name),
            "delivered" => Date(f.Delivered, name),
            "returnby" => Date(f.ReturnBy, name),
            "received" => Date(f.ReturnReceived, name),
            "issued" => Date(f.RefundIssued, name),
            "carrier" => f.Carrier ?? throw new MissingFactException(name),
            "tracking" => f.Tracking ?? throw new MissingFactException(name),
            "window" => f.Shop.ReturnDays.ToString(CultureInfo.InvariantCulture),
            "refunddays" => OrderFacts.BusinessDays(f.Shop.RefundDays),
            "shipdays" => OrderFacts.BusinessDays(f.Shop.ShipDays),
            "refund" => f.RefundAmount is decimal r ? f.Money(r) : throw new MissingFactException(name),
            "total" => f.Money(f.Total),
            "payment" => f.Payment,
            "paymentto" => f.PaymentDestination,
            "items" => f.ItemsText,
            "email" => f.Email,
            "address" => f.Address,
            "newaddress" => f.NewAddress,
            _ => throw UnknownSlot(name),
        };
        string greeting = TemplateText.Expand(random.One(EcommercePhrasings.Greetings), random, Slot, tidy: false);
        string body = TemplateText.Expand(random.One(EcommercePhrasings.Answers[(intent, situation)]), random, Slot);
        string closing = random.One(EcommercePhrasings.Closings);
        return greeting + body + closing;
    }

    /// <summary>A falsified version of a correct answer: the answer meant for another situation (a claim that is
    /// untrue), or one fact replaced by a wrong value of the same kind. Null when nothing could be falsified.</summary>
    static string? InjectFault(Xoshiro256 random, OrderFacts f, Intent intent, string answer)
    {
        string situation = EcommerceVerifier.Situation(f, intent);
        var others = EcommercePhrasings.Answers.Keys.Where(k => k.Item1 == intent && k.Item2 != situation).ToList();
        if (others.Count > 0 && random.Chance(0.3))
        {
            try { return Answer(random, f, intent, random.One(others).Item2); }
            catch (MissingFactException) { } // that answer needs facts this order lacks; falsify a fact instead
        }
        var candidates = new List<(string Pattern, Func<string> Wrong)>();
        void Candidate(string? value, Func<string> wrong)
        {
            if (value != null && Regex.IsMatch(answer, $@"(?<![\w#]){Regex.Escape(value)}(?!\w)")) candidates.Add((value, wrong));
        }
        Candidate(f.OrderId, () => "#" + ((int.Parse(f.OrderId[1..], CultureInfo.InvariantCulture) - 10000 + random.Between(1, 89998)) % 90000 + 10000));
        foreach (var date in new[] { f.Placed, f.Shipped, f.EstimatedDelivery, f.Delivered, f.ReturnBy, f.ReturnReceived, f.RefundIssued })
            if (date is DateOnly d) Candidate(Dates.Short(d), () => Dates.Short(d.AddDays(random.Chance(0.5) ? random.Between(1, 3) : -random.Between(1, 3))));
        var amounts = f.Lines.SelectMany(l => new[] { l.UnitPrice, l.LineTotal }).Append(f.Total).Append(f.RefundAmount ?? 0).ToHashSet();
        foreach (var amount in new[] { f.Total, f.RefundAmount ?? -1 }.Where(a => a >= 0))
            Candidate(f.Money(amount), () =>
            {
                decimal wrong = amount;
                while (amounts.Contains(wrong)) wrong += random.Between(1, 900) / 100m;
                return f.Money(wrong);
            });
        Candidate(f.Tracking, () => f.Tracking![..^1] + (f.Tracking[^1] == '7' ? '3' : '7'));
        Candidate(f.Email, () => "x" + f.Email);
        Candidate(f.Carrier, () => random.One(OrderFactsGenerator.TrackingPatterns.Keys.Where(c => c != f.Carrier).ToArray()));
        if (Regex.Match(f.Payment, @"ending (\d{4})") is { Success: true } card)
            Candidate(card.Value, () => $"ending {(int.Parse(card.Groups[1].Value, CultureInfo.InvariantCulture) + random.Between(1, 9998)) % 10000:0000}");
        Candidate(f.NewAddress, () => f.Address);
        Candidate($"{f.Shop.ReturnDays} days", () => $"{f.Shop.ReturnDays + random.Between(1, 10)} days");
        Candidate($"{f.Shop.ReturnDays}-day", () => $"{f.Shop.ReturnDays + random.Between(1, 10)}-day");
        Candidate(OrderFacts.BusinessDays(f.Shop.RefundDays), () => OrderFacts.BusinessDays(f.Shop.RefundDays + random.Between(1, 5)));
        Candidate(OrderFacts.BusinessDays(f.Shop.ShipDays), () => OrderFacts.BusinessDays(f.Shop.ShipDays + random.Between(4, 8)));
        Candidate(f.FirstName, () => random.One(OrderFactsGenerator.FirstNames.Where(n => n != f.FirstName).ToArray()));
        if (candidates.Count == 0) return null;
        var (pattern, makeWrong) = random.One(candidates);
        string wrongValue = makeWrong();
        return new Regex($@"(?<![\w#]){Regex.Escape(pattern)}(?!\w)").Replace(answer, wrongValue.Replace("$", "$$"), 1);
    }
}
