#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import HearthControl
import HearthCore
import HearthDatasets
import HearthLocalAPI
import HearthProcess
import HearthCurl
import HearthUploader

/// The end-to-end demo: one `hearth-aggregator` and a few `hearth-agent`s on loopback, fed
/// from a dataset, showing held-out HR@10 after each published version and the ε spent.
///
/// Every shopper (user) of the dataset is assigned to one kiosk (agent). Each user's last
/// interaction is held out; the rest is replayed into the kiosks' event logs in chronological
/// slices, one slice per round. In each round every kiosk trains on its new events, privatizes
/// its update and uploads it through libcurl; the aggregator publishes a signed version when all
/// kiosks have contributed, and the kiosks fetch, verify and serve it. HR@10 is measured through
/// the kiosks' own `GET /v1/recommendations` (what a shopper would see), excluding items the
/// shopper already interacted with.
public struct FederatedDemo {
    public struct Options: Sendable {
        public var datasetPath: String?
        public var agents = 16
        public var rounds = 8
        public var dimension = 8
        public var maxItems = 100
        public var maxUsers = 400
        public var mode = "central"
        public var noiseMultiplier = 0.5
        public var clipNorm = 1.0
        public var learningRate = 0.05
        public var epochs = 4
        /// FedAvg's server step; 0 means "the number of kiosks" (an item seen at one kiosk only is
        /// otherwise diluted by the fixed denominator K).
        public var serverLearningRate = 0.0
        public var binaryDirectory: String
        public var keepDirectory = false

        public init(binaryDirectory: String) { self.binaryDirectory = binaryDirectory }
    }

    let options: Options
    let print: @Sendable (String) -> Void

    public init(options: Options, print: @escaping @Sendable (String) -> Void) {
        self.options = options
        self.print = print
    }

    public func run() async throws {
        let (data, source) = try loadData()
        let split = LeaveLastOutSplit(sequences: data.sequences)
        let users = (0 ..< data.sequences.count).filter { split.test[$0] != nil && !split.training[$0].isEmpty }
        print("dataset: \(source): \(users.count) shoppers, \(data.catalog.count) items, \(data.eventCount) events")
        print("federation: 1 aggregator + \(options.agents) kiosks on loopback, \(options.mode) DP (z = \(options.noiseMultiplier), clip \(options.clipNorm), q = 1), \(options.rounds) rounds")

        let work: String
        do { work = try makeTemporaryDirectory(prefix: "hearth-demo-") } catch { throw DemoError(error.message) }
        defer { if !options.keepDirectory { removeTree(work) } else { print("kept \(work)") } }
        let aggregatorBinary = options.binaryDirectory + "/hearth-aggregator"
        let agentBinary = options.binaryDirectory + "/hearth-agent"

        // The aggregator: catalogue, first version, one credential per kiosk.
        // In id order, not the dataset's frequency order: the first model must know nothing,
        // and with no history its ties would otherwise fall to the most popular items.
        var catalogCSV = "item_id,category,brand\n"
        for (i, id) in data.catalog.ids.enumerated().sorted(by: { $0.element < $1.element }) {
            catalogCSV += csvField(id) + "," + csvField(data.catalog.attributes(at: i).category) + "," + csvField(data.catalog.attributes(at: i).brand) + "\n"
        }
        try writeText(work + "/items.csv", catalogCSV)
        let aggregator: LoopbackAggregator
        do {
            aggregator = try await LoopbackAggregator.start(LoopbackAggregator.Setup(
                binary: aggregatorBinary, directory: work,
                sections: """
                    [plan]
                    sampling_rate = 1.0
                    clip_norm = \(options.clipNorm)
                    noise_multiplier = \(options.noiseMultiplier)
                    mode = "\(options.mode)"
                    bit_width = 20
                    [fedbuff]
                    buffer_size = \(options.agents)
                    minimum_updates = \(options.agents)
                    round_deadline_seconds = 3600
                    server_learning_rate = \(options.serverLearningRate > 0 ? options.serverLearningRate : Double(options.agents))
                    [privacy]
                    delta = 1e-5
                    epsilon_budget = 1000.0
                    """,
                initArguments: ["--catalog", work + "/items.csv", "--dim", String(options.dimension)],
                fleetName: "kiosk", fleetSize: options.agents))
        } catch {
            throw DemoError(error.message)
        }
        defer { aggregator.stop() }
        let base = aggregator.baseURL
        let credentials = aggregator.credentials
        let publicKey = aggregator.modelPublicKey

        // The kiosks.
        var kiosks: [Subprocess] = []
        var clients: [AgentClient] = []
        defer { kiosks.forEach { $0.stop() } }
        for k in 0 ..< options.agents {
            let state = work + "/kiosk-\(k)"
            try writeText(work + "/credential-\(k)", credentials[k] + "\n")
            try writeText(state + ".toml", """
                [agent]
                state_directory = "\(state)"
                socket = "\(work)/k\(k).sock"
                [model]
                device_embedding = false
                [training]
                window = "00:00-24:00"
                max_load = 64
                require_mains_power = false
                min_new_events = 1
                epochs = \(options.epochs)
                learning_rate = \(options.learningRate)
                [privacy]
                mode = "\(options.mode)"
                unit = "device"
                clip_norm = \(options.clipNorm)
                noise_multiplier = \(options.noiseMultiplier)
                bit_width = 20
                delta = 1e-5
                epsilon_budget = 1000.0
                [upload]
                aggregator_url = "\(base)"
                credential_file = "\(work)/credential-\(k)"
                model_public_key = "\(publicKey)"
                """)
            do {
                kiosks.append(try Subprocess(agentBinary, ["--config", state + ".toml", "--training-check-interval", "0.2",
                                                           "--upload-interval", "0.2", "--model-refresh-interval", "0.2"],
                                             log: state + ".log"))
            } catch {
                throw DemoError(error.message)
            }
            clients.append(AgentClient(socketPath: "\(work)/k\(k).sock"))
        }
        for k in 0 ..< options.agents { try await waitForVersion(1, client: clients[k], process: kiosks[k]) }

        // Shoppers to kiosks, round robin; each round replays the next slice of every history.
        let kioskOf = Dictionary(uniqueKeysWithValues: users.enumerated().map { ($1, $0 % options.agents) })
        let now = Int64(wallSeconds()) * 1000
        print("")
        print("version  HR@10   NDCG@10  epsilon spent (delta 1e-5)")
        var metrics = try await evaluate(users: users, split: split, catalog: data.catalog, clients: clients, kioskOf: kioskOf)
        print(row(version: 1, metrics: metrics, epsilon: 0) + "   (random initial model, no shopper history yet)")
        for round in 0 ..< options.rounds {
            for k in 0 ..< options.agents {
                var events: [JSONValue] = []
                for user in users where kioskOf[user] == k {
                    let history = split.training[user]
                    let lower = history.count * round / options.rounds
                    let upper = history.count * (round + 1) / options.rounds
                    for (index, event) in history[lower ..< upper].enumerated() {
                        let ts = now - Int64(history.count - lower - index) * 1000
                        events.append(.object(["item": .string(data.catalog.ids[Int(event.item)]), "kind": .string(event.kind.name),
                                               "session": .string("shopper-\(user)"), "timestamp_ms": .integer(ts)]))
                    }
                }
                var offset = 0
                while offset < events.count {
                    let batch = Array(events[offset ..< min(events.count, offset + 500)])
                    _ = try await clients[k].post("/v1/events", body: .object(["events": .array(batch)]))
                    offset += 500
                }
            }
            let version = UInt64(round + 2)
            for k in 0 ..< options.agents { try await waitForVersion(version, client: clients[k], process: kiosks[k], seconds: 300) }
            metrics = try await evaluate(users: users, split: split, catalog: data.catalog, clients: clients, kioskOf: kioskOf)
            print(row(version: version, metrics: metrics, epsilon: try await epsilonSpent(base: base, credential: credentials[0])))
        }
        let popularity = OfflineEvaluation.popularity(itemCount: data.catalog.count, split: split)
        print("")
        print("for reference, most-popular items: HR@10 \(fixed(popularity.hitRate))  NDCG@10 \(fixed(popularity.ndcg))")
        print("every kiosk verified each version's Ed25519 signature before serving it; logs in \(work) (--keep to keep them)")
    }

    // MARK: - Steps

    private func loadData() throws -> (InteractionDataset, String) {
        if let path = options.datasetPath {
            var data = try InteractionDataset(csvAt: path, options: .init(maxItems: options.maxItems))
            let items = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/") + "/items.csv"
            try? data.loadAttributes(csvAt: items)
            if data.sequences.count > options.maxUsers {
                data = InteractionDataset(catalog: data.catalog, userIDs: Array(data.userIDs.prefix(options.maxUsers)),
                                          sequences: Array(data.sequences.prefix(options.maxUsers)))
            }
            return (data, path)
        }
        return (SyntheticShop.dataset(), "built-in example shop")
    }

    private func evaluate(users: [Int], split: LeaveLastOutSplit, catalog: Catalog, clients: [AgentClient],
                          kioskOf: [Int: Int]) async throws -> RankingMetrics {
        var metrics = RankingMetrics(cutoff: 10)
        for user in users {
            guard let target = split.test[user], let k = kioskOf[user] else { continue }
            let seen = Set(split.training[user].map(\.item))
            let want = min(1000, 10 + seen.count)
            let answer = try await clients[k].get("/v1/recommendations?session=shopper-\(user)&k=\(want)")
            var ranked: [Int32] = []
            for entry in answer.objectValue?["items"]?.arrayValue ?? [] {
                guard let id = entry.objectValue?["item"]?.stringValue, let index = catalog.index(of: id), !seen.contains(index) else { continue }
                ranked.append(index)
                if ranked.count == 10 { break }
            }
            metrics.record(ranked: ranked, target: target.item)
        }
        return metrics
    }

    private func epsilonSpent(base: String, credential: String) async throws -> Double {
        let client = CurlClient(configuration: CurlClient.Configuration(connectTimeoutMilliseconds: 2000, timeoutMilliseconds: 10_000))
        let response = try await client.perform(HTTPRequest(method: .get, url: base + "/v1/privacy",
                                                            headers: [HTTPField("Authorization", "Bearer " + credential)]))
        switch try JSONParser().parse(response.body).objectValue?["epsilon_spent"] {
        case .double(let e)?: return e
        case .integer(let e)?: return Double(e)
        default: throw DemoError("the aggregator's /v1/privacy has no epsilon_spent")
        }
    }

    private func waitForVersion(_ version: UInt64, client: AgentClient, process: Subprocess, seconds: Int = 60) async throws {
        let deadline = wallSeconds() + Double(seconds)
        while wallSeconds() < deadline {
            if let status = try? await client.get("/v1/status"), case .string(let v)? = status.objectValue?["model_version"],
               UInt64(v) ?? 0 >= version {
                return
            }
            if !process.isRunning { throw DemoError("a process exited early; see \(process.log)") }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw DemoError("model version \(version) did not reach a kiosk in \(seconds) s; see \(process.log)")
    }

    private func row(version: UInt64, metrics: RankingMetrics, epsilon: Double) -> String {
        let v = String(version)
        return String(repeating: " ", count: max(0, 7 - v.count)) + v + "  " + fixed(metrics.hitRate) + "  " + fixed(metrics.ndcg)
            + "   " + fixed(epsilon, digits: 2)
    }
}

/// A failure of the demo, with what to look at.
public struct DemoError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

func fixed(_ value: Double, digits: Int = 4) -> String {
    var scale = 1.0
    for _ in 0 ..< digits { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    var text = String(rounded)
    if let dot = text.firstIndex(of: ".") {
        let decimals = text.distance(from: dot, to: text.endIndex) - 1
        if decimals < digits { text += String(repeating: "0", count: digits - decimals) }
    } else {
        text += "." + String(repeating: "0", count: digits)
    }
    return text
}

func csvField(_ text: String) -> String {
    guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) else { return text }
    return "\"" + text.replacingQuotes() + "\""
}

extension String {
    fileprivate func replacingQuotes() -> String {
        var out = ""
        for c in self { out += c == "\"" ? "\"\"" : String(c) }
        return out
    }
}

func wallSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func writeText(_ path: String, _ text: String) throws {
    do {
        try writeFileAtomically(path, bytes: Array(text.utf8))
    } catch {
        throw DemoError("cannot write \(path): \(error)")
    }
}

func readText(_ path: String) -> String? {
    (try? readFile(path)).map { String(decoding: $0, as: UTF8.self) }
}
