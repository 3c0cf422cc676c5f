using System.Text.Json.Nodes;
using Hone.Agents;
using Xunit;

namespace Hone.Tests.Agents;

/// <summary>Each tool's happy path and its refusals, with τ-bench's messages, on a fresh copy of the fixture's store.</summary>
public sealed class StoreToolTests(AgentFixture fixture) : IClassFixture<AgentFixture>
{
    static JsonObject Args(params (string Key, JsonNode? Value)[] args) => new(args.Select(a => KeyValuePair.Create(a.Key, a.Value)));
    static JsonArray List(params string[] values) => new(values.Select(v => (JsonNode)v).ToArray());

    StoreDatabase Fresh() => fixture.Data.Store.Copy();

    Order FirstOrder(StoreDatabase store, Func<Order, bool> fits)
    {
        foreach (var id in store.OrdersOfAll())
            if (store.GetOrder(id) is { } o && fits(o)) return o;
        throw new InvalidOperationException("the fixture store has no such order");
    }

    [Fact]
    public void Lookups_find_users_orders_and_products_or_say_not_found()
    {
        using var store = Fresh();
        var user = store.GetUser(fixture.Data.TrainTasks[0].UserId)!;
        Assert.Equal(user.UserId, StoreTools.Call(store, "find_user_id_by_email", Args(("email", user.Email.ToUpperInvariant()))));
        Assert.Equal("Error: user not found", StoreTools.Call(store, "find_user_id_by_email", Args(("email", "nobody@example.com"))));
        Assert.Equal("Error: user not found", StoreTools.Call(store, "find_user_id_by_name_zip", Args(("first_name", "No"), ("last_name", "Body"), ("zip", "00000"))));
        var details = JsonNode.Parse(StoreTools.Call(store, "get_user_details", Args(("user_id", user.UserId))))!;
        Assert.Equal(user.Email, (string?)details["email"]);
        Assert.Equal(user.Orders.Count, details["orders"]!.AsArray().Count);
        Assert.Equal("Error: user not found", StoreTools.Call(store, "get_user_details", Args(("user_id", "nobody_0000"))));
        var order = FirstOrder(store, _ => true);
        var orderJson = JsonNode.Parse(StoreTools.Call(store, "get_order_details", Args(("order_id", order.OrderId))))!;
        Assert.Equal(order.Status, (string?)orderJson["status"]);
        Assert.Equal("Error: order not found", StoreTools.Call(store, "get_order_details", Args(("order_id", "#W0000000"))));
        var product = JsonNode.Parse(StoreTools.Call(store, "get_product_details", Args(("product_id", order.Items[0].ProductId))))!;
        Assert.Equal(order.Items[0].Name, (string?)product["name"]);
        Assert.NotNull(product["variants"]![order.Items[0].ItemId]);
        Assert.Equal("Error: product not found", StoreTools.Call(store, "get_product_details", Args(("product_id", order.Items[0].ItemId))));
        var types = JsonNode.Parse(StoreTools.Call(store, "list_all_product_types", Args()))!.AsObject();
        Assert.Equal(AgentFixture.Store.Products, types.Count);
        Assert.Equal(types.Select(p => p.Key).Order(StringComparer.Ordinal), types.Select(p => p.Key));
    }

    [Fact]
    public void Find_by_name_and_zip_finds_the_user()
    {
        using var store = Fresh();
        var task = fixture.AllTasks.First(t => t.Actions[0].Name == "find_user_id_by_name_zip");
        Assert.Equal(task.UserId, StoreTools.Call(store, task.Actions[0].Name, task.Actions[0].Arguments));
    }

    [Fact]
    public void Cancel_refunds_and_refuses_what_is_not_pending_or_has_a_bad_reason()
    {
        using var store = Fresh();
        var delivered = FirstOrder(store, o => o.Status == "delivered");
        Assert.Equal("Error: non-pending order cannot be cancelled", StoreTools.Call(store, "cancel_pending_order", Args(("order_id", delivered.OrderId), ("reason", "no longer needed"))));
        var pending = FirstOrder(store, o => o.Status == "pending");
        Assert.Equal("Error: invalid reason", StoreTools.Call(store, "cancel_pending_order", Args(("order_id", pending.OrderId), ("reason", "too expensive"))));
        Assert.Equal("Error: order not found", StoreTools.Call(store, "cancel_pending_order", Args(("order_id", "#W0000000"), ("reason", "no longer needed"))));
        string before = store.Hash();
        var result = JsonNode.Parse(StoreTools.Call(store, "cancel_pending_order", Args(("order_id", pending.OrderId), ("reason", "ordered by mistake"))))!;
        Assert.Equal("cancelled", (string?)result["status"]);
        Assert.Equal("ordered by mistake", (string?)result["cancel_reason"]);
        var history = result["payment_history"]!.AsArray();
        Assert.Equal("refund", (string?)history[^1]!["transaction_type"]);
        Assert.Equal((decimal)history[0]!["amount"]!, (decimal)history[^1]!["amount"]!);
        Assert.NotEqual(before, store.Hash());
        Assert.Equal("Error: non-pending order cannot be cancelled", StoreTools.Call(store, "cancel_pending_order", Args(("order_id", pending.OrderId), ("reason", "no longer needed"))));
    }

    [Fact]
    public void A_gift_card_refund_returns_to_the_card_at_once()
    {
        using var store = Fresh();
        var order = FirstOrder(store, o => o.Status == "pending" && o.Payments[0].PaymentMethodId.StartsWith("gift_card_"));
        var card = store.GetUser(order.UserId)!.PaymentMethods.Single(m => m.Id == order.Payments[0].PaymentMethodId);
        StoreTools.Call(store, "cancel_pending_order", Args(("order_id", order.OrderId), ("reason", "no longer needed")));
        var after = store.GetUser(order.UserId)!.PaymentMethods.Single(m => m.Id == card.Id);
        Assert.Equal(card.BalanceCents + order.Payments[0].AmountCents, after.BalanceCents);
    }

    [Fact]
    public void Modify_items_once_then_the_order_cannot_be_modified_or_cancelled()
    {
        using var store = Fresh();
        var task = fixture.AllTasks.First(t => t.Kind == TaskKinds.ModifyItems);
        var write = task.Actions[^1];
        string orderId = write.Arguments["order_id"]!.GetValue<string>();
        var order = store.GetOrder(orderId)!;
        string item = write.Arguments["item_ids"]![0]!.GetValue<string>();
        string newItem = write.Arguments["new_item_ids"]![0]!.GetValue<string>();
        string method = write.Arguments["payment_method_id"]!.GetValue<string>();
        var otherProductItem = store.GetOrder(FirstOrder(store, o => o.Items.Any(i => i.ProductId != order.Items.First(x => x.ItemId == item).ProductId)).OrderId)!
            .Items.First(i => i.ProductId != order.Items.First(x => x.ItemId == item).ProductId).ItemId;
        Assert.Equal($"Error: new item {otherProductItem} not found or available",
            StoreTools.Call(store, "modify_pending_order_items", Args(("order_id", orderId), ("item_ids", List(item)), ("new_item_ids", List(otherProductItem)), ("payment_method_id", method))));
        Assert.Equal("Error: the number of items to be exchanged should match",
            StoreTools.Call(store, "modify_pending_order_items", Args(("order_id", orderId), ("item_ids", List(item)), ("new_item_ids", List(newItem, newItem)), ("payment_method_id", method))));
        Assert.Equal("Error: 0000000000 not found",
            StoreTools.Call(store, "modify_pending_order_items", Args(("order_id", orderId), ("item_ids", List("0000000000")), ("new_item_ids", List(newItem)), ("payment_method_id", method))));
        Assert.Equal("Error: payment method not found",
            StoreTools.Call(store, "modify_pending_order_items", Args(("order_id", orderId), ("item_ids", List(item)), ("new_item_ids", List(newItem)), ("payment_method_id", "paypal_0000000"))));
        var result = JsonNode.Parse(StoreTools.Call(store, write.Name, write.Arguments))!;
        Assert.Equal("pending (item modified)", (string?)result["status"]);
        Assert.Contains(result["items"]!.AsArray(), i => (string?)i!["item_id"] == newItem);
        Assert.Equal("Error: non-pending order cannot be modified", StoreTools.Call(store, write.Name, write.Arguments));
        Assert.Equal("Error: non-pending order cannot be modified",
            StoreTools.Call(store, "modify_pending_order_address", Args(("order_id", orderId), ("address1", "1 A St"), ("address2", ""), ("city", "X"), ("state", "CA"), ("country", "USA"), ("zip", "90001"))));
        Assert.Equal("Error: non-pending order cannot be cancelled", StoreTools.Call(store, "cancel_pending_order", Args(("order_id", orderId), ("reason", "no longer needed"))));
    }

    [Fact]
    public void Modify_address_payment_and_user_address()
    {
        using var store = Fresh();
        var pending = FirstOrder(store, o => o.Status == "pending" && o.Payments.Count == 1);
        var address = Args(("address1", "1 Main Street"), ("address2", "Suite 1"), ("city", "Austin"), ("state", "TX"), ("country", "USA"), ("zip", "78701"));
        var withOrder = (JsonObject)address.DeepClone();
        withOrder["order_id"] = pending.OrderId;
        var moved = JsonNode.Parse(StoreTools.Call(store, "modify_pending_order_address", withOrder))!;
        Assert.Equal("1 Main Street", (string?)moved["address"]!["address1"]);
        Assert.Equal("Error: the new payment method should be different from the current one",
            StoreTools.Call(store, "modify_pending_order_payment", Args(("order_id", pending.OrderId), ("payment_method_id", pending.Payments[0].PaymentMethodId))));
        var task = fixture.AllTasks.First(t => t.Kind == TaskKinds.ModifyPayment);
        var paid = JsonNode.Parse(StoreTools.Call(store, task.Actions[^1].Name, task.Actions[^1].Arguments))!;
        var history = paid["payment_history"]!.AsArray();
        Assert.Equal(3, history.Count);
        Assert.Equal(task.Actions[^1].Arguments["payment_method_id"]!.GetValue<string>(), (string?)history[1]!["payment_method_id"]);
        Assert.Equal("refund", (string?)history[2]!["transaction_type"]);
        var withUser = (JsonObject)address.DeepClone();
        withUser["user_id"] = pending.UserId;
        Assert.Equal("Austin", (string?)JsonNode.Parse(StoreTools.Call(store, "modify_user_address", withUser))!["address"]!["city"]);
        withUser["user_id"] = "nobody_0000";
        Assert.Equal("Error: user not found", StoreTools.Call(store, "modify_user_address", withUser));
    }

    [Fact]
    public void Return_and_exchange_only_delivered_orders_refunds_only_to_the_original_method_or_a_gift_card()
    {
        using var store = Fresh();
        var pending = FirstOrder(store, o => o.Status == "pending");
        Assert.Equal("Error: non-delivered order cannot be returned",
            StoreTools.Call(store, "return_delivered_order_items", Args(("order_id", pending.OrderId), ("item_ids", List(pending.Items[0].ItemId)), ("payment_method_id", pending.Payments[0].PaymentMethodId))));
        Assert.Equal("Error: non-delivered order cannot be exchanged",
            StoreTools.Call(store, "exchange_delivered_order_items", Args(("order_id", pending.OrderId), ("item_ids", List(pending.Items[0].ItemId)), ("new_item_ids", List(pending.Items[0].ItemId)), ("payment_method_id", pending.Payments[0].PaymentMethodId))));
        var refuse = fixture.AllTasks.First(t => t.Kind == TaskKinds.RefuseRefundMethod);
        Assert.Equal("Error: payment method should be either the original payment method or a gift card",
            StoreTools.Call(store, refuse.Customer.Desired!.Name, refuse.Customer.Desired.Arguments));
        var ret = fixture.AllTasks.First(t => t.Kind == TaskKinds.Return).Actions[^1];
        string retOrder = ret.Arguments["order_id"]!.GetValue<string>();
        Assert.Equal("Error: some item not found", StoreTools.Call(store, ret.Name, Args(("order_id", retOrder), ("item_ids", List("0000000000")), ("payment_method_id", ret.Arguments["payment_method_id"]!.GetValue<string>()))));
        var returned = JsonNode.Parse(StoreTools.Call(store, ret.Name, ret.Arguments))!;
        Assert.Equal("return requested", (string?)returned["status"]);
        Assert.Equal("Error: non-delivered order cannot be returned", StoreTools.Call(store, ret.Name, ret.Arguments));
        var exchange = fixture.AllTasks.First(t => t.Kind == TaskKinds.Exchange && t.Actions[^1].Arguments["order_id"]!.GetValue<string>() != retOrder).Actions[^1];
        var exchanged = JsonNode.Parse(StoreTools.Call(store, exchange.Name, exchange.Arguments))!;
        Assert.Equal("exchange requested", (string?)exchanged["status"]);
        Assert.NotNull(exchanged["exchange_price_difference"]);
        Assert.Equal("Error: non-delivered order cannot be exchanged", StoreTools.Call(store, exchange.Name, exchange.Arguments));
    }

    [Theory]
    [InlineData("2 + 2", "4.0")]
    [InlineData("10 / 3", "3.33")]
    [InlineData("(47.84 + 488.81) * 2", "1073.3")]
    [InlineData("-3 - -2", "-1.0")]
    [InlineData("2 ** 3", "8.0")]
    [InlineData("import os", "Error: invalid characters in expression")]
    [InlineData("1 / 0", "Error: division by zero")]
    [InlineData("(1 + ", "Error: invalid syntax")]
    [InlineData("1 2", "Error: invalid syntax")]
    public void Calculate_accepts_arithmetic_only(string expression, string expected)
    {
        using var store = Fresh();
        Assert.Equal(expected, StoreTools.Call(store, "calculate", Args(("expression", expression))));
    }

    [Fact]
    public void Arguments_are_checked_against_the_schema_and_errors_are_text()
    {
        using var store = Fresh();
        Assert.Equal("Error: missing argument 'reason'", StoreTools.Call(store, "cancel_pending_order", Args(("order_id", "#W0000000"))));
        Assert.Equal("Error: argument 'order_id' must be a string", StoreTools.Call(store, "get_order_details", Args(("order_id", 5))));
        Assert.Equal("Error: argument 'item_ids' must be a list of strings",
            StoreTools.Call(store, "return_delivered_order_items", Args(("order_id", "#W0000000"), ("item_ids", "1234567890"), ("payment_method_id", "paypal_1"))));
        Assert.Equal("Error: unexpected argument 'force'", StoreTools.Call(store, "get_order_details", Args(("order_id", "#W0000000"), ("force", "yes"))));
        Assert.Equal("Error: unknown tool 'drop_tables'", StoreTools.Call(store, "drop_tables", null));
        Assert.Equal("", StoreTools.Call(store, "think", Args(("thought", "hmm"))));
        string before = store.Hash();
        Assert.Equal("Transfer successful", StoreTools.Call(store, "transfer_to_human_agents", Args(("summary", "out of scope"))));
        Assert.NotEqual(before, store.Hash());
        Assert.All(StoreTools.Specs, s => Assert.Equal("object", (string?)s.Parameters["type"]));
        Assert.Equal(16, StoreTools.Specs.Count);
    }

    [Fact]
    public void A_damaged_store_file_is_a_one_line_error_naming_it()
    {
        string path = Path.Combine(fixture.Directory, "damaged.sqlite");
        File.WriteAllText(path, "this is not a database, it is a text file long enough to have a header of its own........");
        var e = Assert.Throws<Hone.Formats.DataFormatException>(() => StoreDatabase.Open(path));
        Assert.Contains("damaged.sqlite", e.Message);
        Assert.Throws<FileNotFoundException>(() => StoreDatabase.Open(Path.Combine(fixture.Directory, "absent.sqlite")));
    }
}
