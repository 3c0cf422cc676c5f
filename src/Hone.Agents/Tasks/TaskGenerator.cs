using System.Globalization;
using System.Text.Json.Nodes;
using Hone.Tensors;

namespace Hone.Agents;

/// <param name="Count">tasks to generate (every kind of <see cref="TaskKinds.All"/> in turn)</param>
/// <param name="TestFraction">the share of users whose tasks are held out (split "test")</param>
public sealed record TaskOptions(int Count = 400, ulong Seed = 1234, double TestFraction = 0.3)
{
    public void Validate()
    {
        if (Count is < 1 or > 1_000_000) throw new ArgumentException($"--tasks must be from 1 to 1000000, got {Count}");
        if (TestFraction is <= 0 or >= 1) throw new ArgumentException($"the held-out fraction must be between 0 and 1, got {TestFraction}");
    }
}

/// <summary>
/// Generates tasks from a store and a seed, every kind in turn (<see cref="TaskKinds"/>): each with the customer's
/// scenario, the gold actions (τ-bench's: reads and writes, replayed on a fresh store for the expected hash), the facts
/// the agent must tell and the reads it must make. Tasks are split into train and test (held out) by user.
/// </summary>
public static class TaskGenerator
{
    sealed record UserInfo(User User, bool UniqueNameZip, string Split);

    /// <summary>Requests no tool can serve (the agent should transfer), as "want to ..." phrases.</summary>
    static readonly string[] TransferIssues =
    [
        "get a price match for order {order}, because I saw the {product} cheaper on another website",
        "file a complaint about the delivery driver who brought order {order}",
        "apply my coupon code SAVE20 to order {order}",
        "be notified when the {product} from order {order} is back in stock in another color",
    ];

    public static List<AgentTask> Generate(StoreDatabase store, TaskOptions options)
    {
        options.Validate();
        var rng = new Xoshiro256(options.Seed ^ 0x5441_534B_5F47_454EUL);
        var userIds = new List<string>();
        using (var command = store.Command("SELECT user_id FROM users ORDER BY user_id"))
        using (var r = command.ExecuteReader())
            while (r.Read()) userIds.Add(r.GetString(0));
        if (userIds.Count < 2) throw new ArgumentException("the store needs at least 2 users to make tasks");
        // Held-out users: a seeded shuffle, the first TestFraction of it.
        var shuffled = userIds.ToList();
        for (int i = shuffled.Count - 1; i > 0; i--)
        {
            int j = rng.NextInt(i + 1);
            (shuffled[i], shuffled[j]) = (shuffled[j], shuffled[i]);
        }
        int testCount = Math.Max(1, (int)Math.Round(shuffled.Count * options.TestFraction));
        var testUsers = new HashSet<string>(shuffled.Take(testCount), StringComparer.Ordinal);
        var users = userIds.Select(id => store.GetUser(id)!).ToList();
        var nameZipCounts = users.GroupBy(u => (u.FirstName.ToLowerInvariant(), u.LastName.ToLowerInvariant(), u.Address.Zip)).ToDictionary(g => g.Key, g => g.Count());
        var infos = users.Select(u => new UserInfo(u, nameZipCounts[(u.FirstName.ToLowerInvariant(), u.LastName.ToLowerInvariant(), u.Address.Zip)] == 1,
            testUsers.Contains(u.UserId) ? "test" : "train")).ToList();
        var orders = new Dictionary<string, Order>(StringComparer.Ordinal);
        using (var command = store.Command("SELECT order_id FROM orders ORDER BY order_id"))
        using (var r = command.ExecuteReader())
            while (r.Read()) orders[r.GetString(0)] = null!;
        foreach (var id in orders.Keys.ToList()) orders[id] = store.GetOrder(id)!;

        var builder = new Builder(store, rng, infos, orders);
        var tasks = new List<AgentTask>();
        for (int i = 0; tasks.Count < options.Count && i < options.Count * 4; i++)
        {
            string kind = TaskKinds.All[i % TaskKinds.All.Count];
            for (int attempt = 0; attempt < 200; attempt++)
                if (builder.TryBuild(kind, $"retail_{tasks.Count:D4}") is { } task)
                {
                    tasks.Add(task);
                    break;
                }
        }
        if (tasks.Count < options.Count)
            throw new ArgumentException($"the store is too small for {options.Count} tasks (made {tasks.Count}): give it more users, orders or products");
        return tasks;
    }

    sealed class Builder(StoreDatabase store, Xoshiro256 rng, List<UserInfo> users, Dictionary<string, Order> orders)
    {
        readonly List<Order> _orderList = orders.Values.ToList();
        readonly Dictionary<string, UserInfo> _byId = users.ToDictionary(u => u.User.UserId, StringComparer.Ordinal);

        T Pick<T>(IReadOnlyList<T> list) => list[rng.NextInt(list.Count)];

        Order? RandomOrder(Func<Order, bool> fits)
        {
            for (int i = 0; i < 50; i++)
            {
                var o = Pick(_orderList);
                if (fits(o)) return o;
            }
            return null;
        }

        static ToolCall Call(string name, params (string Key, JsonNode? Value)[] args) =>
            new(name, new JsonObject(args.Select(a => KeyValuePair.Create(a.Key, a.Value))));

        static JsonArray Strings(IEnumerable<string> values) => new(values.Select(v => (JsonNode)v).ToArray());

        public AgentTask? TryBuild(string kind, string id) => kind switch
        {
            TaskKinds.OrderStatus => OrderStatus(id),
            TaskKinds.CancelPending => Cancel(id),
            TaskKinds.ModifyAddress => ModifyAddress(id),
            TaskKinds.ModifyItems => SwapItems(id, exchange: false),
            TaskKinds.ModifyPayment => ModifyPayment(id),
            TaskKinds.ModifyUserAddress => ModifyUserAddress(id),
            TaskKinds.Return => Return(id, withTotal: false),
            TaskKinds.ReturnWithTotal => Return(id, withTotal: true),
            TaskKinds.Exchange => SwapItems(id, exchange: true),
            TaskKinds.RefuseCancelNotPending => RefuseCancel(id),
            TaskKinds.RefuseSecondModification => RefuseSecondModification(id),
            TaskKinds.RefuseOtherUser => RefuseOtherUser(id),
            TaskKinds.RefuseRefundMethod => RefuseRefundMethod(id),
            TaskKinds.Transfer => Transfer(id),
            _ => throw new ArgumentException($"unknown task kind '{kind}'"),
        };

        /// <summary>Who the customer is and how they can be found: by e-mail, or (when they don't remember it and their
        /// name and zip are unique) by name and zip.</summary>
        (ToolCall Auth, Dictionary<string, string> Knows, List<string> DoesNotKnow, string Identity) Identity(UserInfo info)
        {
            var u = info.User;
            var knows = new Dictionary<string, string> { ["first_name"] = u.FirstName, ["last_name"] = u.LastName, ["zip"] = u.Address.Zip };
            var unknown = new List<string>();
            if (!info.UniqueNameZip || rng.NextDouble() < 0.55)
            {
                knows["email"] = u.Email;
                return (Call("find_user_id_by_email", ("email", u.Email)), knows, unknown, $"Your email is {u.Email}.");
            }
            unknown.Add("email");
            return (Call("find_user_id_by_name_zip", ("first_name", u.FirstName), ("last_name", u.LastName), ("zip", u.Address.Zip)), knows, unknown,
                $"You live in zip code {u.Address.Zip}. You do not remember your email address.");
        }

        /// <summary>The order as the customer knows it: its id, or (sometimes) only which products it holds, when that
        /// picks it out among the user's orders.</summary>
        string OrderReference(UserInfo info, Order order, Dictionary<string, string> knows, List<string> unknown)
        {
            var names = order.Items.Select(i => i.Name).Distinct().ToList();
            bool unique = info.User.Orders.Count(o => o != order.OrderId && orders[o].Items.Select(i => i.Name).Distinct().OrderBy(x => x).SequenceEqual(names.OrderBy(x => x))) == 0;
            if (unique && info.User.Orders.Count > 1 && rng.NextDouble() < 0.25)
            {
                string hint = "the order with the " + Join(names);
                knows["order_hint"] = hint;
                unknown.Add("order_id");
                return hint;
            }
            knows["order_id"] = order.OrderId;
            return "order " + order.OrderId;
        }

        static string Join(IReadOnlyList<string> parts) => parts.Count switch
        {
            0 => "",
            1 => parts[0],
            _ => string.Join(", ", parts.Take(parts.Count - 1)) + " and " + parts[^1],
        };

        static string Describe(OrderItem i) => $"{i.Name} ({StoreRecords.DescribeOptions(i.Options)})";

        string DescribeMethod(PaymentMethod m) => m.Source switch
        {
            "credit_card" => $"my {m.Brand} credit card ending in {m.LastFour}",
            "paypal" => "my PayPal account",
            _ => "my gift card",
        };

        static string AddressText(Address a) => $"{a.Address1}{(a.Address2.Length > 0 ? ", " + a.Address2 : "")}, {a.City}, {a.State} {a.Zip}, {a.Country}";

        static (string, JsonNode?)[] AddressArgs(Address a) =>
            [("address1", a.Address1), ("address2", a.Address2), ("city", a.City), ("state", a.State), ("country", a.Country), ("zip", a.Zip)];

        AgentTask Make(string id, string kind, UserInfo info, (ToolCall Auth, Dictionary<string, string> Knows, List<string> DoesNotKnow, string Identity) who,
            string request, string goal, List<ToolCall> actions, List<ToolCall> reads, ToolCall? desired, List<string> outputs, List<string> wantsToKnow)
        {
            var u = info.User;
            string knowledge = who.Identity + (who.DoesNotKnow.Contains("order_id") ? " You do not remember the order id." : "");
            string instruction = $"You are {u.FirstName} {u.LastName}. {goal} {knowledge} " +
                                 "Give details only when the agent asks for them; never invent ids you were not given. When the agent lists an action and asks " +
                                 "for confirmation, answer yes only if it is exactly what you want, otherwise say no and correct it. When your request is done, " +
                                 $"or it cannot be done, say goodbye and end with {CustomerMarkers.Stop}.";
            return new AgentTask(id, info.Split, kind, u.UserId,
                new CustomerScenario(u.FirstName, u.LastName, instruction, request, who.Knows, who.DoesNotKnow, desired, wantsToKnow),
                [who.Auth, .. actions], outputs, [who.Auth, .. reads]);
        }

        UserInfo UserOf(Order o) => _byId[o.UserId];

        AgentTask? OrderStatus(string id)
        {
            if (RandomOrder(o => o.Status is "pending" or "processed" or "delivered" or "cancelled") is not { } order) return null;
            var info = UserOf(order);
            var who = Identity(info);
            string reference = OrderReference(info, order, who.Knows, who.DoesNotKnow);
            var tracking = order.Fulfillments.SelectMany(f => f.TrackingIds).ToList();
            var outputs = new List<string> { order.Status };
            var wants = new List<string> { "the status of the order" };
            if (tracking.Count > 0)
            {
                outputs.AddRange(tracking);
                wants.Add("the tracking number");
            }
            string request = $"know the status of {reference}" + (tracking.Count > 0 ? " and its tracking number" : "");
            var read = Call("get_order_details", ("order_id", order.OrderId));
            return Make(id, TaskKinds.OrderStatus, info, who, request, $"You want to {request}.", [read], [read], null, outputs, wants);
        }

        AgentTask? Cancel(string id)
        {
            if (RandomOrder(o => o.Status == "pending") is not { } order) return null;
            var info = UserOf(order);
            var who = Identity(info);
            string reference = OrderReference(info, order, who.Knows, who.DoesNotKnow);
            string reason = Pick(CancelPendingOrder.Reasons);
            who.Knows["reason"] = reason;
            var read = Call("get_order_details", ("order_id", order.OrderId));
            var write = Call("cancel_pending_order", ("order_id", order.OrderId), ("reason", reason));
            string request = $"cancel {reference}";
            return Make(id, TaskKinds.CancelPending, info, who, request, $"You want to {request}, because it is {reason}.", [read, write], [read], write, [], []);
        }

        AgentTask? ModifyAddress(string id)
        {
            if (RandomOrder(o => o.Status == "pending") is not { } order) return null;
            var info = UserOf(order);
            var who = Identity(info);
            string reference = OrderReference(info, order, who.Knows, who.DoesNotKnow);
            var address = StoreGenerator.RandomAddress(rng);
            who.Knows["address"] = AddressText(address);
            var read = Call("get_order_details", ("order_id", order.OrderId));
            var write = Call("modify_pending_order_address", [("order_id", order.OrderId), .. AddressArgs(address)]);
            string request = $"change the shipping address of {reference}";
            return Make(id, TaskKinds.ModifyAddress, info, who, request, $"You want to {request} to {AddressText(address)}.", [read, write], [read], write, [], []);
        }

        AgentTask? ModifyUserAddress(string id)
        {
            var info = Pick(users);
            var who = Identity(info);
            var address = StoreGenerator.RandomAddress(rng);
            who.Knows["address"] = AddressText(address);
            var write = Call("modify_user_address", [("user_id", info.User.UserId), .. AddressArgs(address)]);
            string request = "change the default address on my account";
            return Make(id, TaskKinds.ModifyUserAddress, info, who, request, $"You moved: you want to change the default address of your account to {AddressText(address)}.",
                [write], [], write, [], []);
        }

        /// <summary>Up to two items of the order, each to another available variant of its product, and a payment
        /// method that can settle the difference.</summary>
        AgentTask? SwapItems(string id, bool exchange)
        {
            string status = exchange ? "delivered" : "pending";
            if (RandomOrder(o => o.Status == status) is not { } order) return null;
            var candidates = order.Items.Where(i => store.VariantsOf(i.ProductId).Any(v => v.Available && v.ItemId != i.ItemId)).ToList();
            if (candidates.Count == 0) return null;
            int take = Math.Min(candidates.Count, 1 + rng.NextInt(2));
            var chosen = candidates.OrderBy(_ => rng.NextUInt64()).Take(take).OrderBy(i => i.Position).ToList();
            var pairs = chosen.Select(i =>
            {
                var options = store.VariantsOf(i.ProductId).Where(v => v.Available && v.ItemId != i.ItemId).ToList();
                return (Old: i, New: Pick(options));
            }).ToList();
            long difference = pairs.Sum(p => p.New.PriceCents - p.Old.PriceCents);
            var info = UserOf(order);
            var methods = info.User.PaymentMethods.Where(m => m.Source != "gift_card" || m.BalanceCents >= difference).ToList();
            if (methods.Count == 0) return null;
            var method = Pick(methods);
            var who = Identity(info);
            string reference = OrderReference(info, order, who.Knows, who.DoesNotKnow);
            who.Knows["items"] = Join(pairs.Select(p => "the " + Describe(p.Old)).ToList());
            who.Knows["new_items"] = Join(pairs.Select(p => $"the {p.Old.Name} with {StoreRecords.DescribeOptions(p.New.Options)}").ToList());
            who.Knows["payment"] = DescribeMethod(method);
            var read = Call("get_order_details", ("order_id", order.OrderId));
            var productReads = pairs.Select(p => p.Old.ProductId).Distinct().Select(p => Call("get_product_details", ("product_id", p))).ToList();
            var write = Call(exchange ? "exchange_delivered_order_items" : "modify_pending_order_items", ("order_id", order.OrderId),
                ("item_ids", Strings(pairs.Select(p => p.Old.ItemId))), ("new_item_ids", Strings(pairs.Select(p => p.New.ItemId))), ("payment_method_id", method.Id));
            string request = $"{(exchange ? "exchange" : "change")} {who.Knows["items"]} in {reference} for {who.Knows["new_items"]}";
            string goal = $"You want to {request}. Any price difference should be settled with {who.Knows["payment"]}.";
            return Make(id, exchange ? TaskKinds.Exchange : TaskKinds.ModifyItems, info, who, request, goal, [read, .. productReads, write], [read, .. productReads], write, [], []);
        }

        AgentTask? ModifyPayment(string id)
        {
            if (RandomOrder(o => o.Status == "pending" && o.Payments.Count == 1) is not { } order) return null;
            var info = UserOf(order);
            long total = order.Payments[0].AmountCents;
            var methods = info.User.PaymentMethods.Where(m => m.Id != order.Payments[0].PaymentMethodId && (m.Source != "gift_card" || m.BalanceCents >= total)).ToList();
            if (methods.Count == 0) return null;
            var method = Pick(methods);
            var who = Identity(info);
            string reference = OrderReference(info, order, who.Knows, who.DoesNotKnow);
            who.Knows["payment"] = DescribeMethod(method);
            var userRead = Call("get_user_details", ("user_id", info.User.UserId));
            var read = Call("get_order_details", ("order_id", order.OrderId));
            var write = Call("modify_pending_order_payment", ("order_id", order.OrderId), ("payment_method_id", method.Id));
            string request = $"pay for {reference} with {who.Knows["payment"]} instead";
            return Make(id, TaskKinds.ModifyPayment, info, who, request, $"You want to {request}.", [userRead, read, write], [userRead, read], write, [], []);
        }

        AgentTask? Return(string id, bool withTotal)
        {
            if (RandomOrder(o => o.Status == "delivered" && o.Items.Count >= (withTotal ? 2 : 1)) is not { } order) return null;
            var info = UserOf(order);
            int count = withTotal ? 2 + rng.NextInt(order.Items.Count - 1) : 1 + rng.NextInt(Math.Min(2, order.Items.Count));
            var items = order.Items.OrderBy(_ => rng.NextUInt64()).Take(count).OrderBy(i => i.Position).ToList();
            var giftCard = info.User.PaymentMethods.FirstOrDefault(m => m.Source == "gift_card");
            var original = info.User.PaymentMethods.FirstOrDefault(m => m.Id == order.Payments[0].PaymentMethodId);
            var method = giftCard != null && (original == null || rng.NextDouble() < 0.4) ? giftCard : original;
            if (method == null) return null;
            var who = Identity(info);
            string reference = OrderReference(info, order, who.Knows, who.DoesNotKnow);
            who.Knows["items"] = Join(items.Select(i => "the " + Describe(i)).ToList());
            who.Knows["payment"] = method == original && method.Source != "gift_card" ? "the original payment method, " + DescribeMethod(method) : DescribeMethod(method);
            var read = Call("get_order_details", ("order_id", order.OrderId));
            var write = Call("return_delivered_order_items", ("order_id", order.OrderId), ("item_ids", Strings(items.Select(i => i.ItemId))), ("payment_method_id", method.Id));
            string request = $"return {who.Knows["items"]} from {reference}";
            var actions = new List<ToolCall> { read };
            var outputs = new List<string>();
            var wants = new List<string>();
            string goal = $"You want to {request}, with the refund going to {who.Knows["payment"]}.";
            if (withTotal)
            {
                string expression = string.Join(" + ", items.Select(i => StoreRecords.Money(i.PriceCents)));
                actions.Add(Call("calculate", ("expression", expression)));
                outputs.Add(StoreRecords.Money(items.Sum(i => i.PriceCents)));
                wants.Add("the total refund");
                request += " and know how much the total refund will be";
                goal += " You also want to know the total amount you will get back.";
            }
            actions.Add(write);
            return Make(id, withTotal ? TaskKinds.ReturnWithTotal : TaskKinds.Return, info, who, request, goal, actions, [read], write, outputs, wants);
        }

        AgentTask? RefuseCancel(string id)
        {
            if (RandomOrder(o => o.Status is "processed" or "delivered") is not { } order) return null;
            var info = UserOf(order);
            var who = Identity(info);
            string reference = OrderReference(info, order, who.Knows, who.DoesNotKnow);
            string reason = Pick(CancelPendingOrder.Reasons);
            who.Knows["reason"] = reason;
            var read = Call("get_order_details", ("order_id", order.OrderId));
            var desired = Call("cancel_pending_order", ("order_id", order.OrderId), ("reason", reason));
            string request = $"cancel {reference}";
            return Make(id, TaskKinds.RefuseCancelNotPending, info, who, request, $"You want to {request}, because it is {reason}.", [read], [read], desired,
                [order.Status], []);
        }

        AgentTask? RefuseSecondModification(string id)
        {
            if (RandomOrder(o => o.Status == "pending (item modified)") is not { } order) return null;
            var info = UserOf(order);
            var who = Identity(info);
            string reference = OrderReference(info, order, who.Knows, who.DoesNotKnow);
            var address = StoreGenerator.RandomAddress(rng);
            who.Knows["address"] = AddressText(address);
            var read = Call("get_order_details", ("order_id", order.OrderId));
            var desired = Call("modify_pending_order_address", [("order_id", order.OrderId), .. AddressArgs(address)]);
            string request = $"change the shipping address of {reference}, whose items I already changed";
            return Make(id, TaskKinds.RefuseSecondModification, info, who, request, $"You want to {request}, to {AddressText(address)}.", [read], [read], desired, [], []);
        }

        AgentTask? RefuseOtherUser(string id)
        {
            if (RandomOrder(o => o.Status == "pending") is not { } order) return null;
            var owner = UserOf(order);
            var info = Pick(users);
            if (info.User.UserId == owner.User.UserId) return null;
            var who = Identity(info);
            who.Knows["order_id"] = order.OrderId;
            string reason = Pick(CancelPendingOrder.Reasons);
            who.Knows["reason"] = reason;
            var desired = Call("cancel_pending_order", ("order_id", order.OrderId), ("reason", reason));
            string request = $"cancel order {order.OrderId}, which my friend {owner.User.FirstName} placed on {(rng.NextDouble() < 0.5 ? "her" : "his")} own account";
            return Make(id, TaskKinds.RefuseOtherUser, info, who, request, $"You want to {request}, because it is {reason}.", [], [], desired, [], []);
        }

        AgentTask? RefuseRefundMethod(string id)
        {
            if (RandomOrder(o => o.Status == "delivered") is not { } order) return null;
            var info = UserOf(order);
            var other = info.User.PaymentMethods.Where(m => m.Source != "gift_card" && m.Id != order.Payments[0].PaymentMethodId).ToList();
            if (other.Count == 0) return null;
            var method = Pick(other);
            var item = Pick(order.Items);
            var who = Identity(info);
            string reference = OrderReference(info, order, who.Knows, who.DoesNotKnow);
            who.Knows["items"] = "the " + Describe(item);
            who.Knows["payment"] = DescribeMethod(method);
            var read = Call("get_order_details", ("order_id", order.OrderId));
            var desired = Call("return_delivered_order_items", ("order_id", order.OrderId), ("item_ids", Strings([item.ItemId])), ("payment_method_id", method.Id));
            string request = $"return {who.Knows["items"]} from {reference} and get the refund on {who.Knows["payment"]}";
            return Make(id, TaskKinds.RefuseRefundMethod, info, who, request,
                $"You want to {request}, and nowhere else: if that is not possible you do not want the return.", [read], [read], desired, [], []);
        }

        AgentTask? Transfer(string id)
        {
            if (RandomOrder(o => o.Status is "delivered" or "processed") is not { } order) return null;
            var info = UserOf(order);
            var who = Identity(info);
            string issue = Pick(TransferIssues).Replace("{product}", order.Items[0].Name).Replace("{order}", order.OrderId);
            who.Knows["order_id"] = order.OrderId;
            who.Knows["issue"] = issue;
            string summary = $"The customer {info.User.UserId} wants to {issue}; this is outside what the tools can do.";
            var write = Call("transfer_to_human_agents", ("summary", summary));
            string request = issue;
            return Make(id, TaskKinds.Transfer, info, who, request, $"You want to {issue}. Nothing else will do; you would accept being transferred to a human agent.",
                [write], [], null, [], []);
        }
    }

    internal static string F(decimal d) => d.ToString(CultureInfo.InvariantCulture);
}
