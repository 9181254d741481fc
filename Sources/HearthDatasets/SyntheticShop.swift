import HearthCore

/// The built-in tiny example: a small shop whose shoppers each prefer a few aisles.
///
/// Deterministic for a seed, generated in memory (no data ships with the product). Shoppers
/// browse (views, clicks, carts, purchases) mostly within their preferred aisles, and items
/// within an aisle have a skewed popularity, so a model that learns co-occurrence beats
/// popularity.
public enum SyntheticShop {
    /// Aisle names; each aisle holds `itemsPerAisle` items.
    public static let aisles = ["bakery", "dairy", "produce", "pantry", "drinks", "snacks", "household", "baby"]

    /// A dataset of `users` shoppers over `aisles.count * itemsPerAisle` items.
    public static func dataset(users: Int = 200, itemsPerAisle: Int = 12, eventsPerUser: Int = 30, seed: UInt64 = 7) -> InteractionDataset {
        var rng = Xoshiro256(seed: seed)
        var catalog = Catalog()
        for (a, aisle) in aisles.enumerated() {
            for i in 0 ..< itemsPerAisle {
                catalog.insert("\(aisle)-\(i)", attributes: ItemAttributes(category: aisle, brand: "brand-\((a + i) % 5)"))
            }
        }
        var sequences: [[Event]] = []
        var userIDs: [String] = []
        for user in 0 ..< users {
            let first = rng.nextIndex(below: aisles.count)
            let second = (first + 1 + rng.nextIndex(below: aisles.count - 1)) % aisles.count
            var events: [Event] = []
            var time: Int64 = 1_700_000_000 + Int64(user) * 100_000
            var session: UInt64 = UInt64(user) * 1000
            for step in 0 ..< eventsPerUser {
                if step % 6 == 0 { session += 1 }
                let roll = rng.nextUnitFloat()
                let aisle = roll < 0.6 ? first : (roll < 0.9 ? second : rng.nextIndex(below: aisles.count))
                // Skewed within the aisle: low indices are the aisle's best sellers.
                let u = rng.nextUnitFloat()
                let item = aisle * itemsPerAisle + min(itemsPerAisle - 1, Int(Float(itemsPerAisle) * u * u))
                let kindRoll = rng.nextIndex(below: 10)
                let kind: EventKind = kindRoll < 4 ? .view : (kindRoll < 6 ? .click : (kindRoll < 8 ? .cart : .purchase))
                time += Int64(30 + rng.nextIndex(below: 600))
                events.append(Event(item: Int32(item), kind: kind, session: session, timestamp: time))
            }
            sequences.append(events)
            userIDs.append("shopper-\(user)")
        }
        return InteractionDataset(catalog: catalog, userIDs: userIDs, sequences: sequences)
    }
}
