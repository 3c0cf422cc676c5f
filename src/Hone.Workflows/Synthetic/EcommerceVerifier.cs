using System.Globalization;
using System.Text.RegularExpressions;

namespace Hone.Synthetic;

/// <summary>The verdict on one answer: passed, or the first problem found.</summary>
public sealed record Verdict(bool Passed, string? Problem)
{
    public static readonly Verdict Pass = new(true, null);
    public static Verdict Fail(string problem) => new(false, problem);
}

/// <summary>What a correct answer to an intent must contain for an order in a given situation.</summary>
/// <param name="Required">fact strings that must appear verbatim (order id, date, amount, tracking number…)</param>
/// <param name="Claim">a case-insensitive regex the answer's claim must match (what happened or what is possible), or null</param>
/// <param name="Forbidden">case-insensitive regexes for claims that would be false in this situation</param>
public sealed record Expectation(string Situation, IReadOnlyList<string> Required, string? Claim, IReadOnlyList<string> Forbidden);

/// <summary>
/// Checks an assistant answer against the order facts by reading the answer text back, independently of how it was
/// written: every order id, date, amount, carrier, tracking number, email address, card number, address, name and
/// policy number the answer states must be the order's (a date must also be the one its wording refers to:
/// "shipped on" the ship date, "until" the return deadline…), the facts the intent needs must be there, and the
/// claim must fit the situation (no "cancelled" for an order that has shipped, no "can still return" after the
/// return window closed). Situations are derived from the facts here, not taken from the generator.
/// </summary>
public static class EcommerceVerifier
{
    /// <summary>The situation an intent meets for an order (which answer is right depends on it).</summary>
    public static string Situation(OrderFacts f, Intent intent) => intent switch
    {
        Intent.OrderStatus => f.Status.ToString().ToLowerInvariant(),
        Intent.TrackingNumber or Intent.DeliveryDate => f.Status switch
        {
            OrderStatus.Processing => "processing",
            OrderStatus.Shipped => "shipped",
            _ => "delivered",
        },
        Intent.ReturnItem => f.Delivered is not DateOnly d ? "not delivered"
            : f.Today <= d.AddDays(f.Shop.ReturnDays) ? "open" : "closed",
        Intent.RefundStatus => f.RefundIssued != null ? "issued" : "pending",
        Intent.CancelOrder or Intent.ChangeAddress => f.Status == OrderStatus.Processing ? "processing" : "shipped",
        _ => "any",
    };

    public static Expectation Expect(OrderFacts f, Intent intent)
    {
        string situation = Situation(f, intent);
        string Need(DateOnly? d, string what) => d is DateOnly v ? Dates.Short(v) : throw new InvalidOperationException($"{intent}/{situation} needs the {what} date");
        string NeedText(string? s, string what) => s ?? throw new InvalidOperationException($"{intent}/{situation} needs the {what}");
        string refund = f.RefundAmount is decimal r ? f.Money(r) : "";
        (string[] Required, string? Claim, string[] Forbidden) spec = (intent, situation) switch
        {
            (Intent.OrderStatus, "processing") => ([f.OrderId], @"not (yet )?shipped|being prepared", [@"shipped on", @"dispatched", @"\bdelivered\b"]),
            (Intent.OrderStatus, "shipped") => ([f.OrderId, Need(f.Shipped, "ship"), NeedText(f.Carrier, "carrier")],
                @"shipped on|dispatched on|on its way|left our warehouse", [@"not (yet )?shipped", @"being prepared", @"\bdelivered\b"]),
            (Intent.OrderStatus, "delivered") => ([f.OrderId, Need(f.Delivered, "delivery")], @"\bdelivered\b",
                [@"not (yet )?shipped", @"being prepared", @"should (arrive|reach)", @"expected on", @"on its way", @"estimated delivery"]),
            (Intent.OrderStatus, "returned") => ([f.OrderId, Need(f.ReturnReceived, "return received")], @"received (your|the) return",
                [@"not (yet )?shipped", @"being prepared", @"should (arrive|reach)", @"on its way"]),
            (Intent.TrackingNumber, "processing") => ([f.OrderId], @"no tracking number", [@"shipped on", @"\bdelivered\b"]),
            (Intent.TrackingNumber, "shipped") => ([NeedText(f.Tracking, "tracking number")], null, [@"not (yet )?shipped", @"\bdelivered\b"]),
            (Intent.TrackingNumber, "delivered") => ([NeedText(f.Tracking, "tracking number")], @"\bdelivered\b", [@"not (yet )?shipped", @"should (arrive|reach)"]),
            (Intent.DeliveryDate, "processing") => ([f.OrderId], @"not (yet )?shipped|being prepared", [@"arrive by", @"\bdelivered\b", @"shipped on"]),
            (Intent.DeliveryDate, "shipped") => ([Need(f.EstimatedDelivery, "estimated delivery")],
                @"arrive by|reach you by|expected on|estimated delivery date", [@"\bdelivered\b", @"not (yet )?shipped"]),
            (Intent.DeliveryDate, "delivered") => ([Need(f.Delivered, "delivery")], @"\bdelivered\b", [@"should (arrive|reach)", @"estimated delivery"]),
            (Intent.ReturnItem, "not delivered") => ([$"{f.Shop.ReturnDays} days"], @"within \d+ days of delivery", [@"no longer", @"closed", @"ended"]),
            (Intent.ReturnItem, "open") => ([Need(f.ReturnBy, "return-by")], @"can (still )?return|within our \d+-day return window|you have until",
                [@"no longer", @"closed on", @"ended", @"expired"]),
            (Intent.ReturnItem, "closed") => ([Need(f.ReturnBy, "return-by")], @"no longer|closed on|ended on",
                [@"can still return", @"you have until", @"can return it until", @"within our"]),
            (Intent.RefundStatus, "issued") => ([refund, Need(f.RefundIssued, "refund")], @"issued|refunded", [@"being processed", @"pending"]),
            (Intent.RefundStatus, "pending") => ([refund, Need(f.ReturnReceived, "return received")], @"being processed", [@"issued", @"refunded"]),
            (Intent.CancelOrder, "processing") => ([f.OrderId, f.Money(f.Total)], @"I have cancell?ed|is now cancell?ed",
                [@"can no longer", @"can't", @"cannot", @"already shipped"]),
            (Intent.CancelOrder, "shipped") => ([f.OrderId], @"can no longer be cancell?ed|can't cancel|cannot cancel",
                [@"I have cancell?ed", @"is now cancell?ed"]),
            (Intent.ChangeAddress, "processing") => ([f.NewAddress], @"updated the delivery address|will now go to|changed the address",
                [@"can no longer", @"can't", @"cannot"]),
            (Intent.ChangeAddress, "shipped") => ([f.OrderId], @"can no longer change|can't be changed|cannot be changed",
                [@"I have (updated|changed)", @"will now go to"]),
            (Intent.AccountEmail, _) => ([f.Email], null, []),
            (Intent.PasswordReset, _) => ([f.Email], @"reset link", []),
            (Intent.PaymentDetails, _) => ([f.Payment, f.Money(f.Total)], null, []),
            (Intent.OrderContents, _) => ([f.OrderId, .. f.Lines.Select(l => $"{l.Quantity} x {l.Product}"), f.Money(f.Total)], null, []),
            _ => throw new InvalidOperationException($"no expectation for {intent} in situation '{situation}'"),
        };
        return new Expectation(situation, spec.Required, spec.Claim, spec.Forbidden);
    }

    public static Verdict Verify(OrderFacts f, Intent intent, string answer)
    {
        var expectation = Expect(f, intent);
        foreach (var fact in expectation.Required)
            if (!answer.Contains(fact, StringComparison.Ordinal)) return Verdict.Fail($"missing required fact '{fact}'");
        if (expectation.Claim != null && !Regex.IsMatch(answer, expectation.Claim, RegexOptions.IgnoreCase | RegexOptions.CultureInvariant))
            return Verdict.Fail($"no claim matching /{expectation.Claim}/ for situation '{expectation.Situation}'");
        foreach (var forbidden in expectation.Forbidden)
            if (Regex.IsMatch(answer, forbidden, RegexOptions.IgnoreCase | RegexOptions.CultureInvariant))
                return Verdict.Fail($"claim /{forbidden}/ is false in situation '{expectation.Situation}'");
        return CheckStatedFacts(f, intent, expectation.Situation, answer);
    }

    // ---- what the answer states ---------------------------------------------------------------------------------

    static readonly Regex OrderIds = new(@"#\d+", RegexOptions.CultureInvariant);
    static readonly Regex DateMentions = new(
        @"(?:\b(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), )?\b(\d{1,2}) (January|February|March|April|May|June|July|August|September|October|November|December)\b(?: (\d{4}))?",
        RegexOptions.CultureInvariant);
    static readonly Regex Amounts = new(@"([$£€])(\d+(?:\.\d{2})?)", RegexOptions.CultureInvariant);
    static readonly Regex TrackingShapes = new(@"\b(?=[A-Z0-9]*\d)[A-Z0-9]{10,13}\b", RegexOptions.CultureInvariant);
    static readonly Regex Emails = new(@"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+", RegexOptions.CultureInvariant);
    static readonly Regex CardEndings = new(@"ending (\d{4})", RegexOptions.CultureInvariant);
    static readonly Regex CardBrands = new(@"\b(Visa|Mastercard|American Express|PayPal)\b", RegexOptions.CultureInvariant);
    static readonly Regex ReturnWindows = new(@"(\d+)-day return|within (\d+) days of delivery", RegexOptions.CultureInvariant);
    static readonly Regex BusinessDays = new(@"(\d+) business days?\b", RegexOptions.CultureInvariant);
    static readonly Regex StreetAddresses = new(@"\b\d{1,3} [A-Z][a-z]+ (?:Street|Road|Lane|Avenue|Close|Way|Drive|Court|Place)\b", RegexOptions.CultureInvariant);
    static readonly Regex CapitalisedWords = new(@"\b[A-Z][a-z]+\b", RegexOptions.CultureInvariant);
    static readonly Regex SentenceBreaks = new(@"(?<=[.!?])\s+", RegexOptions.CultureInvariant);

    enum DateRole { Placed, Shipped, Estimated, Delivered, ReturnBy, ReturnReceived, RefundIssued }

    /// <summary>The words that tie a date to the fact it states; a date takes the role of the last such words before it
    /// in its sentence.</summary>
    static readonly (Regex Words, DateRole Role)[] DateRoleWords =
    [
        (new(@"\bplaced\b|\bordered\b", RegexOptions.IgnoreCase), DateRole.Placed),
        (new(@"\bshipped\b|\bdispatched\b|\bleft our warehouse\b", RegexOptions.IgnoreCase), DateRole.Shipped),
        (new(@"\barrive\b|\breach you\b|\bexpected\b|\bdelivery date\b|\bdue\b", RegexOptions.IgnoreCase), DateRole.Estimated),
        (new(@"\bdelivered\b", RegexOptions.IgnoreCase), DateRole.Delivered),
        (new(@"\buntil\b|\bcloses\b|\bclosed\b|\bended\b|\bdeadline\b", RegexOptions.IgnoreCase), DateRole.ReturnBy),
        (new(@"\breceived\b|\breturn arrived\b", RegexOptions.IgnoreCase), DateRole.ReturnReceived),
        (new(@"\bissued\b|\brefunded\b", RegexOptions.IgnoreCase), DateRole.RefundIssued),
    ];

    static Verdict CheckStatedFacts(OrderFacts f, Intent intent, string situation, string answer)
    {
        foreach (Match m in OrderIds.Matches(answer))
            if (m.Value != f.OrderId) return Verdict.Fail($"order id {m.Value} is not {f.OrderId}");

        foreach (var sentence in SentenceBreaks.Split(answer))
            foreach (Match m in DateMentions.Matches(sentence))
            {
                var problem = CheckDate(f, sentence, m);
                if (problem != null) return Verdict.Fail(problem);
            }

        var amounts = new HashSet<decimal> { f.Total };
        foreach (var line in f.Lines) { amounts.Add(line.UnitPrice); amounts.Add(line.LineTotal); }
        if (f.RefundAmount is decimal refund) amounts.Add(refund);
        foreach (Match m in Amounts.Matches(answer))
        {
            if (m.Groups[1].Value != f.Shop.Currency) return Verdict.Fail($"amount {m.Value} is not in {f.Shop.Currency}");
            if (!amounts.Contains(decimal.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)))
                return Verdict.Fail($"amount {m.Value} is none of the order's amounts");
        }

        foreach (var carrier in OrderFactsGenerator.TrackingPatterns.Keys)
            if (Regex.IsMatch(answer, $@"\b{Regex.Escape(carrier)}\b") && carrier != f.Carrier)
                return Verdict.Fail($"carrier {carrier} is not the order's ({f.Carrier ?? "none yet"})");
        foreach (Match m in TrackingShapes.Matches(answer))
            if (m.Value != f.Tracking) return Verdict.Fail($"tracking number {m.Value} is not the order's ({f.Tracking ?? "none yet"})");
        foreach (Match m in Emails.Matches(answer))
            if (m.Value != f.Email) return Verdict.Fail($"email {m.Value} is not the customer's");

        var cardEnding = Regex.Match(f.Payment, @"ending (\d{4})");
        foreach (Match m in CardEndings.Matches(answer))
            if (!cardEnding.Success || m.Groups[1].Value != cardEnding.Groups[1].Value) return Verdict.Fail($"card {m.Value} is not the order's payment ({f.Payment})");
        foreach (Match m in CardBrands.Matches(answer))
            if (!f.Payment.StartsWith(m.Value, StringComparison.Ordinal)) return Verdict.Fail($"{m.Value} is not the order's payment ({f.Payment})");

        foreach (Match m in ReturnWindows.Matches(answer))
        {
            string days = m.Groups[1].Success ? m.Groups[1].Value : m.Groups[2].Value;
            if (int.Parse(days, CultureInfo.InvariantCulture) != f.Shop.ReturnDays)
                return Verdict.Fail($"return window of {days} days is not the shop's {f.Shop.ReturnDays}");
        }
        foreach (var sentence in SentenceBreaks.Split(answer))
            foreach (Match m in BusinessDays.Matches(sentence))
            {
                int days = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
                bool aboutShipping = Regex.IsMatch(sentence[..m.Index], @"\bship\b", RegexOptions.IgnoreCase);
                int policy = aboutShipping ? f.Shop.ShipDays : f.Shop.RefundDays;
                if (days != policy) return Verdict.Fail($"{days} business day(s) is not the shop's {(aboutShipping ? "shipping" : "refund")} time ({policy})");
            }

        bool newAddressAllowed = intent == Intent.ChangeAddress && situation == "processing";
        foreach (Match m in StreetAddresses.Matches(answer))
        {
            var rest = answer.AsSpan(m.Index);
            bool isNew = rest.StartsWith(f.NewAddress, StringComparison.Ordinal);
            bool isOld = rest.StartsWith(f.Address, StringComparison.Ordinal);
            if (isNew && !newAddressAllowed) return Verdict.Fail("states the customer's new address although it cannot be used");
            if (isOld && newAddressAllowed) return Verdict.Fail("states the old address after changing it");
            if (!isNew && !isOld) return Verdict.Fail($"address at '{m.Value}' is neither the order's nor the customer's new one");
        }

        foreach (Match m in CapitalisedWords.Matches(answer))
            if (OrderFactsGenerator.FirstNames.Contains(m.Value) && m.Value != f.FirstName)
                return Verdict.Fail($"addresses the customer as {m.Value}, not {f.FirstName}");
        return Verdict.Pass;
    }

    static string? CheckDate(OrderFacts f, string sentence, Match m)
    {
        int day = int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        int month = Array.IndexOf(Dates.Months, m.Groups[3].Value) + 1;
        // Without a year the date is the one nearest to today (answers speak of the last and the coming weeks).
        DateOnly? stated = null;
        if (m.Groups[4].Success) stated = TryDate(int.Parse(m.Groups[4].Value, CultureInfo.InvariantCulture), month, day);
        else
            foreach (int year in new[] { f.Today.Year, f.Today.Year - 1, f.Today.Year + 1 })
                if (TryDate(year, month, day) is DateOnly candidate
                    && (stated == null || Math.Abs(candidate.DayNumber - f.Today.DayNumber) < Math.Abs(stated.Value.DayNumber - f.Today.DayNumber)))
                    stated = candidate;
        if (stated is not DateOnly date) return $"'{m.Value}' is not a date";
        if (m.Groups[1].Success && m.Groups[1].Value != date.DayOfWeek.ToString())
            return $"'{m.Value}': {Dates.Short(date)} is a {date.DayOfWeek}";

        DateRole? role = null;
        int rolePosition = -1;
        foreach (var (words, r) in DateRoleWords)
            foreach (Match w in words.Matches(sentence[..m.Index]))
                if (w.Index > rolePosition) (rolePosition, role) = (w.Index, r);
        if (role == null) return $"date '{m.Value}' is not tied to any event in \"{sentence}\"";
        DateOnly? fact = role switch
        {
            DateRole.Placed => f.Placed,
            DateRole.Shipped => f.Shipped,
            DateRole.Estimated => f.EstimatedDelivery,
            DateRole.Delivered => f.Delivered,
            // Recomputed from the delivery date and the policy rather than read from the record.
            DateRole.ReturnBy => f.Delivered?.AddDays(f.Shop.ReturnDays),
            DateRole.ReturnReceived => f.ReturnReceived,
            _ => f.RefundIssued,
        };
        if (fact == null) return $"'{m.Value}' is given as the {role} date, which the order does not have";
        if (fact != date) return $"'{m.Value}' is given as the {role} date, which is {Dates.Short(fact.Value)}";
        return null;
    }

    static DateOnly? TryDate(int year, int month, int day) =>
        day >= 1 && day <= DateTime.DaysInMonth(year, month) ? new DateOnly(year, month, day) : null;
}
