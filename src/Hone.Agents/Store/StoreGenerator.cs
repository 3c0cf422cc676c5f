using System.Text.Json.Nodes;
using Hone.Tensors;

namespace Hone.Agents;

/// <param name="Users">customers (τ-bench retail: 500)</param>
/// <param name="Orders">orders, spread over the customers (τ-bench: 1,000)</param>
/// <param name="Products">product types (τ-bench: 50); beyond the built-in catalog, later series of the same types</param>
public sealed record StoreOptions(int Users = 500, int Orders = 1000, int Products = 50, ulong Seed = 1234)
{
    public void Validate()
    {
        if (Users is < 2 or > 1_000_000) throw new ArgumentException($"--users must be from 2 to 1000000, got {Users}");
        if (Orders is < 1 or > 10_000_000) throw new ArgumentException($"--orders must be from 1 to 10000000, got {Orders}");
        if (Products is < 2 or > 10_000) throw new ArgumentException($"--products must be from 2 to 10000, got {Products}");
    }
}

/// <summary>
/// Generates a store from a seed: the same options give the same rows in the same order (and, saved, the same bytes).
/// Names, cities and products come from small built-in lists; ids have τ-bench's shapes (user "noah_brown_6181",
/// order "#W1234567", 10-digit product and item ids, "credit_card_7815826", "paypal_…", "gift_card_…").
/// </summary>
public static class StoreGenerator
{
    static readonly string[] FirstNames =
    [
        "Noah", "Ivan", "Anya", "Yusuf", "Sara", "James", "Ava", "Mia", "Liam", "Olivia", "Ethan", "Emma", "Lucas", "Sofia", "Mason", "Isabella",
        "Omar", "Fatima", "Chen", "Mei", "Raj", "Priya", "Daniel", "Chloe", "Mateo", "Lina", "Aarav", "Yara", "Harper", "Leo", "Zoe", "Amir",
        "Nora", "Hugo", "Ines", "Kai", "Lucy", "Emil", "Aisha", "Juan", "Elena", "Ravi", "Sana", "Tariq", "Maya", "Ivy", "Felix", "Grace",
    ];
    static readonly string[] LastNames =
    [
        "Brown", "Santos", "Garcia", "Rossi", "Doe", "Li", "Moore", "Smith", "Kim", "Nguyen", "Patel", "Khan", "Silva", "Lopez", "Muller", "Ito",
        "Wilson", "Taylor", "Anderson", "Thomas", "Jackson", "White", "Harris", "Martin", "Lee", "Walker", "Hall", "Young", "Allen", "King",
        "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill", "Ramirez", "Campbell", "Mitchell",
    ];
    static readonly string[] Streets =
    [
        "Sunset Drive", "Park Avenue", "Laurel Lane", "River Road", "Cedar Street", "Main Street", "Elm Street", "Oak Street", "Maple Avenue",
        "Pine Lane", "Highland Drive", "Lakeview Drive", "Hillcrest Drive", "Broadway", "Willow Lane", "Chestnut Street", "Spruce Street", "Lincoln Avenue",
    ];
    static readonly (string City, string State, int Zip)[] Cities =
    [
        ("New York", "NY", 10001), ("San Antonio", "TX", 78201), ("Denver", "CO", 80201), ("Dallas", "TX", 75201), ("Philadelphia", "PA", 19101),
        ("Chicago", "IL", 60601), ("Seattle", "WA", 98101), ("Boston", "MA", 2101), ("Austin", "TX", 78701), ("Phoenix", "AZ", 85001),
        ("San Diego", "CA", 92101), ("San Francisco", "CA", 94101), ("Los Angeles", "CA", 90001), ("Houston", "TX", 77001), ("Columbus", "OH", 43201),
        ("Charlotte", "NC", 28201), ("Portland", "OR", 97201), ("Indianapolis", "IN", 46201), ("Jacksonville", "FL", 32099), ("Fort Worth", "TX", 76101),
    ];

    /// <summary>Product types: name, base price in dollars, option names and their values.</summary>
    internal static readonly (string Name, int Price, (string Option, string[] Values)[] Options)[] Catalog =
    [
        ("T-Shirt", 50, [("color", ["blue", "red", "black", "purple"]), ("size", ["S", "M", "L", "XL"]), ("material", ["cotton", "polyester"])]),
        ("Water Bottle", 45, [("capacity", ["500ml", "750ml", "1000ml"]), ("material", ["glass", "plastic", "stainless steel"]), ("color", ["blue", "red", "black"])]),
        ("Office Chair", 480, [("material", ["fabric", "leather", "mesh"]), ("color", ["black", "gray", "blue"]), ("armrest", ["fixed", "adjustable"])]),
        ("Bookshelf", 460, [("material", ["glass", "wood", "metal"]), ("color", ["black", "white", "brown"]), ("height", ["3 ft", "5 ft", "6 ft"])]),
        ("Mechanical Keyboard", 220, [("switch type", ["linear", "tactile", "clicky"]), ("backlight", ["none", "white", "RGB"]), ("size", ["full size", "80%", "60%"])]),
        ("Smart Thermostat", 250, [("compatibility", ["Apple HomeKit", "Google Home", "Amazon Alexa"]), ("color", ["white", "black", "stainless steel"])]),
        ("Running Shoes", 120, [("size", ["8", "9", "10", "11"]), ("color", ["black", "white", "red"]), ("material", ["mesh", "synthetic"])]),
        ("Desk Lamp", 90, [("color", ["white", "black", "silver"]), ("brightness", ["low", "medium", "high"]), ("power source", ["AC adapter", "USB", "battery"])]),
        ("Backpack", 160, [("color", ["black", "grey", "navy", "green"]), ("size", ["small", "medium", "large"]), ("material", ["nylon", "polyester", "leather"])]),
        ("Wireless Earbuds", 150, [("color", ["black", "white", "blue"]), ("battery life", ["4 hours", "6 hours", "8 hours"]), ("water resistance", ["IPX4", "IPX7", "no"])]),
        ("Laptop", 1500, [("screen size", ["13-inch", "15-inch", "17-inch"]), ("processor", ["i5", "i7", "i9"]), ("ram", ["8GB", "16GB", "32GB"])]),
        ("Coffee Maker", 180, [("color", ["black", "stainless steel", "white"]), ("capacity", ["1 cup", "4 cups", "8 cups"]), ("type", ["drip", "espresso", "french press"])]),
        ("Skateboard", 170, [("deck material", ["maple", "bamboo", "plastic"]), ("length", ["28 inch", "31 inch", "34 inch"]), ("design", ["plain", "graphic", "custom"])]),
        ("Hiking Boots", 230, [("size", ["7", "8", "9", "10", "11"]), ("material", ["leather", "synthetic"]), ("waterproof", ["yes", "no"])]),
        ("Yoga Mat", 100, [("thickness", ["4mm", "5mm", "6mm"]), ("material", ["PVC", "natural rubber", "TPE"]), ("color", ["blue", "green", "pink", "purple"])]),
        ("Air Purifier", 330, [("room size", ["small", "medium", "large"]), ("filter type", ["HEPA", "carbon", "ionic"]), ("features", ["quiet operation", "smart sensors", "night mode"])]),
        ("Electric Kettle", 140, [("capacity", ["1L", "1.5L", "2L"]), ("material", ["glass", "plastic", "stainless steel"]), ("color", ["white", "black", "silver"])]),
        ("Digital Camera", 2600, [("resolution", ["20MP", "24MP", "30MP"]), ("zoom", ["3x", "5x", "10x"]), ("storage", ["SD card", "CF card"])]),
        ("Bluetooth Speaker", 210, [("color", ["black", "blue", "red", "green"]), ("battery life", ["10 hours", "20 hours"]), ("water resistance", ["yes", "no"])]),
        ("Tea Kettle", 90, [("material", ["stainless steel", "ceramic", "glass"]), ("capacity", ["1 liter", "1.5 liters", "2 liters"]), ("stovetop compatibility", ["gas", "electric", "induction"])]),
        ("Smart Watch", 320, [("color", ["black", "silver", "gold"]), ("band material", ["silicone", "leather", "metal"]), ("display", ["AMOLED", "LCD"])]),
        ("Gaming Mouse", 140, [("color", ["black", "white", "RGB"]), ("sensor type", ["optical", "laser"]), ("connectivity", ["wired", "wireless"])]),
        ("Cycling Helmet", 190, [("size", ["S", "M", "L"]), ("color", ["black", "white", "red", "blue"]), ("ventilation", ["low", "medium", "high"])]),
        ("Sunglasses", 260, [("frame color", ["black", "brown", "silver"]), ("lens color", ["green", "brown", "blue"]), ("lens type", ["polarized", "non-polarized"])]),
        ("Indoor Security Camera", 300, [("resolution", ["1080p", "2K", "4K"]), ("field of view", ["110 degrees", "130 degrees", "160 degrees"]), ("connectivity", ["Wi-Fi", "Ethernet"])]),
        ("Jigsaw Puzzle", 50, [("pieces", ["500", "1000", "1500", "2000"]), ("theme", ["animals", "art", "fantasy", "landscape"]), ("difficulty level", ["beginner", "intermediate", "expert"])]),
        ("Headphones", 270, [("type", ["on-ear", "over-ear", "in-ear"]), ("connectivity", ["wired", "wireless"]), ("color", ["black", "white", "red"])]),
        ("Vacuum Cleaner", 560, [("type", ["upright", "canister", "robotic"]), ("bagged/bagless", ["bagged", "bagless"]), ("features", ["pet hair removal", "HEPA filter", "cordless"])]),
        ("Garden Hose", 90, [("length", ["25ft", "50ft", "100ft"]), ("material", ["rubber", "vinyl", "latex"]), ("color", ["green", "blue", "black"])]),
        ("Fleece Jacket", 140, [("size", ["S", "M", "L", "XL"]), ("color", ["navy", "black", "red"]), ("zipper", ["full", "half"])]),
    ];

    public static StoreDatabase Generate(StoreOptions options)
    {
        options.Validate();
        var rng = new Xoshiro256(options.Seed ^ 0x5354_4F52_455F_4442UL);
        var store = StoreDatabase.CreateEmpty();
        try
        {
            store.Execute("BEGIN");
            var usedIds = new HashSet<string>(StringComparer.Ordinal);
            string Digits(int n)
            {
                while (true)
                {
                    var chars = new char[n];
                    chars[0] = (char)('1' + rng.NextInt(9));
                    for (int i = 1; i < n; i++) chars[i] = (char)('0' + rng.NextInt(10));
                    string s = new(chars);
                    if (usedIds.Add(s)) return s;
                }
            }

            // Products and their variants.
            var products = new List<(string Id, string Name, List<(string ItemId, string Options, long Price)> Variants)>();
            for (int p = 0; p < options.Products; p++)
            {
                var type = Catalog[p % Catalog.Length];
                int series = p / Catalog.Length;
                string name = series == 0 ? type.Name : $"{type.Name} Series {series + 1}";
                string productId = Digits(10);
                store.Execute("INSERT INTO products (product_id, name) VALUES ($id, $name)", ("$id", productId), ("$name", name));
                int combinations = type.Options.Aggregate(1, (n, o) => n * o.Values.Length);
                int count = Math.Min(combinations, 4 + rng.NextInt(7));
                var chosen = new SortedSet<int>();
                while (chosen.Count < count) chosen.Add(rng.NextInt(combinations));
                var variants = new List<(string, string, long)>();
                int position = 0;
                foreach (int combination in chosen)
                {
                    var o = new JsonObject();
                    int rest = combination;
                    foreach (var (option, values) in type.Options)
                    {
                        o[option] = values[rest % values.Length];
                        rest /= values.Length;
                    }
                    long price = type.Price * 100L + (long)Math.Round((rng.NextDouble() - 0.5) * 0.3 * type.Price * 100);
                    bool available = position == 0 || rng.NextDouble() < 0.75;
                    string itemId = Digits(10);
                    store.Execute("INSERT INTO variants (item_id, product_id, position, options, available, price_cents) VALUES ($i, $p, $pos, $o, $a, $c)",
                        ("$i", itemId), ("$p", productId), ("$pos", position++), ("$o", o.ToJsonString()), ("$a", available ? 1 : 0), ("$c", price));
                    variants.Add((itemId, o.ToJsonString(), price));
                }
                products.Add((productId, name, variants));
            }

            // Users with their payment methods.
            var users = new List<(string Id, List<(string Id, string Source)> Methods)>();
            for (int u = 0; u < options.Users; u++)
            {
                string first = FirstNames[rng.NextInt(FirstNames.Length)], last = LastNames[rng.NextInt(LastNames.Length)];
                string userId;
                do userId = $"{first.ToLowerInvariant()}_{last.ToLowerInvariant()}_{1000 + rng.NextInt(9000)}"; while (!usedIds.Add(userId));
                string email;
                do email = $"{first.ToLowerInvariant()}.{last.ToLowerInvariant()}{1000 + rng.NextInt(9000)}@example.com"; while (!usedIds.Add(email));
                var address = RandomAddress(rng);
                store.Execute("INSERT INTO users (user_id, first_name, last_name, email, address1, address2, city, state, country, zip) " +
                              "VALUES ($id, $f, $l, $e, $a1, $a2, $c, $s, $co, $z)",
                    ("$id", userId), ("$f", first), ("$l", last), ("$e", email), ("$a1", address.Address1), ("$a2", address.Address2), ("$c", address.City),
                    ("$s", address.State), ("$co", address.Country), ("$z", address.Zip));
                var methods = new List<(string, string)>();
                int position = 0;
                bool any = false;
                if (rng.NextDouble() < 0.7)
                {
                    int cards = rng.NextDouble() < 0.25 ? 2 : 1;
                    string previousLastFour = "";
                    for (int c = 0; c < cards; c++)
                    {
                        string id = "credit_card_" + Digits(7);
                        string brand = new[] { "visa", "mastercard", "amex", "discover" }[rng.NextInt(4)];
                        string lastFour;
                        do lastFour = $"{rng.NextInt(10000):D4}"; while (lastFour == previousLastFour);
                        previousLastFour = lastFour;
                        store.Execute("INSERT INTO payment_methods (payment_method_id, user_id, position, source, brand, last_four) VALUES ($id, $u, $p, 'credit_card', $b, $l)",
                            ("$id", id), ("$u", userId), ("$p", position++), ("$b", brand), ("$l", lastFour));
                        methods.Add((id, "credit_card"));
                        any = true;
                    }
                }
                if (rng.NextDouble() < 0.45 || !any)
                {
                    string id = "paypal_" + Digits(7);
                    store.Execute("INSERT INTO payment_methods (payment_method_id, user_id, position, source) VALUES ($id, $u, $p, 'paypal')", ("$id", id), ("$u", userId), ("$p", position++));
                    methods.Add((id, "paypal"));
                }
                if (rng.NextDouble() < 0.45)
                {
                    string id = "gift_card_" + Digits(7);
                    long balance = rng.NextInt(300) * 100L + (rng.NextDouble() < 0.5 ? 0 : rng.NextInt(100));
                    store.Execute("INSERT INTO payment_methods (payment_method_id, user_id, position, source, balance_cents) VALUES ($id, $u, $p, 'gift_card', $b)",
                        ("$id", id), ("$u", userId), ("$p", position++), ("$b", balance));
                    methods.Add((id, "gift_card"));
                }
                users.Add((userId, methods));
            }

            // Orders.
            var orderCounts = new int[users.Count];
            for (int o = 0; o < options.Orders; o++)
            {
                int u = rng.NextInt(users.Count);
                var (userId, methods) = users[u];
                string orderId = "#W" + Digits(7);
                var address = rng.NextDouble() < 0.8 ? UserAddress(store, userId) : RandomAddress(rng);
                double roll = rng.NextDouble();
                string status = roll switch
                {
                    < 0.28 => "pending",
                    < 0.32 => "pending (item modified)",
                    < 0.50 => "processed",
                    < 0.86 => "delivered",
                    < 0.92 => "cancelled",
                    < 0.96 => "return requested",
                    _ => "exchange requested",
                };
                int itemCount = 1 + rng.NextInt(rng.NextDouble() < 0.3 ? 5 : 3);
                var items = new List<(string ItemId, string ProductId, string Name, long Price, string Options)>();
                var usedProducts = new HashSet<int>();
                for (int i = 0; i < itemCount; i++)
                {
                    int p = rng.NextInt(products.Count);
                    if (!usedProducts.Add(p)) continue;
                    var variant = products[p].Variants[rng.NextInt(products[p].Variants.Count)];
                    items.Add((variant.ItemId, products[p].Id, products[p].Name, variant.Price, variant.Options));
                }
                long total = items.Sum(i => i.Price);
                store.Execute("INSERT INTO orders (order_id, user_id, position, address1, address2, city, state, country, zip, status) VALUES ($id, $u, $p, $a1, $a2, $c, $s, $co, $z, $st)",
                    ("$id", orderId), ("$u", userId), ("$p", orderCounts[u]++), ("$a1", address.Address1), ("$a2", address.Address2), ("$c", address.City),
                    ("$s", address.State), ("$co", address.Country), ("$z", address.Zip), ("$st", status));
                for (int i = 0; i < items.Count; i++)
                    store.Execute("INSERT INTO order_items (order_id, position, item_id, product_id, name, price_cents, options) VALUES ($o, $p, $i, $pr, $n, $c, $op)",
                        ("$o", orderId), ("$p", i), ("$i", items[i].ItemId), ("$pr", items[i].ProductId), ("$n", items[i].Name), ("$c", items[i].Price), ("$op", items[i].Options));
                if (status is not ("pending" or "pending (item modified)" or "cancelled"))
                    store.Execute("INSERT INTO fulfillments (order_id, position, tracking_ids, item_ids) VALUES ($o, 0, $t, $i)",
                        ("$o", orderId), ("$t", StoreRecords.StringListJson([Digits(12)])), ("$i", StoreRecords.StringListJson(items.Select(i => i.ItemId))));
                string method = methods[rng.NextInt(methods.Count)].Id;
                int payment = 0;
                store.Execute("INSERT INTO payments (order_id, position, transaction_type, amount_cents, payment_method_id) VALUES ($o, $p, 'payment', $a, $m)",
                    ("$o", orderId), ("$p", payment++), ("$a", total), ("$m", method));
                if (status == "cancelled")
                {
                    store.Execute("INSERT INTO payments (order_id, position, transaction_type, amount_cents, payment_method_id) VALUES ($o, $p, 'refund', $a, $m)",
                        ("$o", orderId), ("$p", payment++), ("$a", total), ("$m", method));
                    store.Execute("UPDATE orders SET cancel_reason = $r WHERE order_id = $o", ("$o", orderId), ("$r", rng.NextDouble() < 0.5 ? "no longer needed" : "ordered by mistake"));
                }
                else if (status == "return requested")
                    store.Execute("UPDATE orders SET return_items = $i, return_payment_method_id = $m WHERE order_id = $o",
                        ("$o", orderId), ("$i", StoreRecords.StringListJson(items.Take(1).Select(i => i.ItemId))), ("$m", method));
                else if (status == "exchange requested")
                    store.Execute("UPDATE orders SET exchange_items = $i, exchange_new_items = $i, exchange_payment_method_id = $m, exchange_price_difference_cents = 0 WHERE order_id = $o",
                        ("$o", orderId), ("$i", StoreRecords.StringListJson(items.Take(1).Select(i => i.ItemId))), ("$m", method));
            }
            store.Execute("COMMIT");
            return store;
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    static Address UserAddress(StoreDatabase store, string userId) => store.GetUser(userId)!.Address;

    internal static Address RandomAddress(Xoshiro256 rng)
    {
        var (city, state, zip) = Cities[rng.NextInt(Cities.Length)];
        return new Address($"{100 + rng.NextInt(900)} {Streets[rng.NextInt(Streets.Length)]}", rng.NextDouble() < 0.6 ? $"Suite {100 + rng.NextInt(900)}" : "",
            city, state, "USA", $"{zip + rng.NextInt(99):D5}");
    }
}
