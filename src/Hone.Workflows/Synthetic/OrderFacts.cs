using System.Globalization;
using System.Text;
using Hone.Tensors;

namespace Hone.Synthetic;

public enum OrderStatus { Processing, Shipped, Delivered, Returned }

/// <param name="ReturnDays">returns accepted this many days after delivery</param>
/// <param name="RefundDays">business days a refund takes to reach the customer</param>
/// <param name="ShipDays">business days before an order ships</param>
public sealed record Shop(string Name, string Category, string Currency, int ReturnDays, int RefundDays, int ShipDays);

public sealed record OrderLine(int Quantity, string Product, decimal UnitPrice)
{
    public decimal LineTotal => Quantity * UnitPrice;
}

/// <summary>
/// Everything true about one customer's order on one day: what the conversation's order record shows, what answers
/// may state, and what the verifier checks them against. Fields are null where the order has not got that far.
/// <see cref="NewAddress"/> is what the customer asks to move the delivery to (it appears only in their message).
/// </summary>
public sealed record OrderFacts(
    Shop Shop, DateOnly Today, string FirstName, string LastName, string Email, string OrderId, DateOnly Placed,
    IReadOnlyList<OrderLine> Lines, decimal Total, string Payment, string Address, OrderStatus Status,
    DateOnly? Shipped, string? Carrier, string? Tracking, DateOnly? EstimatedDelivery, DateOnly? Delivered,
    DateOnly? ReturnBy, DateOnly? ReturnReceived, decimal? RefundAmount, DateOnly? RefundIssued, string NewAddress)
{
    public string Money(decimal amount) => Shop.Currency + amount.ToString("0.00", CultureInfo.InvariantCulture);

    /// <summary>"Visa ending 4242" → "your Visa ending 4242"; "PayPal" → "your PayPal balance".</summary>
    public string PaymentDestination => Payment == "PayPal" ? "your PayPal balance" : "your " + Payment;

    /// <summary>"2 x Ceramic Mug and 1 x Tea Towel".</summary>
    public string ItemsText
    {
        get
        {
            var parts = Lines.Select(l => $"{l.Quantity} x {l.Product}").ToList();
            return parts.Count == 1 ? parts[0] : string.Join(", ", parts.Take(parts.Count - 1)) + " and " + parts[^1];
        }
    }

    /// <summary>The order record shown to the assistant (in the system message): one "Label: value" line per fact the
    /// order has, always in the same order, so a fact sits in a fixed slot.</summary>
    public string RecordText()
    {
        var b = new StringBuilder();
        void Line(string label, string? value) { if (value != null) b.Append(label).Append(": ").Append(value).Append('\n'); }
        Line("Today", Dates.Long(Today));
        Line("Customer", $"{FirstName} {LastName}");
        Line("Email", Email);
        Line("Order", OrderId);
        Line("Placed", Dates.Long(Placed));
        Line("Items", string.Join("; ", Lines.Select(l => $"{l.Quantity} x {l.Product} ({Money(l.UnitPrice)} each)")));
        Line("Total", Money(Total));
        Line("Payment", Payment);
        Line("Ship to", Address);
        Line("Status", Status.ToString().ToLowerInvariant());
        Line("Shipped", Shipped is DateOnly s ? Dates.Long(s) : null);
        Line("Carrier", Carrier);
        Line("Tracking", Tracking);
        Line("Estimated delivery", Status == OrderStatus.Shipped && EstimatedDelivery is DateOnly e ? Dates.Long(e) : null);
        Line("Delivered", Delivered is DateOnly d ? Dates.Long(d) : null);
        Line("Return by", ReturnBy is DateOnly r ? Dates.Long(r) : null);
        Line("Return received", ReturnReceived is DateOnly rr ? Dates.Long(rr) : null);
        if (RefundAmount is decimal amount)
            Line("Refund", RefundIssued is DateOnly i ? $"{Money(amount)} issued {Dates.Long(i)} to {Payment}" : $"{Money(amount)} pending");
        b.Append($"Policy: returns within {Shop.ReturnDays} days of delivery; refunds take up to {BusinessDays(Shop.RefundDays)}; " +
                 $"orders ship within {BusinessDays(Shop.ShipDays)}");
        return b.ToString();
    }

    public static string BusinessDays(int days) => days == 1 ? "1 business day" : $"{days} business days";
}

/// <summary>Date formats of the e-commerce data: "12 March 2025" in records, "12 March" (optionally "Wednesday, 12 March")
/// in answers.</summary>
public static class Dates
{
    public static readonly string[] Months =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

    public static string Long(DateOnly d) => $"{d.Day} {Months[d.Month - 1]} {d.Year}";
    public static string Short(DateOnly d) => $"{d.Day} {Months[d.Month - 1]}";
    public static string WithWeekday(DateOnly d) => $"{d.DayOfWeek}, {Short(d)}";
}

/// <summary>Draws consistent order facts: dates follow each other as the status requires, totals add up, carriers and
/// tracking numbers fit the shop's region.</summary>
static class OrderFactsGenerator
{
    internal sealed record Region(string Currency, string[] Carriers, string[] Cities, string PostcodePattern);

    // Pattern letters: D digit, L capital letter, X digit or capital letter; anything else is literal.
    internal static readonly Region[] Regions =
    [
        new("$", ["UPS", "FedEx", "USPS"], ["Portland", "Denver", "Austin", "Madison", "Boise", "Tucson", "Albany", "Raleigh", "Omaha", "Spokane", "Savannah", "Burlington"], "DDDDD"),
        new("£", ["Royal Mail", "DPD", "Evri"], ["Leeds", "Bristol", "York", "Bath", "Norwich", "Exeter", "Derby", "Oxford", "Chester", "Durham", "Lincoln", "Cardiff"], "LLD DLL"),
        new("€", ["DHL", "PostNL", "GLS"], ["Utrecht", "Lyon", "Graz", "Ghent", "Porto", "Bonn", "Turin", "Cork", "Leiden", "Bruges", "Lille", "Salzburg"], "DDDD LL"),
    ];

    /// <summary>Every carrier's tracking number: 10 to 13 capitals and digits (the verifier finds them by that shape).</summary>
    internal static readonly Dictionary<string, string> TrackingPatterns = new()
    {
        ["UPS"] = "1ZXXXXXXDDDD", ["FedEx"] = "DDDDDDDDDDDD", ["USPS"] = "92DDDDDDDDDD",
        ["Royal Mail"] = "LLDDDDDDDDGB", ["DPD"] = "15DDDDDDDDDD", ["Evri"] = "HDDLLDDDDDDD",
        ["DHL"] = "DDDDDDDDDD", ["PostNL"] = "3SLLLLDDDDDDD", ["GLS"] = "DDDDDDDDDDD",
    };

    internal static readonly Shop[] Shops =
    [
        new("Northwind Home", "home", "£", 30, 5, 2),
        new("Blue Heron Books", "books", "$", 30, 7, 1),
        new("Pixel Parts", "electronics", "$", 14, 5, 2),
        new("Greenleaf Garden", "garden", "€", 30, 10, 3),
        new("Little Acorn Toys", "toys", "£", 60, 5, 2),
        new("Trailhead Outfitters", "outdoor", "$", 45, 7, 2),
        new("Paper and Quill", "stationery", "€", 14, 3, 1),
        new("Happy Paws", "pets", "$", 30, 5, 1),
        new("Cedar and Salt Kitchen", "kitchen", "£", 30, 7, 2),
        new("Moss and Stone", "home", "€", 60, 7, 3),
    ];

    internal static readonly Dictionary<string, (string Name, decimal Price)[]> Products = new()
    {
        ["home"] = [("Ceramic Mug", 12.00m), ("Linen Tea Towel", 6.50m), ("Wool Throw", 48.00m), ("Table Lamp", 35.00m), ("Cotton Cushion", 18.50m),
                    ("Glass Vase", 22.00m), ("Bath Towel", 15.00m), ("Scented Candle", 9.95m), ("Wall Clock", 27.50m), ("Storage Basket", 16.00m)],
        ["books"] = [("The Quiet Harbour", 14.99m), ("A Short History of Bread", 18.00m), ("Stars for Beginners", 12.50m), ("The Garden Year", 22.00m),
                     ("Maps of the Mind", 16.75m), ("The Clockmaker's Daughter", 11.99m), ("Cooking with Beans", 19.50m), ("Birds of the Coast", 24.00m)],
        ["electronics"] = [("USB-C Cable", 9.99m), ("Wireless Mouse", 24.50m), ("Phone Stand", 14.00m), ("Bluetooth Speaker", 39.99m), ("Laptop Sleeve", 21.00m),
                           ("Power Bank", 29.95m), ("HDMI Adapter", 12.49m), ("Wired Headphones", 19.99m), ("Keyboard Cover", 8.50m)],
        ["garden"] = [("Watering Can", 17.50m), ("Seed Starter Kit", 12.95m), ("Pruning Shears", 21.00m), ("Bird Feeder", 15.99m), ("Garden Gloves", 8.75m),
                      ("Terracotta Pot", 11.20m), ("Hose Nozzle", 9.40m), ("Compost Bin", 45.00m)],
        ["toys"] = [("Wooden Train Set", 34.99m), ("Puzzle Cube", 7.50m), ("Plush Rabbit", 14.00m), ("Building Blocks", 25.00m), ("Kite", 12.99m),
                    ("Card Game", 9.99m), ("Toy Car", 6.49m), ("Paint Set", 16.50m)],
        ["outdoor"] = [("Rain Jacket", 89.00m), ("Hiking Socks", 14.50m), ("Water Bottle", 19.99m), ("Trail Cap", 22.00m), ("Fleece Gloves", 24.95m),
                       ("Head Torch", 29.00m), ("Day Pack", 64.00m), ("Camp Mug", 11.50m)],
        ["stationery"] = [("Dotted Notebook", 8.90m), ("Fountain Pen", 32.00m), ("Ink Bottle", 11.50m), ("Desk Planner", 19.00m), ("Pencil Set", 6.75m),
                          ("Washi Tape", 4.20m), ("Letter Paper", 12.30m), ("Sketchbook", 14.60m)],
        ["pets"] = [("Dog Lead", 16.99m), ("Cat Scratcher", 28.50m), ("Chew Toy", 7.99m), ("Pet Bed", 49.00m), ("Food Bowl", 12.00m),
                    ("Grooming Brush", 10.49m), ("Bird Swing", 6.25m), ("Treat Jar", 13.75m)],
        ["kitchen"] = [("Chef's Knife", 45.00m), ("Cutting Board", 22.50m), ("Mixing Bowl", 16.00m), ("Cast Iron Pan", 38.00m), ("Salad Servers", 11.00m),
                       ("Spice Jar Set", 19.95m), ("Measuring Cups", 9.50m), ("Teapot", 26.00m)],
    };

    internal static readonly string[] FirstNames =
    [
        "Anna", "Ben", "Chloe", "Daniel", "Ella", "Farid", "Grace", "Hugo", "Isla", "Jonas", "Kemi", "Liam", "Maya", "Noah", "Olivia",
        "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Yusuf", "Zoe", "Aisha", "Bruno", "Carmen", "Dev", "Emil",
        "Fatima", "Gabriel", "Hana", "Ivan", "Julia", "Kofi", "Lena", "Marco", "Nadia", "Oscar", "Paula", "Ravi", "Sofia", "Tom",
        "Ines", "Leo", "Mei", "Omar", "Sara", "Theo",
    ];

    internal static readonly string[] LastNames =
    [
        "Kim", "Smith", "Okafor", "Novak", "Garcia", "Haddad", "Jensen", "Patel", "Rossi", "Silva", "Tanaka", "Walsh", "Dubois", "Ferreira",
        "Khan", "Larsen", "Moreau", "Nguyen", "Brown", "Schmidt", "Cohen", "Mensah", "Ivanova", "Lopez", "Murphy", "Ahmed", "Berg", "Costa",
        "Evans", "Fischer", "Hughes", "Ito", "Klein", "Lind", "Mori", "Price", "Reyes", "Santos", "Wood", "Young",
    ];

    static readonly string[] Streets = ["Elm", "Oak", "Maple", "Station", "Mill", "Church", "Park", "River", "Hill", "Bridge", "Orchard", "Willow", "Birch", "Cedar", "Meadow", "Chapel", "Garden", "Spring", "Lake", "Forest"];
    static readonly string[] StreetTypes = ["Street", "Road", "Lane", "Avenue", "Close", "Way", "Drive", "Court", "Place"];
    static readonly string[] EmailDomains = ["example.com", "example.org", "example.net", "mail.example.com", "post.example.org"];
    static readonly string[] Cards = ["Visa", "Mastercard", "American Express"];

    public static OrderFacts Generate(Xoshiro256 random, OrderStatus status)
    {
        var shop = random.One(Shops);
        var region = Regions.First(r => r.Currency == shop.Currency);
        string first = random.One(FirstNames), last = random.One(LastNames);
        string email = random.NextInt(4) switch
        {
            0 => $"{first}.{last}",
            1 => $"{first}{last}",
            2 => $"{first[0]}.{last}",
            _ => $"{first}{random.Between(10, 99)}",
        };
        email = email.ToLowerInvariant() + "@" + random.One(EmailDomains);
        string orderId = "#" + random.Between(10000, 99999).ToString(CultureInfo.InvariantCulture);

        var products = random.Distinct(Products[shop.Category], random.Weighted([5, 3, 2]) + 1);
        var lines = products.Select(p => new OrderLine(random.Chance(0.7) ? 1 : random.Between(2, 3), p.Name, p.Price)).ToList();
        decimal total = lines.Sum(l => l.LineTotal);
        string payment = random.Chance(0.2) ? "PayPal" : $"{random.One(Cards)} ending {random.Between(0, 9999):0000}";
        string address = Address(random, region);
        string newAddress;
        do newAddress = Address(random, region); while (newAddress == address);

        var placed = new DateOnly(2025, 1, 1).AddDays(random.NextInt(360));
        DateOnly today;
        DateOnly? shipped = null, eta = null, delivered = null, returnBy = null, received = null, issued = null;
        string? carrier = null, tracking = null;
        decimal? refund = null;
        if (status == OrderStatus.Processing) today = placed.AddDays(random.Between(0, shop.ShipDays));
        else
        {
            shipped = placed.AddDays(random.Between(1, shop.ShipDays + 1));
            eta = shipped.Value.AddDays(random.Between(2, 5));
            carrier = random.One(region.Carriers);
            tracking = Fill(random, TrackingPatterns[carrier]);
            if (status == OrderStatus.Shipped) today = shipped.Value.AddDays(random.NextInt(eta.Value.DayNumber - shipped.Value.DayNumber));
            else
            {
                delivered = eta.Value.AddDays(random.Between(-1, 1));
                returnBy = delivered.Value.AddDays(shop.ReturnDays);
                if (status == OrderStatus.Delivered)
                    // Half within the return window, half after it, so return answers go both ways.
                    today = random.Chance(0.5)
                        ? delivered.Value.AddDays(random.Between(0, shop.ReturnDays))
                        : returnBy.Value.AddDays(random.Between(1, 20));
                else
                {
                    received = delivered.Value.AddDays(random.Between(3, Math.Max(3, shop.ReturnDays - 2)));
                    refund = lines.Count > 1 && random.Chance(0.4) ? random.One(lines).LineTotal : total;
                    var issueDay = received.Value.AddDays(random.Between(1, 4));
                    today = received.Value.AddDays(random.Between(0, 8));
                    if (issueDay <= today) issued = issueDay;
                }
            }
        }
        return new OrderFacts(shop, today, first, last, email, orderId, placed, lines, total, payment, address, status,
            shipped, carrier, tracking, eta, delivered, returnBy, received, refund, issued, newAddress);
    }

    static string Address(Xoshiro256 random, Region region) =>
        $"{random.Between(1, 220)} {random.One(Streets)} {random.One(StreetTypes)}, {random.One(region.Cities)} {Fill(random, region.PostcodePattern)}";

    internal static string Fill(Xoshiro256 random, string pattern)
    {
        const string Letters = "ABCDEFGHJKLMNPQRSTUVWXYZ";
        const string Alphanumeric = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
        var b = new StringBuilder(pattern.Length);
        foreach (char c in pattern)
            b.Append(c switch
            {
                'D' => (char)('0' + random.NextInt(10)),
                'L' => Letters[random.NextInt(Letters.Length)],
                'X' => Alphanumeric[random.NextInt(Alphanumeric.Length)],
                _ => c,
            });
        return b.ToString();
    }
}
