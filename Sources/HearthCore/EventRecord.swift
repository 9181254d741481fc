/// One shopper event as local apps send it and the event log stores it: external ids, not
/// dense indices (the catalogue can change under a stored log).
///
/// The wire form (local API JSON, CSV import) is
/// `{"item": "sku-123", "kind": "view|click|cart|purchase", "session": "s-42",
///   "quantity": 2, "timestamp_ms": 1700000000000}`; `quantity` is optional.
public struct EventRecord: Sendable, Hashable {
    /// External item id (SKU), 1 to `EventRecord.maxIDLength` UTF-8 bytes.
    public var item: String
    public var kind: EventKind
    /// Shopper session id, 1 to `EventRecord.maxIDLength` UTF-8 bytes.
    public var session: String
    /// Units (for cart and purchase), 1 to `EventRecord.maxQuantity`, or nil.
    public var quantity: Int32?
    /// Milliseconds since the Unix epoch.
    public var timestampMilliseconds: Int64

    /// Longest accepted id, in UTF-8 bytes.
    public static let maxIDLength = 128
    /// Largest accepted quantity.
    public static let maxQuantity: Int32 = 10_000

    /// A validated record: ids non-empty, at most `maxIDLength` bytes and free of control
    /// characters; quantity in 1...maxQuantity; timestamp not negative. The error names the field.
    public init(item: String, kind: EventKind, session: String, quantity: Int32? = nil, timestampMilliseconds: Int64) throws(CoreError) {
        try EventRecord.checkID(item, field: "item")
        try EventRecord.checkID(session, field: "session")
        if let quantity, quantity < 1 || quantity > EventRecord.maxQuantity {
            throw .invalidArgument("quantity: \(quantity) is outside 1...\(EventRecord.maxQuantity)")
        }
        guard timestampMilliseconds >= 0 else {
            throw .invalidArgument("timestamp_ms: \(timestampMilliseconds) is negative")
        }
        self.item = item
        self.kind = kind
        self.session = session
        self.quantity = quantity
        self.timestampMilliseconds = timestampMilliseconds
    }

    private static func checkID(_ id: String, field: String) throws(CoreError) {
        let length = id.utf8.count
        guard length > 0 else { throw .invalidArgument("\(field): must not be empty") }
        guard length <= maxIDLength else {
            throw .invalidArgument("\(field): \(length) bytes, at most \(maxIDLength) allowed")
        }
        for byte in id.utf8 where byte < 0x20 || byte == 0x7F {
            throw .invalidArgument("\(field): control characters are not allowed")
        }
    }
}
