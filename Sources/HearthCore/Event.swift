/// What a shopper did with an item. Stronger kinds weigh more in the query and in training.
public enum EventKind: UInt8, Sendable, CaseIterable {
    case view = 0
    case click = 1
    case cart = 2
    case purchase = 3

    /// Weight of this kind in the recency-weighted query: view < click < cart < purchase.
    public var weight: Float {
        switch self {
        case .view: return 0.25
        case .click: return 0.5
        case .cart: return 0.75
        case .purchase: return 1.0
        }
    }

    /// The lower-case name used on the wire and in CSVs.
    public var name: String {
        switch self {
        case .view: return "view"
        case .click: return "click"
        case .cart: return "cart"
        case .purchase: return "purchase"
        }
    }

    /// Parses a lower-case name.
    public init?(name: String) {
        switch name {
        case "view": self = .view
        case "click": self = .click
        case "cart": self = .cart
        case "purchase": self = .purchase
        default: return nil
        }
    }
}

/// One event on one item, with the item already mapped to its dense index.
public struct Event: Sendable, Hashable {
    public var item: Int32
    public var kind: EventKind
    public var session: UInt64
    /// Seconds since the Unix epoch (the clock is injected by the caller).
    public var timestamp: Int64

    public init(item: Int32, kind: EventKind = .purchase, session: UInt64 = 0, timestamp: Int64 = 0) {
        self.item = item
        self.kind = kind
        self.session = session
        self.timestamp = timestamp
    }
}
