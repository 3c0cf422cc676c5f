using System.Text.Json.Nodes;
using Hone.Tensors;

namespace Hone.Synthetic;

/// <summary>One store policy: the fact an answer must state verbatim, ways customers ask about it, ways to answer.</summary>
/// <param name="Fact">exact text every answer contains (the verifier's check and the task's expectation)</param>
/// <param name="Questions">question wordings (a greeting and a closing may be added around them)</param>
/// <param name="Answers">answer wordings, each with one {fact} slot</param>
public sealed record PolicyTopic(string Name, string Fact, string[] Questions, string[] Answers);

/// <param name="Train">SFT conversations (system, user, assistant)</param>
/// <param name="HeldOut">held-out conversations: question wordings combined in ways training never showed</param>
/// <param name="TaskItems">the held-out questions as task items {"id", "intent", "prompt_messages", "expected": {"contains": [fact]}}</param>
public sealed record PolicyFaqData(IReadOnlyList<JsonObject> Train, IReadOnlyList<JsonObject> HeldOut, IReadOnlyList<JsonObject> TaskItems);

/// <summary>
/// Questions about the marketplace's own policies (support hours, shipping thresholds, warranty, payment methods…).
/// Unlike order questions, their answers are not in the prompt: they are domain knowledge that only fine-tuning can
/// teach, so a base model cannot know them and a fine-tuned one should. Every answer is checked to state its fact.
/// </summary>
public static class PolicyFaq
{
    public const string Marketplace = "Hone Market";
    public static readonly string SystemMessage =
        $"You are the customer service assistant of {Marketplace}, an online marketplace. Answer questions about its policies.";

    public static readonly PolicyTopic[] Topics =
    [
        new("support_hours", "8:00 to 20:00",
            ["When is customer support open?", "What are your support hours?", "Can I call support in the evening?", "what time can i reach an agent"],
            ["Our support team is available every day from {fact}.", "You can reach us from {fact}, seven days a week."]),
        new("free_shipping", "orders over 50 euros",
            ["Do you offer free shipping?", "How much do I need to spend for free delivery?", "is shipping free", "When is delivery free of charge?"],
            ["Shipping is free on {fact}.", "We ship for free on {fact}; smaller orders pay a flat fee."]),
        new("express_shipping", "9.90 euros",
            ["How much is express shipping?", "What does express delivery cost?", "price of express shipping?", "Can I pay for faster delivery?"],
            ["Express shipping costs {fact} and arrives the next business day.", "Next-day express delivery is {fact}."]),
        new("payment_methods", "Visa, Mastercard and PayPal",
            ["Which payment methods do you accept?", "Can I pay with PayPal?", "what cards do you take", "How can I pay for my order?"],
            ["We accept {fact}.", "You can pay with {fact}."]),
        new("warranty", "two-year warranty",
            ["Is there a warranty on products?", "How long is the warranty?", "what if my item breaks after a year", "Do your products come with a guarantee?"],
            ["Every product comes with a {fact} from the date of delivery.", "All items carry a {fact}; write to us if something breaks."]),
        new("gift_cards", "valid for three years",
            ["Do gift cards expire?", "How long can I use a gift card?", "is my gift card still good", "When does a gift card run out?"],
            ["Gift cards are {fact} from the date of purchase.", "Our gift cards are {fact}."]),
        new("price_match", "do not match prices",
            ["Do you price match?", "I found it cheaper elsewhere, can you match the price?", "price match policy?", "Will you match a competitor's price?"],
            ["I'm sorry, we {fact} from other shops.", "We {fact}, but we run sales every month."]),
        new("international", "all EU countries and the UK",
            ["Do you ship abroad?", "Which countries do you deliver to?", "can u ship to the UK", "Do you ship internationally?"],
            ["We deliver to {fact}.", "We ship to {fact}; other countries are not served yet."]),
        new("invoice", "Orders page of your account",
            ["Where can I get an invoice?", "How do I download my receipt?", "i need an invoice for my company", "Can you send me a VAT invoice?"],
            ["You can download every invoice from the {fact}.", "Invoices are on the {fact}, next to each order."]),
        new("delete_account", "Privacy settings",
            ["How do I delete my account?", "I want to close my account.", "remove my account pls", "Can I delete all my data?"],
            ["You can delete your account under {fact}; it is removed within 30 days.", "Open {fact} and choose Delete account."]),
        new("student_discount", "10 percent",
            ["Do you have a student discount?", "Is there a discount for students?", "student discount?", "Can students get a lower price?"],
            ["Students get {fact} off with a verified student e-mail.", "Yes: {fact} off for students, once verified."]),
        new("order_changes", "within one hour",
            ["Can I change my order after placing it?", "How long do I have to edit an order?", "i made a mistake in my order, can i fix it", "Can I add an item to an order I just placed?"],
            ["You can edit an order {fact} of placing it, from the Orders page.", "Orders can be changed {fact} after checkout."]),
    ];

    static readonly string[] Greetings = ["", "", "Hi, ", "Hello! ", "Good morning. ", "hey ", "Quick question: "];
    static readonly string[] Closings = ["", "", " Thanks!", " Thank you.", " Cheers.", " thx"];
    static readonly string[] Openers = ["", "", "Thanks for asking. ", "Good question! ", "Happy to help. "];

    /// <summary>Conversations and task items; deterministic per seed. The held-out questions pair each wording with a
    /// greeting and closing that training never used with it.</summary>
    public static PolicyFaqData Generate(ulong seed, int count, double heldOutFraction = 0.1)
    {
        if (count < Topics.Length) throw new ArgumentException($"count must be at least {Topics.Length} (one per topic)");
        var random = new Xoshiro256(seed ^ 0x504F4C4943494553); // "POLICIES"
        var all = new List<(PolicyTopic Topic, string Question, JsonObject Conversation)>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        int attempts = 0;
        while (all.Count < count && attempts++ < count * 20)
        {
            var topic = Topics[all.Count % Topics.Length];
            string question = random.One(Greetings) + random.One(topic.Questions) + random.One(Closings);
            string answer = random.One(Openers) + random.One(topic.Answers).Replace("{fact}", topic.Fact, StringComparison.Ordinal);
            if (!answer.Contains(topic.Fact, StringComparison.Ordinal)) throw new InvalidOperationException($"{topic.Name}: an answer lost its fact");
            bool duplicate = !seen.Add(question + "\n" + answer);
            if (duplicate && all.Count(a => a.Question == question) > 8) continue;
            all.Add((topic, question, new JsonObject { ["messages"] = Messages(question, answer) }));
        }
        // Held out: questions whose exact text never occurs in training.
        int heldCount = Math.Max(Topics.Length, (int)Math.Round(count * heldOutFraction));
        var heldQuestions = new HashSet<string>(StringComparer.Ordinal);
        var once = all.GroupBy(a => a.Question).Where(g => g.Count() == 1).Select(g => g.First()).ToList();
        var heldOut = new List<(PolicyTopic Topic, string Question, JsonObject Conversation)>();
        // Round-robin over topics, so every topic is asked about about equally often.
        var perTopic = Topics.Select(t => new Queue<(PolicyTopic, string, JsonObject)>(once.Where(o => o.Topic == t))).ToList();
        while (heldOut.Count < heldCount && perTopic.Any(q => q.Count > 0))
            foreach (var queue in perTopic)
                if (heldOut.Count < heldCount && queue.Count > 0)
                {
                    var h = queue.Dequeue();
                    heldOut.Add(h);
                    heldQuestions.Add(h.Item2);
                }
        var train = all.Where(a => !heldQuestions.Contains(a.Question)).Select(a => a.Conversation).ToList();
        var items = heldOut.Select((h, i) => new JsonObject
        {
            ["id"] = $"policy-{i:D4}",
            ["intent"] = h.Topic.Name,
            ["prompt_messages"] = Messages(h.Question, null),
            ["expected"] = new JsonObject { ["contains"] = new JsonArray(h.Topic.Fact) },
        }).ToList();
        return new PolicyFaqData(train, heldOut.Select(h => h.Conversation).ToList(), items);
    }

    static JsonArray Messages(string question, string? answer)
    {
        var messages = new JsonArray(
            new JsonObject { ["role"] = "system", ["content"] = SystemMessage },
            new JsonObject { ["role"] = "user", ["content"] = question });
        if (answer != null) messages.Add((JsonNode)new JsonObject { ["role"] = "assistant", ["content"] = answer });
        return messages;
    }
}
