namespace Hone.Synthetic;

/// <summary>What a customer asks about.</summary>
public enum Intent
{
    OrderStatus, TrackingNumber, DeliveryDate, ReturnItem, RefundStatus, CancelOrder, ChangeAddress, AccountEmail,
    PasswordReset, PaymentDetails, OrderContents,
}

/// <summary>
/// The wording tables of the e-commerce dataset (template syntax: <see cref="TemplateText"/>). Customer slots:
/// {order} (a reference to the order, sometimes with its number), {newaddress}. Answer slots are facts of the order
/// (<see cref="EcommerceDataset"/> fills them): {id} {first} {placed} {shipped} {carrier} {tracking} {eta} {delivered}
/// {returnby} {window} {received} {refund} {issued} {refunddays} ("5 business days") {shipdays} {payment} {paymentto} {total} {items}
/// {email} {address} {newaddress} {shop}.
/// </summary>
static class EcommercePhrasings
{
    /// <summary>Which statuses an intent is asked about (the order record is drawn to match).</summary>
    public static readonly Dictionary<Intent, OrderStatus[]> Statuses = new()
    {
        [Intent.OrderStatus] = [OrderStatus.Processing, OrderStatus.Shipped, OrderStatus.Delivered, OrderStatus.Returned],
        [Intent.TrackingNumber] = [OrderStatus.Processing, OrderStatus.Shipped, OrderStatus.Delivered],
        [Intent.DeliveryDate] = [OrderStatus.Processing, OrderStatus.Shipped, OrderStatus.Delivered],
        [Intent.ReturnItem] = [OrderStatus.Shipped, OrderStatus.Delivered, OrderStatus.Delivered],
        [Intent.RefundStatus] = [OrderStatus.Returned],
        [Intent.CancelOrder] = [OrderStatus.Processing, OrderStatus.Shipped],
        [Intent.ChangeAddress] = [OrderStatus.Processing, OrderStatus.Shipped],
        [Intent.AccountEmail] = [OrderStatus.Processing, OrderStatus.Shipped, OrderStatus.Delivered, OrderStatus.Returned],
        [Intent.PasswordReset] = [OrderStatus.Processing, OrderStatus.Shipped, OrderStatus.Delivered, OrderStatus.Returned],
        [Intent.PaymentDetails] = [OrderStatus.Processing, OrderStatus.Shipped, OrderStatus.Delivered, OrderStatus.Returned],
        [Intent.OrderContents] = [OrderStatus.Processing, OrderStatus.Shipped, OrderStatus.Delivered, OrderStatus.Returned],
    };

    public static readonly string[] SystemIntros =
    [
        "You are the customer service assistant for {shop}. Answer the customer using the order record below.",
        "You work in customer support at {shop}. Use the order record to answer the customer's question.",
        "You are {shop}'s support assistant. Reply to the customer from the facts in the order record.",
        "You are a helpful customer service agent for {shop}. Base every answer on this order record.",
    ];

    public static readonly string[] OrderReferences =
        ["my order", "my order", "my order {id}", "order {id}", "order {idnumber}", "my order (number {idnumber})", "the order I placed", "my last order"];

    public static readonly string[] Openers =
        ["", "", "", "Hi, ", "Hello, ", "Hi there! ", "Hey, ", "Good morning. ", "Good afternoon! ", "Hello! "];

    public static readonly string[] Closers =
        ["", "", "", " Thanks!", " Thank you.", " Thanks in advance.", " Cheers.", " Thank you so much!", " I appreciate your help."];

    public static readonly string[] ImpatientOpeners =
        ["This is the second time I'm asking. ", "I'm getting really frustrated. ", "Hello??? ", "I need an answer today. "];

    public static readonly Dictionary<Intent, string[]> Questions = new()
    {
        [Intent.OrderStatus] =
        [
            "where is {order}?", "can you tell me where {order} is?", "what is the status of {order}?", "has {order} shipped yet?",
            "any update on {order}?", "{order} still hasn't arrived. Where is it?", "could you please check on {order} for me?",
            "I'm waiting for {order}, [where is it|what's happening with it]?", "I placed {order} a few days ago and haven't heard anything. What's the status?",
            "[can you|could you] give me an update on {order}?", "is {order} on its way?",
        ],
        [Intent.TrackingNumber] =
        [
            "can I get the tracking number for {order}?", "what's the tracking number?", "could you send me the tracking [info|details] for {order}?",
            "how can I track {order}?", "I need the tracking number [please|for {order}].", "which [courier|delivery company] has {order}, and what is the tracking number?",
            "is there a tracking number for {order}?", "[please|pls] send me the tracking code.",
        ],
        [Intent.DeliveryDate] =
        [
            "when will {order} arrive?", "when can I expect {order}?", "what's the delivery date for {order}?",
            "will {order} get here soon? I need it for the weekend.", "how long until {order} is delivered?", "when is {order} [due|going to arrive]?",
            "[roughly|about] when should {order} turn up?",
        ],
        [Intent.ReturnItem] =
        [
            "I'd like to return {order}. Is that still possible?", "can I still return [the things|the items] from {order}?",
            "how long do I have to return {order}?", "it doesn't fit. Can I send it back?", "am I still within the return window for {order}?",
            "is it too late to return {order}?", "I want to send back {order}. [Can I?|Is that OK?]", "[what's|what is] the last day I can return {order}?",
        ],
        [Intent.RefundStatus] =
        [
            "where is my refund?", "I sent back {order}. When will I get my money back?", "has my refund been processed?",
            "what's happening with the refund for {order}?", "I returned [my items|everything] [a while ago|last week] and [still no refund|haven't seen a refund]. What's going on?",
            "did you get my return? [And|So] when is the refund coming?", "can you check the refund for {order}?",
        ],
        [Intent.CancelOrder] =
        [
            "please cancel {order}.", "can I cancel {order}?", "I changed my mind, I don't need {order} anymore. Can you cancel it?",
            "I ordered by mistake. Please cancel it.", "I'd like to cancel {order}, please.", "is it too late to cancel {order}?",
            "[cancel|please cancel] {order}, I found it cheaper elsewhere.",
        ],
        [Intent.ChangeAddress] =
        [
            "can you send {order} to {newaddress} instead?", "I moved last week. Please change the delivery address for {order} to {newaddress}.",
            "wrong address on {order}! It should go to {newaddress}.", "is it possible to update the address for {order} to {newaddress}?",
            "please deliver {order} to {newaddress}.", "could {order} go to {newaddress} [instead|rather than my old address]?",
        ],
        [Intent.AccountEmail] =
        [
            "which email address is on my account?", "I forgot which email I signed up with. Can you tell me?",
            "what email do you have for me?", "can you check the email address on my account?", "what email did I use [for my account|to sign up]?",
        ],
        [Intent.PasswordReset] =
        [
            "I can't log in. Can you reset my password?", "I forgot my password.", "please send me a password reset link.",
            "how do I reset my password?", "[I'm locked out|I can't sign in], [help|can you help]?", "my password isn't working. Can you send a reset link?",
        ],
        [Intent.PaymentDetails] =
        [
            "which card did I use for {order}?", "how did I pay for {order}?", "how much was I charged for {order}?",
            "can you confirm the payment for {order}?", "what was the total for {order}, and how did I pay?", "[what|which] payment method is on {order}?",
        ],
        [Intent.OrderContents] =
        [
            "what did I order in {order}?", "can you remind me what's in {order}?", "what items are in {order}?",
            "I can't remember what I bought. What was in {order}?", "can you list [the items|everything] in {order}?",
        ],
    };

    public static readonly string[] Greetings =
        ["", "", "", "Hi {first}! ", "Hello {first}! ", "Thanks for getting in touch, {first}. ", "Thank you for your message, {first}. ", "Hi {first}, thanks for reaching out. "];

    public static readonly string[] Closings =
        ["", "", "", " Is there anything else I can help you with?", " Let me know if there is anything else I can do.", " Have a great day!", " Happy to help with anything else."];

    /// <summary>Answers by intent and situation (<see cref="EcommerceVerifier.Situation"/> names the situations).</summary>
    public static readonly Dictionary<(Intent, string), string[]> Answers = new()
    {
        [(Intent.OrderStatus, "processing")] =
        [
            "your order {id} was placed on {placed} and is still being prepared. [Orders usually ship|We ship orders] within {shipdays}, and you will get a tracking number as soon as it [leaves|is on its way].",
            "order {id} has not shipped yet. [It is being prepared now|Our team is preparing it now], and orders ship within {shipdays}.",
            "[good news: your|your] order {id} is in our system and is being prepared. It was placed on {placed}, and orders ship within {shipdays}.",
        ],
        [(Intent.OrderStatus, "shipped")] =
        [
            "your order {id} shipped on {shipped} with {carrier}. The tracking number is {tracking}, and it should arrive by {eta}.",
            "good news! Order {id} is on its way. It was dispatched on {shipped} with {carrier} (tracking {tracking}) and is expected on {eta}.",
            "order {id} left our warehouse on {shipped} and is now with {carrier}. You can follow it with tracking number {tracking}. The estimated delivery date is {eta}.",
            "order {id} is on its way with {carrier}. It shipped on {shipped} and should reach you by {eta}.",
        ],
        [(Intent.OrderStatus, "delivered")] =
        [
            "our records show that order {id} was delivered on {delivered} by {carrier}.",
            "order {id} was delivered on {delivered}.[ If you can't find it, please check with your neighbours or your building's reception.|]",
            "{carrier} delivered your order {id} on {delivered} (tracking {tracking}).",
        ],
        [(Intent.OrderStatus, "returned")] =
        [
            "order {id} was delivered on {delivered}, and we received your return on {received}.",
            "we received the return for order {id} on {received}. [The refund details are on your order.|]",
        ],
        [(Intent.TrackingNumber, "processing")] =
        [
            "order {id} has not shipped yet, so there is no tracking number [yet|for it yet]. It should ship within {shipdays}, and [we will email you|you will get an email with] the tracking number then.",
            "there is no tracking number yet because order {id} is still being prepared. Orders ship within {shipdays}.",
        ],
        [(Intent.TrackingNumber, "shipped")] =
        [
            "the tracking number for order {id} is {tracking}. It is with {carrier}[, and it should arrive by {eta}|].",
            "here it is: {tracking} ({carrier}). Order {id} shipped on {shipped}[ and should arrive by {eta}|].",
            "your order {id} is with {carrier}, tracking number {tracking}.",
        ],
        [(Intent.TrackingNumber, "delivered")] =
        [
            "the tracking number for order {id} is {tracking} ({carrier}). It shows the order was delivered on {delivered}.",
            "order {id} went with {carrier}, tracking number {tracking}. It was delivered on {delivered}.",
        ],
        [(Intent.DeliveryDate, "processing")] =
        [
            "order {id} has not shipped yet. Orders ship within {shipdays}, and [it will arrive a few days after that|you will get a delivery estimate when it does].",
            "order {id} is still being prepared, so there is no delivery date yet. It was placed on {placed}, and orders ship within {shipdays}.",
        ],
        [(Intent.DeliveryDate, "shipped")] =
        [
            "order {id} should arrive by {eta}. It shipped on {shipped} with {carrier}.",
            "the estimated delivery date for order {id} is {eta}.[ It is with {carrier}, tracking number {tracking}.|]",
            "it's on its way with {carrier} and should reach you by {eta}. [That is for order {id}.|Order {id} shipped on {shipped}.]",
        ],
        [(Intent.DeliveryDate, "delivered")] =
        [
            "order {id} was already delivered on {delivered}.",
            "our records show that {carrier} delivered order {id} on {delivered}.[ If you can't find it, please let me know.|]",
        ],
        [(Intent.ReturnItem, "not delivered")] =
        [
            "order {id} is still on its way and should arrive by {eta}. Once it is delivered, you can return it within {window} days of delivery.",
            "you can return order {id} within {window} days of delivery. It is still with {carrier} and should arrive by {eta}.",
        ],
        [(Intent.ReturnItem, "open")] =
        [
            "yes, you can still return it. Order {id} was delivered on {delivered}, so you can return it until {returnby}.",
            "order {id} is within our {window}-day return window, which closes on {returnby}.[ Please include the packing slip.|]",
            "you can still return order {id}. You have until {returnby} to send it back.",
        ],
        [(Intent.ReturnItem, "closed")] =
        [
            "I'm sorry, but the {window}-day return window for order {id} closed on {returnby}, so it can no longer be returned.",
            "order {id} was delivered on {delivered}, and the return window ended on {returnby}. I'm afraid we can no longer accept a return for it.",
            "unfortunately the return window for order {id} ended on {returnby}, so it can no longer be returned.",
        ],
        [(Intent.RefundStatus, "issued")] =
        [
            "we received your return on {received} and issued a refund of {refund} on {issued} to {paymentto}. It can take up to {refunddays} to show on your statement.",
            "your refund of {refund} for order {id} was issued on {issued}. It goes back to {paymentto}, [which can take|and may take] up to {refunddays}.",
            "good news: we refunded {refund} to {paymentto} on {issued}. Please allow up to {refunddays} for it to appear.",
        ],
        [(Intent.RefundStatus, "pending")] =
        [
            "we received your return for order {id} on {received}. Your refund of {refund} is being processed and should reach {paymentto} within {refunddays}.",
            "your return arrived on {received}, and the refund of {refund} is being processed. It should reach {paymentto} within {refunddays}.",
        ],
        [(Intent.CancelOrder, "processing")] =
        [
            "done! I have cancelled order {id}. [A refund of {total}|The full amount of {total}] will go back to {paymentto} within {refunddays}.",
            "I have cancelled order {id} for you. You will get {total} back on {paymentto} within {refunddays}.",
            "no problem. Order {id} is now cancelled, and {total} will be refunded to {paymentto}.",
        ],
        [(Intent.CancelOrder, "shipped")] =
        [
            "I'm sorry, order {id} already shipped on {shipped} with {carrier}, so it can no longer be cancelled. Once it arrives, you can return it within {window} days of delivery for a refund.",
            "order {id} has already shipped, so I can't cancel it. You can return it within {window} days of delivery instead.",
        ],
        [(Intent.ChangeAddress, "processing")] =
        [
            "no problem. I have updated the delivery address for order {id} to {newaddress}.",
            "done: order {id} will now go to {newaddress}.",
            "I have changed the address on order {id}. It will be delivered to {newaddress}.",
        ],
        [(Intent.ChangeAddress, "shipped")] =
        [
            "I'm sorry, order {id} has already shipped with {carrier}, so I can no longer change the address.[ You can contact {carrier} with tracking number {tracking} to ask about a redirect.|]",
            "order {id} shipped on {shipped} to {address}, so the address can't be changed now.",
        ],
        [(Intent.AccountEmail, "any")] =
        [
            "the email address on your account is {email}.", "your account is registered to {email}.",
            "we have {email} as the email address for your account.",
        ],
        [(Intent.PasswordReset, "any")] =
        [
            "I have sent a password reset link to {email}.[ It expires in one hour.| Please check your spam folder if you don't see it.|]",
            "no problem. A password reset link is on its way to {email}.",
        ],
        [(Intent.PaymentDetails, "any")] =
        [
            "order {id} was paid with {payment}. The total was {total}.", "you paid {total} for order {id} with {payment}.",
            "the payment for order {id} was {total}, made with {payment}.",
        ],
        [(Intent.OrderContents, "any")] =
        [
            "order {id} contains {items}, for a total of {total}.", "here is what is in order {id}: {items}. The total was {total}.",
            "in order {id} you have {items}. The total came to {total}.",
        ],
    };
}
