using System.Text.Json.Nodes;

namespace Hone.Agents;

/// <summary>
/// The tool table: one class per tool, τ-bench retail's names and argument names. <see cref="Call"/> is what the
/// harness runs: it checks the arguments against the tool's schema (missing, mistyped or unexpected arguments are an
/// "Error: …" result), then invokes the tool; nothing the agent sends raises an exception.
/// </summary>
public static class StoreTools
{
    public static readonly IReadOnlyList<IStoreTool> All =
    [
        new FindUserIdByEmail(), new FindUserIdByNameZip(), new GetUserDetails(), new GetOrderDetails(), new GetProductDetails(), new ListAllProductTypes(),
        new CancelPendingOrder(), new ModifyPendingOrderAddress(), new ModifyPendingOrderItems(), new ModifyPendingOrderPayment(), new ModifyUserAddress(),
        new ReturnDeliveredOrderItems(), new ExchangeDeliveredOrderItems(), new Calculate(), new Think(), new TransferToHumanAgents(),
    ];

    static readonly Dictionary<string, IStoreTool> ByName = All.ToDictionary(t => t.Name, StringComparer.Ordinal);

    /// <summary>The specs the agent sees (every tool, in table order).</summary>
    public static IReadOnlyList<AgentToolSpec> Specs { get; } = All.Select(t => t.Spec).ToList();

    public static IStoreTool? Find(string name) => ByName.GetValueOrDefault(name);

    /// <summary>Runs a tool call as the agent made it: an unknown tool, bad arguments or a refused action is an
    /// "Error: …" text.</summary>
    public static string Call(StoreDatabase store, string name, JsonObject? arguments)
    {
        if (Find(name) is not { } tool) return $"Error: unknown tool '{name}'";
        arguments ??= new JsonObject();
        if (CheckArguments(tool.Spec.Parameters, arguments) is string error) return error;
        return tool.Invoke(store, arguments);
    }

    /// <summary>Checks arguments against an object schema of string and string-array properties (all the retail tools
    /// need): each required one present, each of the declared type, nothing undeclared. Enum values are the tool's own
    /// check, after its status checks, as in τ-bench (cancelling a delivered order with any reason says it is not pending).</summary>
    public static string? CheckArguments(JsonObject schema, JsonObject arguments)
    {
        var properties = schema["properties"] as JsonObject ?? new JsonObject();
        foreach (var (name, _) in arguments)
            if (!properties.ContainsKey(name)) return $"Error: unexpected argument '{name}'";
        if (schema["required"] is JsonArray required)
            foreach (var r in required)
            {
                string name = r!.GetValue<string>();
                if (arguments[name] is null) return $"Error: missing argument '{name}'";
            }
        foreach (var (name, value) in arguments)
        {
            var property = (JsonObject)properties[name]!;
            string type = (string)property["type"]!;
            if (type == "string")
            {
                if (value is not JsonValue v || !v.TryGetValue(out string? _)) return $"Error: argument '{name}' must be a string";
            }
            else if (type == "array")
            {
                if (value is not JsonArray a || a.Any(x => x is not JsonValue xv || !xv.TryGetValue(out string? _)))
                    return $"Error: argument '{name}' must be a list of strings";
            }
        }
        return null;
    }
}

/// <summary>A tool's spec from its parts; string and string-list arguments, all required unless listed optional.</summary>
public abstract class StoreTool : IStoreTool
{
    public abstract string Name { get; }
    public virtual bool Writes => false;
    public virtual bool EndsEpisode => false;
    protected abstract string Description { get; }
    protected abstract (string Name, string Type, string Description, string[]? Enum)[] Arguments { get; }

    AgentToolSpec? _spec;
    public AgentToolSpec Spec => _spec ??= new AgentToolSpec(Name, Description, BuildSchema());

    JsonObject BuildSchema()
    {
        var properties = new JsonObject();
        foreach (var (name, type, description, values) in Arguments)
        {
            var p = new JsonObject { ["type"] = type };
            if (type == "array") p["items"] = new JsonObject { ["type"] = "string" };
            if (values != null) p["enum"] = new JsonArray(values.Select(v => (JsonNode)v).ToArray());
            p["description"] = description;
            properties[name] = p;
        }
        return new JsonObject
        {
            ["type"] = "object",
            ["properties"] = properties,
            ["required"] = new JsonArray(Arguments.Select(a => (JsonNode)a.Name).ToArray()),
        };
    }

    public abstract string Invoke(StoreDatabase store, JsonObject arguments);

    protected static string S(JsonObject a, string name) => a[name]!.GetValue<string>();
    protected static List<string> L(JsonObject a, string name) => ((JsonArray)a[name]!).Select(x => x!.GetValue<string>()).ToList();

    protected const string OrderIdText = "The order id, such as '#W0000000'. Be careful there is a '#' symbol at the beginning of the order id.";
    protected const string PaymentText = "The payment method id to pay or receive refund for the item price difference, such as 'gift_card_0000000' or " +
                                         "'credit_card_0000000'. These can be looked up from the user or order details.";
    protected static readonly (string, string, string, string[]?)[] AddressArguments =
    [
        ("address1", "string", "The first line of the address, such as '123 Main St'.", null),
        ("address2", "string", "The second line of the address, such as 'Apt 1' or ''.", null),
        ("city", "string", "The city, such as 'San Francisco'.", null),
        ("state", "string", "The state, such as 'CA'.", null),
        ("country", "string", "The country, such as 'USA'.", null),
        ("zip", "string", "The zip code, such as '12345'.", null),
    ];

    protected static Address AddressOf(JsonObject a) => new(S(a, "address1"), S(a, "address2"), S(a, "city"), S(a, "state"), S(a, "country"), S(a, "zip"));

    protected static string Json(JsonNode node) => node.ToJsonString();

    /// <summary>Each id of <paramref name="wanted"/> at most as often as the order holds it (duplicates allowed).</summary>
    protected static string? MissingItem(Order order, List<string> wanted)
    {
        foreach (var id in wanted)
            if (wanted.Count(x => x == id) > order.Items.Count(i => i.ItemId == id)) return id;
        return null;
    }

    protected static void AddPayment(StoreDatabase store, string orderId, string type, long cents, string methodId)
    {
        long next = store.Scalar<long?>("SELECT max(position) FROM payments WHERE order_id = $o", ("$o", orderId)) is long m ? m + 1 : 0;
        store.Execute("INSERT INTO payments (order_id, position, transaction_type, amount_cents, payment_method_id) VALUES ($o, $p, $t, $a, $m)",
            ("$o", orderId), ("$p", next), ("$t", type), ("$a", cents), ("$m", methodId));
    }

    protected static void AddBalance(StoreDatabase store, string methodId, long cents) =>
        store.Execute("UPDATE payment_methods SET balance_cents = balance_cents + $c WHERE payment_method_id = $m", ("$c", cents), ("$m", methodId));

    protected static PaymentMethod? MethodOf(StoreDatabase store, string userId, string methodId) =>
        store.PaymentMethodsOf(userId).FirstOrDefault(m => m.Id == methodId);
}

public abstract class WriteTool : StoreTool
{
    public override bool Writes => true;
}

public sealed class FindUserIdByEmail : StoreTool
{
    public override string Name => "find_user_id_by_email";
    protected override string Description => "Find user id by email. If the user is not found, the function will return an error message.";
    protected override (string, string, string, string[]?)[] Arguments => [("email", "string", "The email of the user, such as 'something@example.com'.", null)];

    public override string Invoke(StoreDatabase store, JsonObject a) =>
        store.Scalar<string>("SELECT user_id FROM users WHERE lower(email) = lower($e) ORDER BY user_id LIMIT 1", ("$e", S(a, "email").Trim())) ?? "Error: user not found";
}

public sealed class FindUserIdByNameZip : StoreTool
{
    public override string Name => "find_user_id_by_name_zip";
    protected override string Description => "Find user id by first name, last name, and zip code. If the user is not found, the function will return an error message. " +
                                             "By default, find user id by email, and only call this function if the user is not found by email or cannot remember email.";
    protected override (string, string, string, string[]?)[] Arguments =>
    [
        ("first_name", "string", "The first name of the customer, such as 'John'.", null),
        ("last_name", "string", "The last name of the customer, such as 'Doe'.", null),
        ("zip", "string", "The zip code of the customer, such as '12345'.", null),
    ];

    public override string Invoke(StoreDatabase store, JsonObject a) =>
        store.Scalar<string>("SELECT user_id FROM users WHERE lower(first_name) = lower($f) AND lower(last_name) = lower($l) AND zip = $z ORDER BY user_id LIMIT 1",
            ("$f", S(a, "first_name").Trim()), ("$l", S(a, "last_name").Trim()), ("$z", S(a, "zip").Trim())) ?? "Error: user not found";
}

public sealed class GetUserDetails : StoreTool
{
    public override string Name => "get_user_details";
    protected override string Description => "Get the details of a user, including their orders.";
    protected override (string, string, string, string[]?)[] Arguments => [("user_id", "string", "The user id, such as 'sara_doe_496'.", null)];

    public override string Invoke(StoreDatabase store, JsonObject a) =>
        store.GetUser(S(a, "user_id")) is { } u ? Json(StoreRecords.UserJson(u)) : "Error: user not found";
}

public sealed class GetOrderDetails : StoreTool
{
    public override string Name => "get_order_details";
    protected override string Description => "Get the status and details of an order.";
    protected override (string, string, string, string[]?)[] Arguments => [("order_id", "string", OrderIdText, null)];

    public override string Invoke(StoreDatabase store, JsonObject a) =>
        store.GetOrder(S(a, "order_id")) is { } o ? Json(store.OrderJson(o)) : "Error: order not found";
}

public sealed class GetProductDetails : StoreTool
{
    public override string Name => "get_product_details";
    protected override string Description => "Get the inventory details of a product.";
    protected override (string, string, string, string[]?)[] Arguments =>
        [("product_id", "string", "The product id, such as '6086499569'. Be careful the product id is different from the item id.", null)];

    public override string Invoke(StoreDatabase store, JsonObject a)
    {
        string id = S(a, "product_id");
        return store.ProductName(id) is { } name ? Json(store.ProductJson(id, name)) : "Error: product not found";
    }
}

public sealed class ListAllProductTypes : StoreTool
{
    public override string Name => "list_all_product_types";
    protected override string Description => "List the name and product id of all product types. Each product type has a variety of different items with unique item ids and options.";
    protected override (string, string, string, string[]?)[] Arguments => [];

    public override string Invoke(StoreDatabase store, JsonObject a)
    {
        var o = new JsonObject();
        using var command = store.Command("SELECT name, product_id FROM products ORDER BY name, product_id");
        using var r = command.ExecuteReader();
        while (r.Read()) o[r.GetString(0)] = r.GetString(1);
        return Json(o);
    }
}

public sealed class CancelPendingOrder : WriteTool
{
    public static readonly string[] Reasons = ["no longer needed", "ordered by mistake"];
    public override string Name => "cancel_pending_order";
    protected override string Description =>
        "Cancel a pending order. If the order is already processed or delivered, it cannot be cancelled. The agent needs to explain the cancellation detail " +
        "and ask for explicit user confirmation (yes/no) to proceed. If the user confirms, the order status will be changed to 'cancelled' and the payment " +
        "will be refunded. The refund will be added to the user's gift card balance immediately if the payment was made using a gift card, otherwise the " +
        "refund would take 5-7 business days to process. The function returns the order details after the cancellation.";
    protected override (string, string, string, string[]?)[] Arguments =>
    [
        ("order_id", "string", OrderIdText, null),
        ("reason", "string", "The reason for cancellation, which should be either 'no longer needed' or 'ordered by mistake'.", Reasons),
    ];

    public override string Invoke(StoreDatabase store, JsonObject a)
    {
        if (store.GetOrder(S(a, "order_id")) is not { } order) return "Error: order not found";
        if (order.Status != "pending") return "Error: non-pending order cannot be cancelled";
        string reason = S(a, "reason");
        if (!Reasons.Contains(reason)) return "Error: invalid reason";
        foreach (var p in order.Payments.ToList())
        {
            AddPayment(store, order.OrderId, "refund", p.AmountCents, p.PaymentMethodId);
            if (p.PaymentMethodId.Contains("gift_card", StringComparison.Ordinal)) AddBalance(store, p.PaymentMethodId, p.AmountCents);
        }
        store.Execute("UPDATE orders SET status = 'cancelled', cancel_reason = $r WHERE order_id = $o", ("$r", reason), ("$o", order.OrderId));
        return Json(store.OrderJson(store.GetOrder(order.OrderId)!));
    }
}

public sealed class ModifyPendingOrderAddress : WriteTool
{
    public override string Name => "modify_pending_order_address";
    protected override string Description => "Modify the shipping address of a pending order. The agent needs to explain the modification detail and ask for explicit user confirmation (yes/no) to proceed.";
    protected override (string, string, string, string[]?)[] Arguments => [("order_id", "string", OrderIdText, null), .. AddressArguments];

    public override string Invoke(StoreDatabase store, JsonObject a)
    {
        if (store.GetOrder(S(a, "order_id")) is not { } order) return "Error: order not found";
        if (order.Status != "pending") return "Error: non-pending order cannot be modified";
        var x = AddressOf(a);
        store.Execute("UPDATE orders SET address1 = $a1, address2 = $a2, city = $c, state = $s, country = $co, zip = $z WHERE order_id = $o",
            ("$a1", x.Address1), ("$a2", x.Address2), ("$c", x.City), ("$s", x.State), ("$co", x.Country), ("$z", x.Zip), ("$o", order.OrderId));
        return Json(store.OrderJson(store.GetOrder(order.OrderId)!));
    }
}

/// <summary>The item swap shared by modify (pending) and exchange (delivered): each old item to an available variant of
/// the same product; returns the total price difference or an error.</summary>
public abstract class ItemSwapTool : WriteTool
{
    protected static (long Difference, List<(OrderItem Old, Variant New)> Pairs, string? Error) Swap(StoreDatabase store, Order order, List<string> itemIds, List<string> newItemIds)
    {
        if (MissingItem(order, itemIds) is string missing) return (0, [], $"Error: {missing} not found");
        if (itemIds.Count != newItemIds.Count) return (0, [], "Error: the number of items to be exchanged should match");
        var pairs = new List<(OrderItem, Variant)>();
        var taken = new HashSet<int>();
        long difference = 0;
        for (int i = 0; i < itemIds.Count; i++)
        {
            var old = order.Items.First(x => x.ItemId == itemIds[i] && !taken.Contains(x.Position));
            taken.Add(old.Position);
            var variant = store.GetVariant(newItemIds[i]);
            if (variant == null || variant.ProductId != old.ProductId || !variant.Available) return (0, [], $"Error: new item {newItemIds[i]} not found or available");
            difference += variant.PriceCents - old.PriceCents;
            pairs.Add((old, variant));
        }
        return (difference, pairs, null);
    }

    protected static readonly (string, string, string, string[]?)[] SwapArguments =
    [
        ("order_id", "string", OrderIdText, null),
        ("item_ids", "array", "The item ids to be modified, each such as '1008292230'. There could be duplicate items in the list.", null),
        ("new_item_ids", "array", "The item ids to be modified for, each such as '1008292230'. There could be duplicate items in the list. " +
                                  "Each new item id should match the item id in the same position and be of the same product.", null),
        ("payment_method_id", "string", PaymentText, null),
    ];
}

public sealed class ModifyPendingOrderItems : ItemSwapTool
{
    public override string Name => "modify_pending_order_items";
    protected override string Description => "Modify items in a pending order to new items of the same product type. For a pending order, this function can only be called once. " +
                                             "The agent needs to explain the exchange detail and ask for explicit user confirmation (yes/no) to proceed.";
    protected override (string, string, string, string[]?)[] Arguments => SwapArguments;

    public override string Invoke(StoreDatabase store, JsonObject a)
    {
        if (store.GetOrder(S(a, "order_id")) is not { } order) return "Error: order not found";
        if (order.Status != "pending") return "Error: non-pending order cannot be modified";
        var (difference, pairs, error) = Swap(store, order, L(a, "item_ids"), L(a, "new_item_ids"));
        if (error != null) return error;
        if (MethodOf(store, order.UserId, S(a, "payment_method_id")) is not { } method) return "Error: payment method not found";
        if (method.Source == "gift_card" && method.BalanceCents < difference) return "Error: insufficient gift card balance to pay for the new item";
        AddPayment(store, order.OrderId, difference > 0 ? "payment" : "refund", Math.Abs(difference), method.Id);
        if (method.Source == "gift_card") AddBalance(store, method.Id, -difference);
        foreach (var (old, variant) in pairs)
            store.Execute("UPDATE order_items SET item_id = $i, price_cents = $p, options = $op WHERE order_id = $o AND position = $pos",
                ("$i", variant.ItemId), ("$p", variant.PriceCents), ("$op", variant.Options), ("$o", order.OrderId), ("$pos", old.Position));
        store.Execute("UPDATE orders SET status = 'pending (item modified)' WHERE order_id = $o", ("$o", order.OrderId));
        return Json(store.OrderJson(store.GetOrder(order.OrderId)!));
    }
}

public sealed class ModifyPendingOrderPayment : WriteTool
{
    public override string Name => "modify_pending_order_payment";
    protected override string Description => "Modify the payment method of a pending order. The agent needs to explain the modification detail and ask for explicit user confirmation (yes/no) to proceed.";
    protected override (string, string, string, string[]?)[] Arguments => [("order_id", "string", OrderIdText, null), ("payment_method_id", "string", PaymentText, null)];

    public override string Invoke(StoreDatabase store, JsonObject a)
    {
        if (store.GetOrder(S(a, "order_id")) is not { } order) return "Error: order not found";
        if (order.Status != "pending") return "Error: non-pending order cannot be modified";
        if (MethodOf(store, order.UserId, S(a, "payment_method_id")) is not { } method) return "Error: payment method not found";
        if (order.Payments.Count != 1 || order.Payments[0].TransactionType != "payment") return "Error: there should be exactly one payment for a pending order";
        var old = order.Payments[0];
        if (old.PaymentMethodId == method.Id) return "Error: the new payment method should be different from the current one";
        if (method.Source == "gift_card" && method.BalanceCents < old.AmountCents) return "Error: insufficient gift card balance to pay for the order";
        AddPayment(store, order.OrderId, "payment", old.AmountCents, method.Id);
        AddPayment(store, order.OrderId, "refund", old.AmountCents, old.PaymentMethodId);
        if (method.Source == "gift_card") AddBalance(store, method.Id, -old.AmountCents);
        if (old.PaymentMethodId.Contains("gift_card", StringComparison.Ordinal)) AddBalance(store, old.PaymentMethodId, old.AmountCents);
        return Json(store.OrderJson(store.GetOrder(order.OrderId)!));
    }
}

public sealed class ModifyUserAddress : WriteTool
{
    public override string Name => "modify_user_address";
    protected override string Description => "Modify the default address of a user. The agent needs to explain the modification detail and ask for explicit user confirmation (yes/no) to proceed.";
    protected override (string, string, string, string[]?)[] Arguments => [("user_id", "string", "The user id, such as 'sara_doe_496'.", null), .. AddressArguments];

    public override string Invoke(StoreDatabase store, JsonObject a)
    {
        string userId = S(a, "user_id");
        if (store.GetUser(userId) is null) return "Error: user not found";
        var x = AddressOf(a);
        store.Execute("UPDATE users SET address1 = $a1, address2 = $a2, city = $c, state = $s, country = $co, zip = $z WHERE user_id = $u",
            ("$a1", x.Address1), ("$a2", x.Address2), ("$c", x.City), ("$s", x.State), ("$co", x.Country), ("$z", x.Zip), ("$u", userId));
        return Json(StoreRecords.UserJson(store.GetUser(userId)!));
    }
}

public sealed class ReturnDeliveredOrderItems : WriteTool
{
    public override string Name => "return_delivered_order_items";
    protected override string Description => "Return some items of a delivered order. The order status will be changed to 'return requested'. The agent needs to explain the return " +
                                             "detail and ask for explicit user confirmation (yes/no) to proceed. The user will receive follow-up email for how and where to return the item.";
    protected override (string, string, string, string[]?)[] Arguments =>
    [
        ("order_id", "string", OrderIdText, null),
        ("item_ids", "array", "The item ids to be returned, each such as '1008292230'. There could be duplicate items in the list.", null),
        ("payment_method_id", "string", PaymentText, null),
    ];

    public override string Invoke(StoreDatabase store, JsonObject a)
    {
        if (store.GetOrder(S(a, "order_id")) is not { } order) return "Error: order not found";
        if (order.Status != "delivered") return "Error: non-delivered order cannot be returned";
        string methodId = S(a, "payment_method_id");
        if (MethodOf(store, order.UserId, methodId) is null) return "Error: payment method not found";
        if (!methodId.Contains("gift_card", StringComparison.Ordinal) && methodId != order.Payments[0].PaymentMethodId)
            return "Error: payment method should be either the original payment method or a gift card";
        var items = L(a, "item_ids");
        if (MissingItem(order, items) != null) return "Error: some item not found";
        items.Sort(StringComparer.Ordinal);
        store.Execute("UPDATE orders SET status = 'return requested', return_items = $i, return_payment_method_id = $m WHERE order_id = $o",
            ("$i", StoreRecords.StringListJson(items)), ("$m", methodId), ("$o", order.OrderId));
        return Json(store.OrderJson(store.GetOrder(order.OrderId)!));
    }
}

public sealed class ExchangeDeliveredOrderItems : ItemSwapTool
{
    public override string Name => "exchange_delivered_order_items";
    protected override string Description => "Exchange items in a delivered order to new items of the same product type. For a delivered order, return or exchange can be only done " +
                                             "once by the agent. The agent needs to explain the exchange detail and ask for explicit user confirmation (yes/no) to proceed.";
    protected override (string, string, string, string[]?)[] Arguments => SwapArguments;

    public override string Invoke(StoreDatabase store, JsonObject a)
    {
        if (store.GetOrder(S(a, "order_id")) is not { } order) return "Error: order not found";
        if (order.Status != "delivered") return "Error: non-delivered order cannot be exchanged";
        var itemIds = L(a, "item_ids");
        var newItemIds = L(a, "new_item_ids");
        var (difference, _, error) = Swap(store, order, itemIds, newItemIds);
        if (error != null) return error;
        if (MethodOf(store, order.UserId, S(a, "payment_method_id")) is not { } method) return "Error: payment method not found";
        if (method.Source == "gift_card" && method.BalanceCents < difference) return "Error: insufficient gift card balance to pay for the price difference";
        itemIds.Sort(StringComparer.Ordinal);
        newItemIds.Sort(StringComparer.Ordinal);
        store.Execute("UPDATE orders SET status = 'exchange requested', exchange_items = $i, exchange_new_items = $n, exchange_payment_method_id = $m, " +
                      "exchange_price_difference_cents = $d WHERE order_id = $o",
            ("$i", StoreRecords.StringListJson(itemIds)), ("$n", StoreRecords.StringListJson(newItemIds)), ("$m", method.Id), ("$d", difference), ("$o", order.OrderId));
        return Json(store.OrderJson(store.GetOrder(order.OrderId)!));
    }
}

public sealed class Calculate : StoreTool
{
    public override string Name => "calculate";
    protected override string Description => "Calculate the result of a mathematical expression.";
    protected override (string, string, string, string[]?)[] Arguments =>
    [
        ("expression", "string", "The mathematical expression to calculate, such as '2 + 2'. The expression can contain numbers, operators (+, -, *, /), parentheses, and spaces.", null),
    ];

    public override string Invoke(StoreDatabase store, JsonObject a) => Arithmetic.Evaluate(S(a, "expression"));
}

public sealed class Think : StoreTool
{
    public override string Name => "think";
    protected override string Description => "Use the tool to think about something. It will not obtain new information or change the database, but just append the thought to the log. " +
                                             "Use it when complex reasoning or some cache memory is needed.";
    protected override (string, string, string, string[]?)[] Arguments => [("thought", "string", "A thought to think about.", null)];

    public override string Invoke(StoreDatabase store, JsonObject a) => "";
}

public sealed class TransferToHumanAgents : StoreTool
{
    public override string Name => "transfer_to_human_agents";
    public override bool EndsEpisode => true;
    protected override string Description => "Transfer the user to a human agent, with a summary of the user's issue. Only transfer if the user explicitly asks for a human agent, " +
                                             "or if the user's issue cannot be resolved by the agent with the available tools.";
    protected override (string, string, string, string[]?)[] Arguments => [("summary", "string", "A summary of the user's issue.", null)];

    /// <summary>The transfer is recorded in the store (a row of "transfers", the summary left out) so that the final
    /// database state says whether the agent handed the customer over.</summary>
    public override string Invoke(StoreDatabase store, JsonObject a)
    {
        store.Execute("INSERT INTO transfers (position) VALUES ((SELECT count(*) FROM transfers))");
        return "Transfer successful";
    }
}
