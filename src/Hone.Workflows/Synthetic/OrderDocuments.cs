using Hone.Tensors;

namespace Hone.Synthetic;

/// <summary>
/// Shop web text for pretraining: an order record followed by the confirmation e-mail a shop would send, restating the
/// record's facts in prose ("Your order #48213 shipped on 12 March 2025 with UPS, tracking 1Z…"). It is the kind of
/// text a general model has seen, and it teaches a small model to copy facts from context — which customer-service
/// answers then build on. Conversations themselves are not in it.
/// </summary>
public static class OrderDocuments
{
    static readonly string[] Greetings = ["Hello {0},", "Hi {0},", "Dear {0},", "Good news, {0}!"];
    static readonly string[] Thanks =
    [
        "Thank you for your order {0}, placed on {1}.", "We have received your order {0} from {1}.",
        "This is a confirmation of order {0}, placed on {1}.",
    ];

    public static string Write(OrderFacts f, Xoshiro256 random)
    {
        string Pick(string[] options) => options[random.NextInt(options.Length)];
        var parts = new List<string>
        {
            "Order record:\n" + f.RecordText(),
            string.Format(Pick(Greetings), f.FirstName),
            string.Format(Pick(Thanks), f.OrderId, Dates.Long(f.Placed)),
            $"You ordered {f.ItemsText} for a total of {f.Money(f.Total)}, paid with {f.Payment}.",
        };
        switch (f.Status)
        {
            case OrderStatus.Processing:
                parts.Add($"Your order {f.OrderId} has not shipped yet; we ship within {OrderFacts.BusinessDays(f.Shop.ShipDays)} and will send it to {f.Address}.");
                break;
            default:
                if (f.Shipped is DateOnly shipped)
                    parts.Add($"Order {f.OrderId} shipped on {Dates.Long(shipped)} with {f.Carrier}, tracking number {f.Tracking}.");
                if (f.Status == OrderStatus.Shipped && f.EstimatedDelivery is DateOnly eta)
                    parts.Add($"It should arrive by {Dates.Long(eta)} at {f.Address}.");
                if (f.Delivered is DateOnly delivered)
                    parts.Add($"It was delivered on {Dates.Long(delivered)}.");
                if (f.ReturnBy is DateOnly returnBy)
                    parts.Add($"You can return it until {Dates.Long(returnBy)} ({f.Shop.ReturnDays} days after delivery).");
                if (f.RefundAmount is decimal amount)
                    parts.Add(f.RefundIssued is DateOnly issued
                        ? $"Your refund of {f.Money(amount)} was issued on {Dates.Long(issued)} to {f.PaymentDestination}."
                        : $"Your refund of {f.Money(amount)} is pending and takes up to {OrderFacts.BusinessDays(f.Shop.RefundDays)}.");
                break;
        }
        parts.Add($"Questions? Write to us and quote {f.OrderId}. Your account e-mail is {f.Email}. — {f.Shop.Name}");
        return string.Join("\n", parts);
    }
}
