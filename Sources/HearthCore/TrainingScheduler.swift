/// Decides whether the device may train now. Pure: the agent reads the load average, the power
/// supply and the clock, and passes them in.
public struct TrainingScheduler: Sendable, Equatable {
    /// Minutes since local midnight when training may start; `end < start` wraps midnight.
    public var windowStartMinute: Int
    public var windowEndMinute: Int
    /// Highest 1-minute load average at which training may run.
    public var maxLoadAverage: Double
    /// Whether training needs mains power (when the board can tell).
    public var requireMainsPower: Bool
    /// New events needed since the last round.
    public var minNewEvents: Int

    public init(windowStartMinute: Int = 0, windowEndMinute: Int = 1440, maxLoadAverage: Double = 0.5,
                requireMainsPower: Bool = true, minNewEvents: Int = 50) {
        self.windowStartMinute = windowStartMinute
        self.windowEndMinute = windowEndMinute
        self.maxLoadAverage = maxLoadAverage
        self.requireMainsPower = requireMainsPower
        self.minNewEvents = minNewEvents
    }

    /// What the device looks like right now.
    public struct Conditions: Sendable, Equatable {
        public var minuteOfDay: Int
        public var loadAverage: Double
        /// true: on mains; false: on battery; nil: the board cannot tell (treated as mains).
        public var onMainsPower: Bool?
        public var newEvents: Int
        /// The server's plan lets this device take part in this model version (its coin came up).
        public var selectedByPlan: Bool

        public init(minuteOfDay: Int, loadAverage: Double, onMainsPower: Bool?, newEvents: Int, selectedByPlan: Bool) {
            self.minuteOfDay = minuteOfDay
            self.loadAverage = loadAverage
            self.onMainsPower = onMainsPower
            self.newEvents = newEvents
            self.selectedByPlan = selectedByPlan
        }
    }

    /// Train now, or why not.
    public enum Decision: Sendable, Equatable {
        case train
        case wait(String)
    }

    /// The decision for `conditions`; every refusal says which condition failed.
    public func decide(_ conditions: Conditions) -> Decision {
        let inWindow = windowStartMinute <= windowEndMinute
            ? conditions.minuteOfDay >= windowStartMinute && conditions.minuteOfDay < windowEndMinute
            : conditions.minuteOfDay >= windowStartMinute || conditions.minuteOfDay < windowEndMinute
        if !inWindow { return .wait("outside the training window") }
        if !(conditions.loadAverage < maxLoadAverage) {
            return .wait("busy: load average \(conditions.loadAverage) is not below \(maxLoadAverage)")
        }
        if requireMainsPower, conditions.onMainsPower == false { return .wait("on battery power") }
        if conditions.newEvents < minNewEvents {
            return .wait("\(conditions.newEvents) new events, \(minNewEvents) needed")
        }
        if !conditions.selectedByPlan { return .wait("not sampled for this model version") }
        return .train
    }
}
