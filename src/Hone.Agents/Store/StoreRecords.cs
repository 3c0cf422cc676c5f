using System.Globalization;
using System.Text.Json.Nodes;

namespace Hone.Agents;

public sealed record PaymentMethod(string Id, string UserId, string Source, string? Brand, string? LastFour, long? BalanceCents);
public sealed record OrderItem(int Position, string ItemId, string ProductId, string Name, long PriceCents, string Options);
public sealed record Payment(int Position, string TransactionType, long AmountCents, string PaymentMethodId);
public sealed record Fulfillment(int Position, IReadOnlyList<string> TrackingIds, IReadOnlyList<string> ItemIds);
public sealed record Order(string OrderId, string UserId, Address Address, string Status, IReadOnlyList<OrderItem> Items,
    IReadOnlyList<Fulfillment> Fulfillments, IReadOnlyList<Payment> Payments);
public sealed record Variant(string ItemId, string ProductId, string Options, bool Available, long PriceCents);
public sealed record User(string UserId, string FirstName, string LastName, string Email, Address Address, IReadOnlyList<PaymentMethod> PaymentMethods,
    IReadOnlyList<string> Orders);

/// <summary>Typed reads of the store and the JSON the tools return (τ-bench's shapes, compact; money in dollars).</summary>
public static class StoreRecords
{
    /// <summary>Dollars from cents, exact: 4784 → 47.84, 5100 → 51, 4780 → 47.8 (as Python prints τ-bench's floats, less ".0").</summary>
    public static decimal Dollars(long cents) => cents / 100m;

    public static string Money(long cents) => Dollars(cents).ToString(CultureInfo.InvariantCulture);

    static Address ReadAddress(Microsoft.Data.Sqlite.SqliteDataReader r, int first) =>
        new(r.GetString(first), r.GetString(first + 1), r.GetString(first + 2), r.GetString(first + 3), r.GetString(first + 4), r.GetString(first + 5));

    public static JsonObject AddressJson(Address a) => new()
    {
        ["address1"] = a.Address1, ["address2"] = a.Address2, ["city"] = a.City, ["country"] = a.Country, ["state"] = a.State, ["zip"] = a.Zip,
    };

    public static User? GetUser(this StoreDatabase store, string userId)
    {
        using var command = store.Command("SELECT user_id, first_name, last_name, email, address1, address2, city, state, country, zip FROM users WHERE user_id = $id", ("$id", userId));
        using var r = command.ExecuteReader();
        if (!r.Read()) return null;
        return new User(r.GetString(0), r.GetString(1), r.GetString(2), r.GetString(3), ReadAddress(r, 4), store.PaymentMethodsOf(userId), store.OrdersOf(userId));
    }

    public static List<PaymentMethod> PaymentMethodsOf(this StoreDatabase store, string userId)
    {
        var list = new List<PaymentMethod>();
        using var command = store.Command("SELECT payment_method_id, user_id, source, brand, last_four, balance_cents FROM payment_methods WHERE user_id = $id ORDER BY position", ("$id", userId));
        using var r = command.ExecuteReader();
        while (r.Read())
            list.Add(new PaymentMethod(r.GetString(0), r.GetString(1), r.GetString(2), r.IsDBNull(3) ? null : r.GetString(3), r.IsDBNull(4) ? null : r.GetString(4),
                r.IsDBNull(5) ? null : r.GetInt64(5)));
        return list;
    }

    public static List<string> OrdersOf(this StoreDatabase store, string userId)
    {
        var list = new List<string>();
        using var command = store.Command("SELECT order_id FROM orders WHERE user_id = $id ORDER BY position", ("$id", userId));
        using var r = command.ExecuteReader();
        while (r.Read()) list.Add(r.GetString(0));
        return list;
    }

    /// <summary>Every order id, in key order.</summary>
    public static List<string> OrdersOfAll(this StoreDatabase store)
    {
        var list = new List<string>();
        using var command = store.Command("SELECT order_id FROM orders ORDER BY order_id");
        using var r = command.ExecuteReader();
        while (r.Read()) list.Add(r.GetString(0));
        return list;
    }

    public static Order? GetOrder(this StoreDatabase store, string orderId)
    {
        string userId, status;
        Address address;
        using (var command = store.Command("SELECT user_id, status, address1, address2, city, state, country, zip FROM orders WHERE order_id = $id", ("$id", orderId)))
        using (var r = command.ExecuteReader())
        {
            if (!r.Read()) return null;
            userId = r.GetString(0);
            status = r.GetString(1);
            address = ReadAddress(r, 2);
        }
        var items = new List<OrderItem>();
        using (var command = store.Command("SELECT position, item_id, product_id, name, price_cents, options FROM order_items WHERE order_id = $id ORDER BY position", ("$id", orderId)))
        using (var r = command.ExecuteReader())
            while (r.Read()) items.Add(new OrderItem(r.GetInt32(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetInt64(4), r.GetString(5)));
        var fulfillments = new List<Fulfillment>();
        using (var command = store.Command("SELECT position, tracking_ids, item_ids FROM fulfillments WHERE order_id = $id ORDER BY position", ("$id", orderId)))
        using (var r = command.ExecuteReader())
            while (r.Read()) fulfillments.Add(new Fulfillment(r.GetInt32(0), StringList(r.GetString(1)), StringList(r.GetString(2))));
        var payments = new List<Payment>();
        using (var command = store.Command("SELECT position, transaction_type, amount_cents, payment_method_id FROM payments WHERE order_id = $id ORDER BY position", ("$id", orderId)))
        using (var r = command.ExecuteReader())
            while (r.Read()) payments.Add(new Payment(r.GetInt32(0), r.GetString(1), r.GetInt64(2), r.GetString(3)));
        return new Order(orderId, userId, address, status, items, fulfillments, payments);
    }

    public static List<Variant> VariantsOf(this StoreDatabase store, string productId)
    {
        var list = new List<Variant>();
        using var command = store.Command("SELECT item_id, product_id, options, available, price_cents FROM variants WHERE product_id = $id ORDER BY position", ("$id", productId));
        using var r = command.ExecuteReader();
        while (r.Read()) list.Add(new Variant(r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt64(3) != 0, r.GetInt64(4)));
        return list;
    }

    public static Variant? GetVariant(this StoreDatabase store, string itemId)
    {
        using var command = store.Command("SELECT item_id, product_id, options, available, price_cents FROM variants WHERE item_id = $id", ("$id", itemId));
        using var r = command.ExecuteReader();
        return r.Read() ? new Variant(r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt64(3) != 0, r.GetInt64(4)) : null;
    }

    public static string? ProductName(this StoreDatabase store, string productId) =>
        store.Scalar<string>("SELECT name FROM products WHERE product_id = $id", ("$id", productId));

    public static IReadOnlyList<string> StringList(string json) =>
        JsonNode.Parse(json) is JsonArray a ? a.Select(x => x!.GetValue<string>()).ToList() : throw new InvalidOperationException($"store: expected a JSON list of strings, found {json}");

    public static string StringListJson(IEnumerable<string> values) => new JsonArray(values.Select(v => (JsonNode)v).ToArray()).ToJsonString();

    public static JsonObject UserJson(User u)
    {
        var methods = new JsonObject();
        foreach (var m in u.PaymentMethods) methods[m.Id] = PaymentMethodJson(m);
        return new JsonObject
        {
            ["name"] = new JsonObject { ["first_name"] = u.FirstName, ["last_name"] = u.LastName },
            ["address"] = AddressJson(u.Address),
            ["email"] = u.Email,
            ["payment_methods"] = methods,
            ["orders"] = new JsonArray(u.Orders.Select(o => (JsonNode)o).ToArray()),
        };
    }

    public static JsonObject PaymentMethodJson(PaymentMethod m)
    {
        var o = new JsonObject { ["source"] = m.Source };
        if (m.Brand != null) o["brand"] = m.Brand;
        if (m.LastFour != null) o["last_four"] = m.LastFour;
        if (m.BalanceCents is long b) o["balance"] = Dollars(b);
        o["id"] = m.Id;
        return o;
    }

    /// <summary>The order as τ-bench returns it, plus the cancel/return/exchange fields once they are set.</summary>
    public static JsonObject OrderJson(this StoreDatabase store, Order o)
    {
        var json = new JsonObject
        {
            ["order_id"] = o.OrderId,
            ["user_id"] = o.UserId,
            ["address"] = AddressJson(o.Address),
            ["items"] = new JsonArray(o.Items.Select(i => (JsonNode)new JsonObject
            {
                ["name"] = i.Name, ["product_id"] = i.ProductId, ["item_id"] = i.ItemId, ["price"] = Dollars(i.PriceCents), ["options"] = JsonNode.Parse(i.Options),
            }).ToArray()),
            ["fulfillments"] = new JsonArray(o.Fulfillments.Select(f => (JsonNode)new JsonObject
            {
                ["tracking_id"] = new JsonArray(f.TrackingIds.Select(t => (JsonNode)t).ToArray()),
                ["item_ids"] = new JsonArray(f.ItemIds.Select(t => (JsonNode)t).ToArray()),
            }).ToArray()),
            ["status"] = o.Status,
            ["payment_history"] = new JsonArray(o.Payments.Select(p => (JsonNode)new JsonObject
            {
                ["transaction_type"] = p.TransactionType, ["amount"] = Dollars(p.AmountCents), ["payment_method_id"] = p.PaymentMethodId,
            }).ToArray()),
        };
        using var command = store.Command("SELECT cancel_reason, return_items, return_payment_method_id, exchange_items, exchange_new_items, exchange_payment_method_id, " +
                                          "exchange_price_difference_cents FROM orders WHERE order_id = $id", ("$id", o.OrderId));
        using var r = command.ExecuteReader();
        if (r.Read())
        {
            if (!r.IsDBNull(0)) json["cancel_reason"] = r.GetString(0);
            if (!r.IsDBNull(1)) json["return_items"] = JsonNode.Parse(r.GetString(1));
            if (!r.IsDBNull(2)) json["return_payment_method_id"] = r.GetString(2);
            if (!r.IsDBNull(3)) json["exchange_items"] = JsonNode.Parse(r.GetString(3));
            if (!r.IsDBNull(4)) json["exchange_new_items"] = JsonNode.Parse(r.GetString(4));
            if (!r.IsDBNull(5)) json["exchange_payment_method_id"] = r.GetString(5);
            if (!r.IsDBNull(6)) json["exchange_price_difference"] = Dollars(r.GetInt64(6));
        }
        return json;
    }

    public static JsonObject ProductJson(this StoreDatabase store, string productId, string name)
    {
        var variants = new JsonObject();
        foreach (var v in store.VariantsOf(productId))
            variants[v.ItemId] = new JsonObject { ["item_id"] = v.ItemId, ["options"] = JsonNode.Parse(v.Options), ["available"] = v.Available, ["price"] = Dollars(v.PriceCents) };
        return new JsonObject { ["name"] = name, ["product_id"] = productId, ["variants"] = variants };
    }

    /// <summary>"color blue, size M" from an options object, for the conversation.</summary>
    public static string DescribeOptions(string optionsJson) =>
        JsonNode.Parse(optionsJson) is JsonObject o ? string.Join(", ", o.Select(p => $"{p.Key} {p.Value}")) : optionsJson;
}
