/// Well-known local-state keys.
public enum LocalStateKey {
    /// The device embedding: little-endian float32 values.
    public static let deviceEmbedding = "device_embedding"
    /// The serving model version: a little-endian UInt64.
    public static let modelVersion = "model_version"
}

extension DeviceStore {
    /// Stores `value` under `key` (replacing it), durable when it returns.
    public func putState(_ key: String, _ value: [UInt8], now: Int64? = nil) throws(StoreError) {
        try connection.transaction { () throws(StoreError) in try insertState(key, value, now: now) }
    }

    /// `putState` inside the caller's transaction.
    func insertState(_ key: String, _ value: [UInt8], now: Int64?) throws(StoreError) {
        let length = key.utf8.count
        guard (1 ... 256).contains(length) else { throw .invalidArgument("local state key: \(length) bytes, 1 to 256 allowed") }
        let statement = try connection.prepare("INSERT OR REPLACE INTO local_state (key, value, updated_ms) VALUES (?, ?, ?)")
        try statement.bind(1, key)
        try statement.bind(2, blob: value)
        try statement.bind(3, now)
        try statement.run()
    }

    /// Floats as `putFloats` stores them: little-endian float32 bytes.
    public static func stateBytes(_ values: [Float]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * 4)
        for value in values {
            let bits = value.bitPattern.littleEndian
            withUnsafeBytes(of: bits) { bytes.append(contentsOf: $0) }
        }
        return bytes
    }

    /// A UInt64 as `putUInt64` stores it: 8 little-endian bytes.
    public static func stateBytes(_ value: UInt64) -> [UInt8] {
        (0 ..< 8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }

    /// The bytes under `key`, or nil.
    public func state(_ key: String) throws(StoreError) -> [UInt8]? {
        let statement = try connection.prepare("SELECT value FROM local_state WHERE key = ?")
        try statement.bind(1, key)
        guard try statement.step() else { return nil }
        defer { statement.reset() }
        return statement.blob(0)
    }

    /// Removes `key`; false when it was not there.
    @discardableResult
    public func deleteState(_ key: String) throws(StoreError) -> Bool {
        try connection.transaction { () throws(StoreError) -> Bool in
            let statement = try connection.prepare("DELETE FROM local_state WHERE key = ?")
            try statement.bind(1, key)
            try statement.run()
            return connection.changes > 0
        }
    }

    /// Stores floats as little-endian float32 bytes (the device embedding).
    public func putFloats(_ key: String, _ values: [Float], now: Int64? = nil) throws(StoreError) {
        try putState(key, DeviceStore.stateBytes(values), now: now)
    }

    /// Reads little-endian float32 values; `.corrupt` when the length is not a multiple of 4.
    public func floats(_ key: String) throws(StoreError) -> [Float]? {
        guard let bytes = try state(key) else { return nil }
        guard bytes.count % 4 == 0 else { throw .corrupt("local state \(key): \(bytes.count) bytes is not a float32 array") }
        var values: [Float] = []
        values.reserveCapacity(bytes.count / 4)
        var index = 0
        while index < bytes.count {
            let bits = UInt32(bytes[index]) | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2]) << 16 | UInt32(bytes[index + 3]) << 24
            values.append(Float(bitPattern: bits))
            index += 4
        }
        return values
    }

    /// Stores a little-endian UInt64 (e.g. the model version).
    public func putUInt64(_ key: String, _ value: UInt64, now: Int64? = nil) throws(StoreError) {
        try putState(key, DeviceStore.stateBytes(value), now: now)
    }

    /// Reads a little-endian UInt64; `.corrupt` when it is not 8 bytes.
    public func uint64(_ key: String) throws(StoreError) -> UInt64? {
        guard let bytes = try state(key) else { return nil }
        guard bytes.count == 8 else { throw .corrupt("local state \(key): \(bytes.count) bytes is not a UInt64") }
        return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }
}
