using System.Text.RegularExpressions;
using Hone.Tensors;

namespace Hone.Agents;

/// <summary>The customer's persona for one trial, drawn from its seed.</summary>
/// <param name="Patience">1..3: how many turns the customer gives an agent that does not get anywhere (6 + 3 × patience)</param>
/// <param name="Careful">a careful customer says only what it is asked; a careless one tells everything it knows at once</param>
/// <param name="Mood">"polite", "neutral", "terse" or "frustrated": the greeting and the tone of every reply</param>
public sealed record CustomerPersona(int Patience, bool Careful, string Mood)
{
    public static CustomerPersona FromSeed(ulong seed)
    {
        var rng = new Xoshiro256(seed ^ 0x5045_5253_4F4E_4101UL);
        return new CustomerPersona(1 + rng.NextInt(3), rng.NextDouble() < 0.5, new[] { "polite", "neutral", "terse", "frustrated" }[rng.NextInt(4)]);
    }

    public int MaxTurns => 6 + 3 * Patience;
    /// <summary>How often the customer pushes back after a refusal before giving up.</summary>
    public int Persistence => Patience >= 2 ? 1 : 0;
}

/// <summary>
/// The deterministic simulated customer built from the task (no model): it opens with its request, answers the agent's
/// questions from what it knows (identity, order, reason, payment method, address, items), answers a proposal
/// ("Please confirm: … (yes/no)") yes when every argument of the write it wants appears in it and nothing contradicts
/// it, otherwise no with a correction, pushes back on a refusal as often as its persona allows, and stops
/// (<see cref="CustomerMarkers.Stop"/>) when its request is done and every fact it wanted was told, when refused, or
/// when its patience runs out. Wording and persona vary with the trial's seed.
/// </summary>
public sealed class ScriptedCustomer : ICustomer
{
    public string Name => "scripted";

    public Task<string> RespondAsync(AgentContext context, IReadOnlyList<(string Role, string Text)> transcript, CancellationToken cancel) =>
        Task.FromResult(Respond(context.Task, context.Seed, transcript));

    static readonly Regex OrderIds = new(@"#W\d{7}", RegexOptions.Compiled);
    static readonly Regex PaymentIds = new(@"\b(?:credit_card|paypal|gift_card)_\d+\b", RegexOptions.Compiled);

    public static string Respond(AgentTask task, ulong seed, IReadOnlyList<(string Role, string Text)> transcript)
    {
        var persona = CustomerPersona.FromSeed(seed);
        var s = task.Customer;
        int myTurns = transcript.Count(t => t.Role == "user");
        var rng = new Xoshiro256(seed ^ (0x9E37_79B9_7F4A_7C15UL * (ulong)(myTurns + 1)));
        string Choose(params string[] options) => options[rng.NextInt(options.Length)];
        string Tone(string text) => persona.Mood switch
        {
            "polite" => text + Choose("", " Thank you!", " Thanks a lot."),
            "frustrated" => Choose("", "Look, ", "Honestly, ") is { Length: > 0 } prefix && !text.StartsWith("I ", StringComparison.Ordinal) && !text.StartsWith("I'", StringComparison.Ordinal)
                ? prefix + char.ToLowerInvariant(text[0]) + text[1..] : text,
            _ => text,
        };

        if (transcript.Count == 0) return Opening(task, persona, Choose, Tone);

        int lastMine = -1;
        for (int i = transcript.Count - 1; i >= 0; i--)
            if (transcript[i].Role == "user") { lastMine = i; break; }
        string last = string.Join("\n", transcript.Skip(lastMine + 1).Where(t => t.Role == "assistant").Select(t => t.Text));
        string lower = last.ToLowerInvariant();
        string agentSaid = string.Join("\n", transcript.Where(t => t.Role == "assistant").Select(t => t.Text)).ToLowerInvariant().Replace(",", "");
        int yes = -1;
        for (int i = 0; i < transcript.Count; i++)
            if (transcript[i].Role == "user" && transcript[i].Text.StartsWith("Yes", StringComparison.Ordinal)) yes = i;
        bool writeDone = yes >= 0 && transcript.Skip(yes + 1).Any(t => t.Role == "assistant" && t.Text.Trim().Length > 0);
        bool factsTold = task.Outputs.All(o => agentSaid.Contains(o.ToLowerInvariant().Replace(",", "")));

        if (myTurns >= persona.MaxTurns) return Tone(Choose("This is taking too long; I'll try again another time.", "I give up for now.", "Never mind, I'll come back later.")) + " " + CustomerMarkers.Stop;

        if (IsProposal(lower))
        {
            if (s.Desired != null && Matches(s.Desired, last)) return Choose("Yes, please go ahead.", "Yes, that's right.", "Yes.", "Yes, please do that.");
            return Choose("No, that's not what I want.", "No, that's not right.", "No.") + " " + Correction(task);
        }
        if ((s.Desired == null || writeDone) && factsTold && (s.Desired != null || s.WantsToKnow.Count > 0))
            return Tone(Choose("That's all I needed, thanks.", "Great, that's everything.", "Perfect, thank you. Bye!")) + " " + CustomerMarkers.Stop;
        if (IsRefusal(lower))
        {
            int pushes = transcript.Count(t => t.Role == "user" && t.Text.StartsWith("Are you sure", StringComparison.Ordinal));
            if (pushes < persona.Persistence && yes < 0)
                return "Are you sure? " + Choose("Is there really nothing you can do?", "I really need this.", "Please check again.");
            return Tone(Choose("I see. Thanks anyway.", "Okay, I understand.", "Fine.")) + " " + CustomerMarkers.Stop;
        }
        if (lower.Contains("transfer")) return Tone(Choose("Okay, thank you.", "Sure, please do.", "Alright."));

        var answers = Answers(task, lower);
        if (answers.Count > 0) return Tone(string.Join(" ", answers));
        if (writeDone && !factsTold)
            return Tone($"Could you also tell me {string.Join(" and ", s.WantsToKnow)}?");
        return Tone(Choose("As I said, I'd like to ", "I just want to ", "Again: I'd like to ") + s.Request + ".");
    }

    static string Opening(AgentTask task, CustomerPersona persona, Func<string[], string> choose, Func<string, string> tone)
    {
        var s = task.Customer;
        string greeting = persona.Mood switch
        {
            "polite" => choose(["Hello! ", "Hi there, ", "Good morning. "]),
            "frustrated" => choose(["I have a problem. ", "Hi. This is my second try. ", ""]),
            "terse" => "",
            _ => choose(["Hi. ", "Hello. "]),
        };
        string text = greeting + choose(["I'd like to ", "I want to ", "Can you help me? I need to "]) + s.Request + ".";
        if (!persona.Careful)
        {
            var extra = new List<string> { Identity(task) };
            if (s.Knows.TryGetValue("reason", out var reason)) extra.Add($"The reason is: {reason}.");
            if (s.Knows.TryGetValue("payment", out var payment)) extra.Add($"Please use {payment}.");
            if (s.Knows.TryGetValue("address", out var address)) extra.Add($"The address is {address}.");
            text += " " + string.Join(" ", extra);
        }
        return tone(text);
    }

    static string Identity(AgentTask task)
    {
        var k = task.Customer.Knows;
        return k.TryGetValue("email", out var email) ? $"My email is {email}."
            : $"I don't remember my email, but my name is {k["first_name"]} {k["last_name"]} and my zip code is {k["zip"]}.";
    }

    static List<string> Answers(AgentTask task, string lower)
    {
        var k = task.Customer.Knows;
        var answers = new List<string>();
        bool asksEmail = lower.Contains("email") || lower.Contains("e-mail");
        bool asksNameZip = lower.Contains("zip") || lower.Contains("your name") || lower.Contains("first name");
        if (asksEmail) answers.Add(Identity(task));
        else if (asksNameZip) answers.Add($"My name is {k["first_name"]} {k["last_name"]} and my zip code is {k["zip"]}.");
        if (lower.Contains("order id") || lower.Contains("order number") || lower.Contains("which order"))
            answers.Add(k.TryGetValue("order_id", out var id) ? $"It's order {id}." : $"I don't have the order id. It's {k["order_hint"]}.");
        if ((lower.Contains("reason") || lower.Contains("why")) && k.TryGetValue("reason", out var reason)) answers.Add($"The reason is: {reason}.");
        if ((lower.Contains("payment") || lower.Contains("pay ") || lower.Contains("refund")) && k.TryGetValue("payment", out var payment)) answers.Add($"Please use {payment}.");
        if (lower.Contains("address") && k.TryGetValue("address", out var address)) answers.Add($"The address is {address}.");
        if ((lower.Contains("which item") || lower.Contains("which items") || lower.Contains("option")) && k.TryGetValue("items", out var items))
            answers.Add(k.TryGetValue("new_items", out var wanted) ? $"It's {items}; I want {wanted}." : $"It's {items}.");
        return answers;
    }

    static bool IsProposal(string lower) => lower.Contains("(yes/no)") || lower.Contains("shall i proceed") || lower.Contains("please confirm");

    static bool IsRefusal(string lower) =>
        lower.Contains("cannot") || lower.Contains("can't") || lower.Contains("can not") || lower.Contains("unable") || lower.Contains("not able") || lower.Contains("not possible");

    /// <summary>Whether a proposal names the wanted write: its action, every argument value (the user id and an empty
    /// second address line excepted), and no other order or payment method.</summary>
    public static bool Matches(ToolCall desired, string proposal)
    {
        string lower = proposal.ToLowerInvariant();
        string[] verbs = desired.Name switch
        {
            "cancel_pending_order" => ["cancel"],
            "modify_pending_order_address" => ["address"],
            "modify_pending_order_items" => ["modify", "change", "swap", "replace"],
            "modify_pending_order_payment" => ["payment", "pay"],
            "modify_user_address" => ["default", "account", "profile"],
            "return_delivered_order_items" => ["return"],
            "exchange_delivered_order_items" => ["exchange"],
            _ => [desired.Name],
        };
        if (!verbs.Any(lower.Contains)) return false;
        var values = new List<string>();
        foreach (var (key, value) in desired.Arguments)
        {
            if (key is "user_id" or "country") continue;
            if (value is System.Text.Json.Nodes.JsonArray list) values.AddRange(list.Select(x => x!.GetValue<string>()));
            else if (value?.GetValue<string>() is { Length: > 0 } text) values.Add(text);
        }
        if (!values.All(v => lower.Contains(v.ToLowerInvariant()))) return false;
        var wanted = new HashSet<string>(values, StringComparer.OrdinalIgnoreCase);
        if (OrderIds.Matches(proposal).Any(m => !wanted.Contains(m.Value))) return false;
        if (PaymentIds.Matches(proposal).Any(m => !wanted.Contains(m.Value))) return false;
        return true;
    }

    static string Correction(AgentTask task)
    {
        var k = task.Customer.Knows;
        var parts = new List<string> { $"I want to {task.Customer.Request}." };
        if (k.TryGetValue("reason", out var reason)) parts.Add($"The reason is: {reason}.");
        if (k.TryGetValue("payment", out var payment)) parts.Add($"Please use {payment}.");
        if (k.TryGetValue("address", out var address)) parts.Add($"The address is {address}.");
        return string.Join(" ", parts);
    }
}
