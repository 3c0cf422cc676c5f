using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;

namespace Hone.Agents;

/// <summary>
/// The agent that knows the answer: it replays the task's gold actions through the conversation the policy asks for —
/// authenticate, find the order, make the reads, collect what the write needs, propose it ("Please confirm: … Shall I
/// proceed? (yes/no)"), write after the yes, report, and refuse or transfer where the task says so. It asks for what it
/// needs before using it and states only what the customer or the tools said, so its conversations are training data
/// (`hone agent trajectories`). Its turns are derived from the conversation alone (no hidden state): one tool call or
/// one short message per turn. The harness must give it 1.0.
/// </summary>
public sealed class OracleAgent : IAgent
{
    public string Name => "oracle";
    public const string AnythingElse = "Is there anything else I can help you with?";

    public Task<ChatMessage> RespondAsync(AgentContext context, IReadOnlyList<ChatMessage> conversation, CancellationToken cancel) =>
        Task.FromResult(Next(context.Task, new ConversationView(conversation)));

    static ChatMessage Say(string text) => new(ChatRole.Assistant, text);

    /// <summary>A call with a deterministic id ("call00001", …: 9 characters, as Mistral's template wants), numbered by
    /// the calls already in the conversation, so the same trial gives the same trajectory.</summary>
    static ChatMessage Call(ToolCall call, ConversationView view)
    {
        var arguments = new Dictionary<string, object?>();
        foreach (var (k, v) in call.Arguments) arguments[k] = v?.DeepClone();
        string id = $"call{view.Calls.Count + 1:D5}";
        return new ChatMessage(ChatRole.Assistant, [new FunctionCallContent(id, call.Name, arguments)]);
    }

    static ToolCall Read(string name, string key, string value) => new(name, new JsonObject { [key] = value });

    internal static ChatMessage Next(AgentTask task, ConversationView view)
    {
        var s = task.Customer;
        string said = view.CustomerSaid;
        bool Revealed(string? value) => value == null || said.Contains(value.ToLowerInvariant());
        bool ISaid(string prefix) => view.AgentTexts.Any(t => t.StartsWith(prefix, StringComparison.Ordinal));

        // 1. Authenticate.
        var auth = task.Actions[0];
        if (!view.Made(auth))
        {
            if (auth.Arguments.All(a => Revealed(a.Value?.GetValue<string>()))) return Call(auth, view);
            return Say("Could you please give me your email address, or your first name, last name and zip code?");
        }

        string? orderId = OrderOf(task);
        var write = task.Actions.LastOrDefault(a => StoreTools.Find(a.Name)?.Writes == true || a.Name == "transfer_to_human_agents");

        // 2. Find the order: by its id, or by what it contains among the customer's orders.
        if (orderId != null && task.Kind != TaskKinds.Transfer)
        {
            if (s.DoesNotKnow.Contains("order_id"))
            {
                if (!Revealed(s.Knows["order_hint"])) return Say("Which order is it about? Could you give me the order id, or tell me what it contains?");
                var userRead = Read("get_user_details", "user_id", task.UserId);
                if (!view.Made(userRead)) return Call(userRead, view);
                var orders = (JsonNode.Parse(view.ResultOf(userRead)!)!["orders"] as JsonArray)!.Select(o => o!.GetValue<string>());
                foreach (var id in orders)
                {
                    var read = Read("get_order_details", "order_id", id);
                    if (!view.Made(read)) return Call(read, view);
                    if (id == orderId) break;
                }
            }
            else if (!Revealed(orderId)) return Say("Could you give me the order id?");
        }

        // 3. The gold reads (and, for another user's order, a look at whose it is).
        foreach (var a in task.Actions.Skip(1))
            if (StoreTools.Find(a.Name) is { Writes: false, EndsEpisode: false } && a.Name != "calculate" && !view.Made(a)) return Call(a, view);
        if (task.Kind == TaskKinds.RefuseOtherUser && !view.Made(Read("get_order_details", "order_id", orderId!))) return Call(Read("get_order_details", "order_id", orderId!), view);

        // 4. What the task asks for.
        if (task.Kind == TaskKinds.Transfer)
        {
            const string transfer = "I will transfer you to a human agent who can help with this.";
            return ISaid(transfer) ? Call(write!, view) : Say(transfer);
        }
        if (task.Kind == TaskKinds.OrderStatus)
        {
            const string prefix = "Order ";
            if (ISaid(prefix)) return Say(AnythingElse);
            var order = JsonNode.Parse(view.ResultOf(Read("get_order_details", "order_id", orderId!))!)!;
            var tracking = (order["fulfillments"] as JsonArray)!.SelectMany(f => (f!["tracking_id"] as JsonArray)!).Select(t => t!.GetValue<string>()).ToList();
            string text = $"{prefix}{orderId} is {order["status"]}." + (tracking.Count > 0 ? $" Its tracking number is {string.Join(" and ", tracking)}." : "");
            return Say(text + " " + AnythingElse);
        }
        if (TaskKinds.IsRefusal(task.Kind))
        {
            const string sorry = "I'm sorry, but ";
            if (ISaid(sorry)) return Say("I'm sorry, I cannot do that. " + AnythingElse);
            var order = JsonNode.Parse(view.ResultOf(Read("get_order_details", "order_id", orderId!))!)!;
            string text = task.Kind switch
            {
                TaskKinds.RefuseCancelNotPending => $"order {orderId} is {order["status"]}, so it cannot be cancelled: only pending orders can be.",
                TaskKinds.RefuseSecondModification => $"order {orderId} is {order["status"]}: its items were already modified, so it cannot be modified again.",
                TaskKinds.RefuseOtherUser => $"order {orderId} is not on your account, so I cannot help with it: I can only help with your own orders.",
                _ => "a refund can only go to the original payment method of the order or to a gift card, so I cannot refund it there.",
            };
            return Say(sorry + text + " " + AnythingElse);
        }

        // A write: collect what it needs, propose it, write after the yes, report.
        if (view.Made(write!)) return ISaid("Done.") ? Say(AnythingElse) : Say("Done. " + Done(write!) + " " + AnythingElse);
        if (s.Knows.TryGetValue("reason", out var reason) && !Revealed(reason))
            return Say("What is the reason for the cancellation: 'no longer needed' or 'ordered by mistake'?");
        if (s.Knows.TryGetValue("address", out var address) && !Revealed(address)) return Say("What is the new address?");
        if (s.Knows.TryGetValue("items", out var items) && !Revealed(items)) return Say("Which items would you like to change, and to which options?");
        if (s.Knows.TryGetValue("payment", out var payment) && !Revealed(payment))
            return Say(write!.Name == "return_delivered_order_items" ? "Which payment method should the refund go to: the original one or a gift card?"
                : "Which payment method would you like to use?");
        // A payment method id comes from a tool result, never from the task: look the customer's methods up if needed.
        if (write!.Arguments["payment_method_id"] is JsonNode method && !view.Calls.Any(c => c.Result?.Contains(method.GetValue<string>(), StringComparison.Ordinal) == true))
        {
            var userRead = Read("get_user_details", "user_id", task.UserId);
            if (!view.Made(userRead)) return Call(userRead, view);
        }
        var calculation = task.Actions.FirstOrDefault(a => a.Name == "calculate");
        if (calculation != null && !view.Made(calculation)) return Call(calculation, view);
        bool proposed = view.AgentTexts.Count > 0 && view.AgentTexts[^1].StartsWith("Please confirm:", StringComparison.Ordinal);
        if (proposed && view.LastSpeaker == "user" && view.LastCustomerText!.StartsWith("Yes", StringComparison.OrdinalIgnoreCase)) return Call(write!, view);
        string total = calculation != null ? $" The total refund is {view.ResultOf(calculation)}." : "";
        return Say("Please confirm: " + Proposal(write!, view) + total + " Shall I proceed? (yes/no)");
    }

    /// <summary>The order a task is about: the order id of its write or of its first order read.</summary>
    static string? OrderOf(AgentTask task)
    {
        if (task.Customer.Desired?.Arguments["order_id"] is JsonNode id) return id.GetValue<string>();
        return task.Actions.FirstOrDefault(a => a.Arguments.ContainsKey("order_id"))?.Arguments["order_id"]!.GetValue<string>();
    }

    static string S(ToolCall c, string key) => c.Arguments[key]!.GetValue<string>();
    static List<string> L(ToolCall c, string key) => ((JsonArray)c.Arguments[key]!).Select(x => x!.GetValue<string>()).ToList();

    static string AddressOf(ToolCall c)
    {
        string a2 = S(c, "address2");
        return $"{S(c, "address1")}{(a2.Length > 0 ? ", " + a2 : "")}, {S(c, "city")}, {S(c, "state")} {S(c, "zip")}, {S(c, "country")}";
    }

    /// <summary>An item as the tool results describe it: "1234567890 (T-Shirt, color blue, size M)".</summary>
    static string Item(string itemId, ConversationView view)
    {
        foreach (var call in view.Calls)
        {
            if (call.Result == null || !call.Result.StartsWith('{')) continue;
            var node = JsonNode.Parse(call.Result);
            if (call.Name == "get_order_details" && node?["items"] is JsonArray orderItems)
                foreach (var i in orderItems)
                    if ((string?)i!["item_id"] == itemId) return $"{itemId} ({i["name"]}, {Options(i["options"])})";
            if (call.Name == "get_product_details" && node?["variants"]?[itemId] is JsonNode v) return $"{itemId} ({node["name"]}, {Options(v["options"])})";
        }
        return itemId;
    }

    static string Options(JsonNode? options) => options is JsonObject o ? string.Join(", ", o.Select(p => $"{p.Key} {p.Value}")) : "";

    static string Proposal(ToolCall w, ConversationView view) => w.Name switch
    {
        "cancel_pending_order" => $"cancel order {S(w, "order_id")} with reason '{S(w, "reason")}'. The refund goes to the original payment method.",
        "modify_pending_order_address" => $"change the shipping address of order {S(w, "order_id")} to {AddressOf(w)}.",
        "modify_user_address" => $"change the default address of your account to {AddressOf(w)}.",
        "modify_pending_order_payment" => $"change the payment method of order {S(w, "order_id")} to {S(w, "payment_method_id")}.",
        "return_delivered_order_items" => $"return item {string.Join(" and item ", L(w, "item_ids").Select(i => Item(i, view)))} of order {S(w, "order_id")}; " +
                                          $"the refund goes to {S(w, "payment_method_id")}.",
        "modify_pending_order_items" or "exchange_delivered_order_items" =>
            $"{(w.Name == "exchange_delivered_order_items" ? "exchange" : "modify")} in order {S(w, "order_id")}: " +
            string.Join("; ", L(w, "item_ids").Zip(L(w, "new_item_ids"), (a, b) => $"item {Item(a, view)} to item {Item(b, view)}")) +
            $". The price difference is paid with or refunded to {S(w, "payment_method_id")}." +
            (w.Name == "modify_pending_order_items" ? " After this the order's items cannot be changed again, so this must be every item you want to change." : ""),
        _ => throw new InvalidOperationException($"no proposal for {w.Name}"),
    };

    static string Done(ToolCall w) => w.Name switch
    {
        "cancel_pending_order" => $"Order {S(w, "order_id")} is cancelled.",
        "modify_pending_order_address" => $"The shipping address of order {S(w, "order_id")} is updated.",
        "modify_user_address" => "Your default address is updated.",
        "modify_pending_order_payment" => $"Order {S(w, "order_id")} is now paid with {S(w, "payment_method_id")}.",
        "return_delivered_order_items" => $"The return for order {S(w, "order_id")} is requested; you will receive instructions on how to send the items back.",
        "modify_pending_order_items" => $"The items of order {S(w, "order_id")} are modified.",
        "exchange_delivered_order_items" => $"The exchange for order {S(w, "order_id")} is requested.",
        _ => "",
    };
}
