import HearthConfig
import HearthLocalAPI
import HearthPrivacy
import HearthUploader
import Logging

/// The device's participation in each model version: one coin per version, flipped once from
/// the system's secure generator with the plan's q (`ParticipationCoin`), and remembered, so
/// asking again for the same version never re-rolls it.
public struct ParticipationLog: Sendable {
    private var decided: [UInt64: Bool] = [:]

    public init() {}

    /// Whether this device takes part in `version` at sampling rate `q`.
    public mutating func participates<R: RandomNumberGenerator>(version: UInt64, samplingRate q: Double, using rng: inout R) -> Bool {
        if let known = decided[version] { return known }
        if decided.count > 64 { decided.removeAll() }
        guard let coin = try? ParticipationCoin(samplingRate: q) else {
            decided[version] = false
            return false
        }
        let outcome = coin.flip(using: &rng)
        decided[version] = outcome
        return outcome
    }
}

/// Fetches `GET /v1/plan` with the device credential (the training service asks before every
/// round; the simulator's over-HTTP devices use it too).
public struct PlanClient: Sendable {
    /// The aggregator's base URL.
    public let baseURL: String
    let client: CurlClient
    let logger: Logger

    public init(baseURL: String, client: CurlClient, logger: Logger) {
        self.baseURL = baseURL
        self.client = client
        self.logger = logger
    }

    /// The client for the aggregator of `configuration` (`upload.aggregator_url`).
    init(configuration: AgentConfiguration, client: CurlClient, logger: Logger) {
        self.init(baseURL: configuration.aggregatorURL, client: client, logger: logger)
    }

    /// The plan, or nil when the request fails, is refused or does not parse (logged).
    public func fetch(credential: String) async -> ServerPlan? {
        let request = HTTPRequest(method: .get, url: baseURL + "/v1/plan",
                                  headers: [HTTPField("Authorization", "Bearer " + credential), HTTPField("Accept", "application/json")])
        do {
            let response = try await client.perform(request)
            guard response.status == 200 else {
                logger.warning("plan request refused", metadata: ["status": "\(response.status)", "reason": "\(response.header("X-Hearth-Reason") ?? "")"])
                return nil
            }
            guard let json = try? JSONParser().parse(response.body), let plan = ServerPlan(json: json) else {
                logger.warning("the aggregator's plan is not a valid plan document")
                return nil
            }
            return plan
        } catch {
            logger.debug("plan request failed", metadata: ["error": "\(error)"])
            return nil
        }
    }
}
