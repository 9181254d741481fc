/// What stays on the device: its own embedding and the recent events of the current context.
///
/// Never uploaded. On a single-user board the embedding is that user's; on a shared kiosk it is
/// the kiosk's, and `recent` holds the current shopper session.
public struct LocalState: Sendable, Equatable {
    /// The device (or user) embedding, trained locally.
    public var embedding: [Float]
    /// Most recent events, oldest first, at most `capacity` of them.
    public private(set) var recent: [Event]
    /// How many recent events the query looks at.
    public let capacity: Int

    public init(dimension: Int, capacity: Int = 20) {
        precondition(dimension > 0 && capacity > 0, "invalid local state shape")
        embedding = [Float](repeating: 0, count: dimension)
        recent = []
        self.capacity = capacity
    }

    /// Records an event, dropping the oldest past `capacity`.
    public mutating func observe(_ event: Event) {
        recent.append(event)
        if recent.count > capacity { recent.removeFirst(recent.count - capacity) }
    }

    /// Forgets the session's recent events (a new shopper), keeping the embedding.
    public mutating func startNewSession() { recent.removeAll() }
}
