using System.Globalization;
using System.Text;
using Hone.Tensors;

namespace Hone.Synthetic;

/// <summary>One entity of a copy document: field name → value, in a fixed order.</summary>
sealed record CopyEntity(IReadOnlyList<(string Field, string Value)> Fields)
{
    public string this[string field] => Fields.First(f => f.Field == field).Value;
}

/// <summary>
/// Pretraining text that rewards copying from context: every document introduces ids, e-mails, codes and amounts early
/// (a form, a table, a JSON tool result, an e-mail, a key-value list) and repeats some of them later (a summary, prose,
/// a quoted reply, answers to lookups, tool calls that pass them on). A value is random, so the only way to predict its
/// second occurrence is to find and copy the first: the skill answering from an order record or a tool result needs,
/// which a small model does not pick up from ordinary text in a few minutes. The values have the shapes of shop and
/// agent data (user ids "mia_lopez_1234", e-mails, order ids "#W1234567", 10-digit item ids, "credit_card_7815826",
/// tracking numbers, amounts, dates), and JSON appears as tool results do. Deterministic per seed.
/// </summary>
public static class CopyCorpus
{
    /// <summary>Documents until their UTF-8 size (with one separator byte each) reaches <paramref name="targetBytes"/>.</summary>
    public static IReadOnlyList<string> Generate(ulong seed, long targetBytes)
    {
        if (targetBytes < 0) throw new ArgumentException("target size must not be negative");
        var random = new Xoshiro256(seed ^ 0x434F505943505900); // "COPYCPY": a stream of its own per seed
        var documents = new List<string>();
        long bytes = 0;
        while (bytes < targetBytes)
        {
            string document = Kinds[random.NextInt(Kinds.Length)](random);
            documents.Add(document);
            bytes += Encoding.UTF8.GetByteCount(document) + 1;
        }
        return documents;
    }

    static readonly Func<Xoshiro256, string>[] Kinds =
        [FormThenLookups, TableThenSummary, JsonThenProse, QuotedReply, AgentLookup, CodeList, KeyValueLookups, Repeat, Repeat, Repeat];

    // ---- values ---------------------------------------------------------------------------------------------------

    internal static readonly string[] FirstNames =
    [
        "mia", "noah", "emma", "liam", "ava", "lucas", "sofia", "ethan", "isabella", "mason", "yusuf", "aarav", "chen", "fatima",
        "olivia", "james", "amelia", "omar", "lena", "ivan", "priya", "diego", "hana", "kofi", "sara", "theo", "nadia", "raj",
        "elena", "mohamed", "anya", "daniel", "grace", "hugo", "julia", "lei", "marco", "nora", "pablo", "zoe",
    ];
    internal static readonly string[] LastNames =
    [
        "lopez", "smith", "garcia", "kim", "nguyen", "patel", "rossi", "silva", "tanaka", "walsh", "dubois", "khan", "larsen",
        "moreau", "brown", "schmidt", "cohen", "mensah", "ivanova", "murphy", "ahmed", "berg", "costa", "evans", "fischer",
        "hughes", "ito", "klein", "lind", "mori", "price", "reyes", "santos", "wood", "young", "johansson", "sanchez", "muller",
    ];
    static readonly string[] Domains = ["example.com", "example.org", "example.net", "mail.example.com"];
    static readonly string[] Products =
    [
        "T-Shirt", "Water Bottle", "Desk Lamp", "Backpack", "Running Shoes", "Wireless Earbuds", "Coffee Maker", "Yoga Mat",
        "Office Chair", "Notebook", "Bluetooth Speaker", "Hiking Boots", "Mechanical Keyboard", "Tea Kettle", "Sunglasses",
        "Action Camera", "Skateboard", "Wall Clock", "Electric Toothbrush", "Laptop Stand", "Garden Hose", "Jigsaw Puzzle",
    ];
    static readonly string[] Statuses = ["pending", "processed", "delivered", "cancelled", "returned", "exchanged"];
    static readonly string[] Cities = ["Austin", "Denver", "Seattle", "Boston", "Chicago", "Phoenix", "Houston", "Columbus", "Fort Worth", "San Diego", "Leeds", "Lyon"];
    static readonly string[] Streets = ["Main Street", "Elm Avenue", "Oak Lane", "Cedar Road", "Park Drive", "River Way", "Hill Court", "Lake Street"];
    static readonly string[] Colors = ["red", "blue", "black", "white", "green", "grey", "purple", "orange"];
    static readonly string[] Sizes = ["S", "M", "L", "XL", "small", "medium", "large"];

    internal static string Digits(Xoshiro256 r, int n)
    {
        var b = new StringBuilder(n);
        b.Append((char)('1' + r.NextInt(9)));
        for (int i = 1; i < n; i++) b.Append((char)('0' + r.NextInt(10)));
        return b.ToString();
    }

    internal static string Code(Xoshiro256 r, string pattern)
    {
        const string letters = "ABCDEFGHJKLMNPQRSTUVWXYZ";
        var b = new StringBuilder(pattern.Length);
        foreach (char c in pattern)
            b.Append(c switch
            {
                'D' => (char)('0' + r.NextInt(10)),
                'L' => letters[r.NextInt(letters.Length)],
                'X' => r.Chance(0.5) ? (char)('0' + r.NextInt(10)) : letters[r.NextInt(letters.Length)],
                _ => c,
            });
        return b.ToString();
    }

    static string Amount(Xoshiro256 r) => (r.Between(100, 99999) / 100m).ToString("0.00", CultureInfo.InvariantCulture);

    static string Date(Xoshiro256 r) => $"{r.Between(2023, 2026)}-{r.Between(1, 12):D2}-{r.Between(1, 28):D2}";

    static string Title(string s) => string.Join(" ", s.Split(' ').Select(w => char.ToUpperInvariant(w[0]) + w[1..]));

    /// <summary>A person as the agent data shows one: name, user id, e-mail, address, payment method, order, item.</summary>
    internal static CopyEntity Person(Xoshiro256 r)
    {
        string first = r.One(FirstNames), last = r.One(LastNames), number = Digits(r, 4);
        string payment = r.NextInt(3) switch { 0 => "credit_card_" + Digits(r, 7), 1 => "paypal_" + Digits(r, 7), _ => "gift_card_" + Digits(r, 7) };
        return new CopyEntity(
        [
            ("name", $"{Title(first)} {Title(last)}"),
            ("user_id", $"{first}_{last}_{number}"),
            ("email", r.NextInt(3) switch
            {
                0 => $"{first}.{last}{number}@{r.One(Domains)}",
                1 => $"{first}{number}@{r.One(Domains)}",
                _ => $"{first[0]}{last}{Digits(r, 2)}@{r.One(Domains)}",
            }),
            ("order_id", "#W" + Digits(r, 7)),
            ("item_id", Digits(r, 10)),
            ("product", r.One(Products)),
            ("payment_method_id", payment),
            ("tracking_id", Digits(r, 12)),
            ("amount", Amount(r)),
            ("date", Date(r)),
            ("zip", Digits(r, 5)),
            ("address", $"{r.Between(1, 999)} {r.One(Streets)}, {r.One(Cities)}"),
            ("phone", $"{Digits(r, 3)}-{Digits(r, 3)}-{Digits(r, 4)}"),
            ("code", Code(r, r.One(["LLD-DXLX", "XXXX-XXXX", "LLDDDD", "DDD-LLL-DDD"]))),
            ("status", r.One(Statuses)),
        ]);
    }

    static readonly Dictionary<string, string[]> Labels = new()
    {
        ["name"] = ["Name", "Customer", "Full name"],
        ["user_id"] = ["User id", "User ID", "Username", "Account id"],
        ["email"] = ["Email", "E-mail", "Email address", "Contact"],
        ["order_id"] = ["Order", "Order id", "Order number", "Order ID"],
        ["item_id"] = ["Item id", "Item ID", "SKU", "Product id"],
        ["product"] = ["Product", "Item", "Article"],
        ["payment_method_id"] = ["Payment method", "Payment", "Paid with"],
        ["tracking_id"] = ["Tracking", "Tracking number", "Tracking id"],
        ["amount"] = ["Amount", "Total", "Price", "Balance"],
        ["date"] = ["Date", "Placed", "Created"],
        ["zip"] = ["Zip", "ZIP code", "Postcode"],
        ["address"] = ["Address", "Ship to", "Street address"],
        ["phone"] = ["Phone", "Phone number", "Tel"],
        ["code"] = ["Reference", "Code", "Confirmation code", "Ticket"],
        ["status"] = ["Status", "State"],
    };

    /// <summary>Fields that are copied (random, so never guessable); name, product and status are context.</summary>
    internal static readonly string[] CopyFields =
        ["user_id", "email", "order_id", "item_id", "payment_method_id", "tracking_id", "amount", "date", "zip", "phone", "code"];

    static string Label(Xoshiro256 r, string field) => r.One(Labels[field]);

    static List<string> SomeFields(Xoshiro256 r, int min, int max)
    {
        var fields = CopyFields.ToList();
        for (int i = fields.Count - 1; i > 0; i--) { int j = r.NextInt(i + 1); (fields[i], fields[j]) = (fields[j], fields[i]); }
        return fields.Take(r.Between(min, max)).ToList();
    }

    static string Phrase(string field) => field switch
    {
        "user_id" => "user id", "email" => "e-mail address", "order_id" => "order number", "item_id" => "item id",
        "payment_method_id" => "payment method", "tracking_id" => "tracking number", "amount" => "amount", "date" => "date",
        "zip" => "zip code", "phone" => "phone number", "code" => "reference code", "status" => "status", "product" => "product",
        _ => field,
    };

    static string Json(CopyEntity e, IEnumerable<string> fields) =>
        "{" + string.Join(", ", fields.Select(f => f == "amount" ? $"\"{f}\": {e[f]}" : $"\"{f}\": \"{e[f]}\"")) + "}";

    // ---- document kinds -------------------------------------------------------------------------------------------

    /// <summary>A form, or several, then questions about one of them, answered by copying.</summary>
    static string FormThenLookups(Xoshiro256 r)
    {
        int count = r.Between(1, 3);
        var people = Enumerable.Range(0, count).Select(_ => Person(r)).ToList();
        var fields = SomeFields(r, 4, 7);
        var b = new StringBuilder();
        for (int i = 0; i < count; i++)
        {
            b.Append(count > 1 ? $"Record {i + 1}\n" : r.One(["Account form\n", "Customer record\n", "Registration\n", "Profile\n"]));
            b.Append($"{Label(r, "name")}: {people[i]["name"]}\n");
            foreach (var f in fields) b.Append($"{Label(r, f)}: {people[i][f]}\n");
        }
        for (int q = 0, n = r.Between(3, 6); q < n; q++)
        {
            var p = r.One(people);
            string f = r.One(fields);
            b.Append(r.NextInt(3) switch
            {
                0 => $"Q: What is the {Phrase(f)} of {p["name"]}?\nA: {p[f]}\n",
                1 => $"{p["name"]}'s {Phrase(f)} is {p[f]}.\n",
                _ => $"Lookup {Phrase(f)} for {p["name"]}: {p[f]}\n",
            });
        }
        return b.ToString().TrimEnd();
    }

    /// <summary>A table of rows, then a sentence per row restating its values.</summary>
    static string TableThenSummary(Xoshiro256 r)
    {
        var fields = SomeFields(r, 2, 4);
        var rows = Enumerable.Range(0, r.Between(2, 6)).Select(_ => Person(r)).ToList();
        var b = new StringBuilder();
        b.Append("| name | ").Append(string.Join(" | ", fields)).Append(" |\n");
        b.Append("| --- |").Append(string.Concat(fields.Select(_ => " --- |"))).Append('\n');
        foreach (var p in rows) b.Append($"| {p["name"]} | ").Append(string.Join(" | ", fields.Select(f => p[f]))).Append(" |\n");
        b.Append(r.One(["Summary:\n", "In words:\n", "Notes:\n"]));
        foreach (var p in rows.OrderBy(_ => r.NextDouble()).Take(r.Between(2, rows.Count)))
        {
            var order = fields.OrderBy(_ => r.NextDouble()).ToList();
            b.Append($"{p["name"]} has {string.Join(", ", order.Select(f => $"{Phrase(f)} {p[f]}"))}.\n");
        }
        return b.ToString().TrimEnd();
    }

    /// <summary>A JSON tool result, then prose that states its values.</summary>
    static string JsonThenProse(Xoshiro256 r)
    {
        var p = Person(r);
        int items = r.Between(1, 3);
        var itemList = Enumerable.Range(0, items).Select(_ => (Id: Digits(r, 10), Name: r.One(Products), Price: Amount(r),
            Options: $"{{\"color\": \"{r.One(Colors)}\", \"size\": \"{r.One(Sizes)}\"}}")).ToList();
        var b = new StringBuilder();
        b.Append(r.One(["Tool result: ", "Response: ", "get_order_details returned: ", "API response:\n"]));
        b.Append($"{{\"order_id\": \"{p["order_id"]}\", \"user_id\": \"{p["user_id"]}\", \"status\": \"{p["status"]}\", \"items\": [");
        b.Append(string.Join(", ", itemList.Select(i => $"{{\"name\": \"{i.Name}\", \"item_id\": \"{i.Id}\", \"price\": {i.Price}, \"options\": {i.Options}}}")));
        b.Append($"], \"payment_history\": [{{\"transaction_type\": \"payment\", \"amount\": {p["amount"]}, \"payment_method_id\": \"{p["payment_method_id"]}\"}}]");
        if (r.Chance(0.6)) b.Append($", \"fulfillments\": [{{\"tracking_id\": [\"{p["tracking_id"]}\"], \"item_ids\": [{string.Join(", ", itemList.Select(i => $"\"{i.Id}\""))}]}}]");
        b.Append("}\n");
        var sentences = new List<string>
        {
            $"Order {p["order_id"]} belongs to {p["user_id"]} and is {p["status"]}.",
            $"It was paid with {p["payment_method_id"]}, {p["amount"]} in total.",
        };
        foreach (var i in itemList) sentences.Add($"The {i.Name.ToLowerInvariant()} has item id {i.Id} and costs {i.Price}.");
        if (b.ToString().Contains("tracking_id")) sentences.Add($"The tracking number is {p["tracking_id"]}.");
        foreach (var s in sentences.OrderBy(_ => r.NextDouble())) b.Append(s).Append(' ');
        return b.ToString().TrimEnd();
    }

    /// <summary>An e-mail with references, and a reply that quotes it and repeats them.</summary>
    static string QuotedReply(Xoshiro256 r)
    {
        var p = Person(r);
        var fields = SomeFields(r, 2, 3);
        string message = $"Hello, this is {p["name"]}. " + string.Join(" ", fields.Select(f => r.NextInt(2) == 0
            ? $"My {Phrase(f)} is {p[f]}." : $"The {Phrase(f)} is {p[f]}.")) + " Can you help me?";
        var b = new StringBuilder();
        b.Append($"From: {p["email"]}\nSubject: {r.One(["Question", "Help please", "About my order", "Request"])} {p["code"]}\n{message}\n\n".Replace("\n\n", "\n"));
        b.Append($"Re: {p["code"]}\nTo: {p["email"]}\n> {message}\n");
        b.Append($"Hi {p["name"].Split(' ')[0]}, thanks for writing. ");
        foreach (var f in fields.OrderBy(_ => r.NextDouble()))
            b.Append(r.NextInt(2) == 0 ? $"I have noted your {Phrase(f)}, {p[f]}. " : $"We checked {p[f]} ({Phrase(f)}). ");
        b.Append($"Please quote {p["code"]} if you write again.");
        return b.ToString();
    }

    /// <summary>A customer gives an e-mail or name and zip; the agent passes it to tools as JSON and uses what they return.</summary>
    static string AgentLookup(Xoshiro256 r)
    {
        var p = Person(r);
        var b = new StringBuilder();
        bool byEmail = r.Chance(0.6);
        b.Append(byEmail
            ? $"User: {r.One(["Hi, ", "Hello. ", "hey ", ""])}my email is {p["email"]}{r.One([".", "", " and I need help with an order."])}\n"
              + $"Assistant: {{\"name\": \"find_user_id_by_email\", \"arguments\": {{\"email\": \"{p["email"]}\"}}}}\n"
            : $"User: I'm {p["name"]}, zip code {p["zip"]}.\n"
              + $"Assistant: {{\"name\": \"find_user_id_by_name_zip\", \"arguments\": {{\"first_name\": \"{p["name"].Split(' ')[0]}\", \"last_name\": \"{p["name"].Split(' ')[1]}\", \"zip\": \"{p["zip"]}\"}}}}\n");
        b.Append($"Tool: \"{p["user_id"]}\"\n");
        b.Append($"Assistant: {{\"name\": \"get_user_details\", \"arguments\": {{\"user_id\": \"{p["user_id"]}\"}}}}\n");
        var others = Enumerable.Range(0, r.Between(0, 2)).Select(_ => "#W" + Digits(r, 7)).ToList();
        var orders = others.Append(p["order_id"]).OrderBy(_ => r.NextDouble()).ToList();
        b.Append($"Tool: {{\"user_id\": \"{p["user_id"]}\", \"email\": \"{p["email"]}\", \"address\": {{\"zip\": \"{p["zip"]}\"}}, " +
                 $"\"payment_methods\": {{\"{p["payment_method_id"]}\": {{}}}}, \"orders\": [{string.Join(", ", orders.Select(o => $"\"{o}\""))}]}}\n");
        b.Append($"User: {r.One(["What about order ", "Can you check ", "status of ", "I want to return "])}{p["order_id"]}?\n");
        b.Append($"Assistant: {{\"name\": \"get_order_details\", \"arguments\": {{\"order_id\": \"{p["order_id"]}\"}}}}\n");
        b.Append($"Tool: {{\"order_id\": \"{p["order_id"]}\", \"status\": \"{p["status"]}\", \"items\": [{{\"name\": \"{p["product"]}\", \"item_id\": \"{p["item_id"]}\", \"price\": {p["amount"]}}}], " +
                 $"\"fulfillments\": [{{\"tracking_id\": [\"{p["tracking_id"]}\"]}}]}}\n");
        b.Append(r.NextInt(3) switch
        {
            0 => $"Assistant: Order {p["order_id"]} is {p["status"]}. The {p["product"]} (item {p["item_id"]}) cost {p["amount"]}; tracking number {p["tracking_id"]}.",
            1 => $"Assistant: Your order {p["order_id"]} is {p["status"]}; its tracking id is {p["tracking_id"]}. A refund of {p["amount"]} would go to {p["payment_method_id"]}. Shall I go ahead (yes/no)?",
            _ => $"Assistant: I found {p["order_id"]} for {p["user_id"]}: {p["product"]}, item id {p["item_id"]}, {p["amount"]}, paid with {p["payment_method_id"]}.",
        });
        return b.ToString();
    }

    /// <summary>Lists of random codes, repeated (in order, reversed or picked): the plainest copying there is.</summary>
    static string CodeList(Xoshiro256 r)
    {
        string pattern = r.One(["LLDD-DDLL", "DDDDDDDD", "XXXXXX", "LDDDDDDD", "DDD-DDD-DDDD", "xxxx"]);
        var codes = Enumerable.Range(0, r.Between(3, 8)).Select(_ => pattern == "xxxx"
            ? r.One(FirstNames) + "_" + r.One(LastNames) + "_" + Digits(r, 4) : Code(r, pattern)).ToList();
        var b = new StringBuilder();
        b.Append(r.One(["Codes: ", "Ids: ", "List: ", "Vouchers: "])).Append(string.Join(", ", codes)).Append('\n');
        var again = r.NextInt(3) switch
        {
            0 => codes,
            1 => Enumerable.Reverse(codes).ToList(),
            _ => codes.OrderBy(_ => r.NextDouble()).Take(r.Between(2, codes.Count)).ToList(),
        };
        b.Append(r.One(["Again: ", "Check: ", "Confirmed: ", "Copied: "])).Append(string.Join(", ", again)).Append('\n');
        for (int i = 0; i < again.Count; i++) b.Append($"{i + 1}. {again[i]}\n");
        return b.ToString().TrimEnd();
    }

    /// <summary>A random run of words, numbers and ids, then the same run again (and again): every token of a repeat is
    /// predictable only by finding where the run stood before, the densest copying signal there is (it is what makes
    /// induction heads form in small transformers).</summary>
    static string Repeat(Xoshiro256 r)
    {
        var words = new List<string>();
        for (int i = 0, n = r.Between(8, 30); i < n; i++)
            words.Add(r.NextInt(6) switch
            {
                0 => r.One(FirstNames), 1 => r.One(LastNames), 2 => r.One(Products).ToLowerInvariant(), 3 => Digits(r, r.Between(2, 7)),
                4 => r.One(Colors), _ => Code(r, r.One(["LLDD", "XXXXX", "DDD-DDD", "LDLD"])),
            });
        string run = string.Join(r.One([" ", ", ", " | "]), words);
        var b = new StringBuilder(run);
        for (int k = 0, times = r.Between(1, 3); k < times; k++) b.Append('\n').Append(run);
        return b.ToString();
    }

    /// <summary>Key-value pairs, then lookups of keys in random order ("key → value").</summary>
    static string KeyValueLookups(Xoshiro256 r)
    {
        var people = Enumerable.Range(0, r.Between(3, 7)).Select(_ => Person(r)).ToList();
        string key = r.One(["email", "user_id", "order_id"]), value = r.One(CopyFields.Where(f => f != key).ToArray());
        var b = new StringBuilder();
        b.Append($"{Phrase(key)} -> {Phrase(value)}\n");
        foreach (var p in people) b.Append($"{p[key]}: {p[value]}\n");
        b.Append(r.Chance(0.5) ? "JSON: " + "{" + string.Join(", ", people.Select(p => $"\"{p[key]}\": \"{p[value]}\"")) + "}\n" : "");
        foreach (var p in people.OrderBy(_ => r.NextDouble()).Take(r.Between(2, people.Count)))
            b.Append(r.Chance(0.5) ? $"The {Phrase(value)} for {p[key]} is {p[value]}.\n" : $"{p[key]} => {p[value]}\n");
        return b.ToString().TrimEnd();
    }

    // ---- the probe ------------------------------------------------------------------------------------------------

    /// <summary>
    /// The copying probe, a multiple-choice task for a base model without any fine-tuning: a context that states values
    /// (an order record with its e-mail, a JSON tool result, a form, a quoted message) ends where one of them is due
    /// again, and the choices are that value and three fresh values of the same shape (chance 0.25). A model that
    /// copies from its context picks the value it has seen; one that does not cannot tell them apart. The contexts use
    /// wordings of their own, so the probe is not a lookup of the pretraining templates. JSONL {question, choices, answer}.
    /// </summary>
    public static IReadOnlyList<(string Question, string[] Choices, int Answer)> Probe(ulong seed, int count)
    {
        var r = new Xoshiro256(seed ^ 0x50524F4245000000); // "PROBE"
        var items = new List<(string, string[], int)>();
        for (int i = 0; i < count; i++)
        {
            var p = Person(r);
            var decoys = Enumerable.Range(0, 3).Select(_ => Person(r)).ToList();
            (string context, string field) = (i % 4) switch
            {
                0 => ($"Welcome back, {p["name"]}! We have {p["email"]} as your sign-in address and {p["phone"]} as your phone. " +
                      $"Your last order, {p["order_id"]}, was {p["status"]}. To change your sign-in address, reply from", "email"),
                1 => ($"Result: {{\"user_id\": \"{p["user_id"]}\", \"name\": \"{p["name"]}\", \"zip\": \"{p["zip"]}\", \"orders\": [\"{p["order_id"]}\"]}}\n" +
                      $"So the customer {p["name"]} has the user id", "user_id"),
                2 => ($"Parcel notice for {p["name"]}, {p["address"]}. Carrier reference {p["tracking_id"]}, item {p["product"]}. " +
                      $"If you are not at home, we will leave a card. Follow the parcel online with number", "tracking_id"),
                _ => ($"Invoice {p["code"]} dated {p["date"]}: {p["product"]}, item {p["item_id"]}, charged to {p["payment_method_id"]}.\n" +
                      $"Payment reminder for invoice {p["code"]}: the product with item number", "item_id"),
            };
            int answer = r.NextInt(4);
            var choices = decoys.Select(d => d[field]).ToList();
            choices.Insert(answer, p[field]);
            items.Add((context, choices.ToArray(), answer));
        }
        return items;
    }
}
