import HearthCore
import HearthDatasets

/// How interactions are grouped into virtual devices.
public enum DeviceGrouping: String, Sendable, CaseIterable {
    /// One device per user (a single-user board).
    case user
    /// One device per store (a shared kiosk serving many shoppers); needs a `store_id` column.
    case store
}

/// One virtual device's data: its own training events, and the users it serves at test time.
public struct VirtualDeviceData: Sendable {
    /// External id (the user id, or the store id).
    public var id: String
    /// The device's event log: the training prefixes of the users it serves, chronological.
    public var training: [Event]
    /// The users (indices into the split) whose test queries this device answers.
    public var users: [Int]

    public init(id: String, training: [Event], users: [Int]) {
        self.id = id
        self.training = training
        self.users = users
    }
}

/// The data of one simulation: the catalogue, the per-user chronological leave-last-out split
/// and the virtual devices holding the training events.
///
/// Every user's last interaction is the test target and the one before it the validation
/// target (`LeaveLastOutSplit`); devices hold only the training prefixes, so nothing at or after
/// a user's validation interaction reaches training.
public struct SimulationData: Sendable {
    /// The items (dense indices are the model's rows).
    public var catalog: Catalog
    /// Per user: training prefix, validation target, test target.
    public var split: LeaveLastOutSplit
    /// External user ids, aligned with the split.
    public var userIDs: [String]
    /// The virtual devices.
    public var devices: [VirtualDeviceData]
    /// Per user, the device that serves it.
    public var deviceOfUser: [Int]
    /// How devices were formed.
    public var grouping: DeviceGrouping

    /// Splits `dataset` per user and groups the training events into devices.
    ///
    /// - `stores`: per user, per event (aligned with `dataset.sequences`), the store id; required
    ///   for `.store`. A user's events go to the store of each event; the user is served by the
    ///   store of their last training event (or of their validation event when they have none).
    /// - `maxUsers`: keep only the first `maxUsers` users (in file order), to keep runs small.
    public init(dataset: InteractionDataset, grouping: DeviceGrouping = .user, stores: [[String]]? = nil,
                maxUsers: Int? = nil) throws(SimulationError) {
        var sequences = dataset.sequences
        var userIDs = dataset.userIDs
        var storeLists = stores
        if let maxUsers {
            guard maxUsers > 0 else { throw .invalidArgument("maxUsers must be positive, got \(maxUsers)") }
            sequences = Array(sequences.prefix(maxUsers))
            userIDs = Array(userIDs.prefix(maxUsers))
            storeLists = storeLists.map { Array($0.prefix(maxUsers)) }
        }
        let split = LeaveLastOutSplit(sequences: sequences)
        var devices: [VirtualDeviceData] = []
        var deviceOfUser = [Int](repeating: 0, count: sequences.count)
        switch grouping {
        case .user:
            for user in sequences.indices {
                deviceOfUser[user] = devices.count
                devices.append(VirtualDeviceData(id: userIDs[user], training: split.training[user], users: [user]))
            }
        case .store:
            guard let storeLists, storeLists.count == sequences.count else {
                throw .invalidArgument("grouping by store needs a store_id column")
            }
            var index: [String: Int] = [:]
            func device(_ store: String) -> Int {
                if let existing = index[store] { return existing }
                index[store] = devices.count
                devices.append(VirtualDeviceData(id: store, training: [], users: []))
                return devices.count - 1
            }
            for user in sequences.indices {
                let trainingCount = split.training[user].count
                guard storeLists[user].count == sequences[user].count else {
                    throw .invalidArgument("store ids for user \(userIDs[user]) do not match the events")
                }
                for (position, event) in split.training[user].enumerated() {
                    var withSession = event
                    // A basket is a session; without baskets each user is one session at the kiosk.
                    if withSession.session == 0 { withSession.session = UInt64(user + 1) }
                    devices[device(storeLists[user][position])].training.append(withSession)
                }
                let serving = trainingCount > 0 ? storeLists[user][trainingCount - 1] : (storeLists[user].first ?? "")
                let d = device(serving)
                deviceOfUser[user] = d
                devices[d].users.append(user)
            }
            for d in devices.indices {
                // Chronological; the stable sort keeps each user's order on equal timestamps.
                let events = devices[d].training
                let order = events.indices.sorted { (events[$0].timestamp, $0) < (events[$1].timestamp, $1) }
                devices[d].training = order.map { events[$0] }
            }
        }
        self.catalog = dataset.catalog
        self.split = split
        self.userIDs = userIDs
        self.devices = devices
        self.deviceOfUser = deviceOfUser
        self.grouping = grouping
    }

    /// Users with a test target.
    public var testUsers: Int { split.test.reduce(0) { $0 + ($1 == nil ? 0 : 1) } }
    /// Training events over all devices.
    public var trainingEvents: Int { devices.reduce(0) { $0 + $1.training.count } }

    /// A device's training events as the event records its agent would hold (external item ids,
    /// purchase kind as in the dataset, the session as a string, milliseconds).
    public func records(ofDevice device: Int) throws(SimulationError) -> [EventRecord] {
        var out: [EventRecord] = []
        out.reserveCapacity(devices[device].training.count)
        for event in devices[device].training {
            do {
                out.append(try EventRecord(item: catalog.ids[Int(event.item)], kind: event.kind, session: "s\(event.session)",
                                           timestampMilliseconds: max(0, event.timestamp) &* 1000))
            } catch {
                throw .invalidArgument("device \(devices[device].id): \(error)")
            }
        }
        return out
    }
}

/// Reads a dataset CSV for the simulator: the interactions (`InteractionDataset`) plus, when
/// the file has a `store_id` column, the store of every event.
public enum SimulationDataset {
    /// The dataset and, if present, the per-user per-event store ids aligned with its sequences.
    ///
    /// The store of an event is looked up by (user, item, timestamp); if one user bought the same
    /// item at the same second in two stores, the first row's store is used.
    public static func load(csvAt path: String, options: InteractionDataset.Options,
                            itemsCSV: String? = nil) throws(DatasetError) -> (InteractionDataset, [[String]]?) {
        let table = try CSVTable(contentsOf: path)
        var dataset = try InteractionDataset(table: table, source: path, options: options)
        if let itemsCSV { try dataset.loadAttributes(csvAt: itemsCSV) }
        guard let storeColumn = table.column("store_id"), let userColumn = table.column("user_id"),
              let itemColumn = table.column("item_id"), let timeColumn = table.column("timestamp") else {
            return (dataset, nil)
        }
        var storeOf: [String: String] = [:]
        for fields in table.rows {
            let key = fields[userColumn] + "\u{1}" + fields[itemColumn] + "\u{1}" + fields[timeColumn]
            if storeOf[key] == nil { storeOf[key] = fields[storeColumn] }
        }
        var stores: [[String]] = []
        stores.reserveCapacity(dataset.sequences.count)
        for (user, events) in dataset.sequences.enumerated() {
            let userID = dataset.userIDs[user]
            stores.append(events.map { event in
                storeOf[userID + "\u{1}" + dataset.catalog.ids[Int(event.item)] + "\u{1}" + String(event.timestamp)] ?? ""
            })
        }
        return (dataset, stores)
    }
}
