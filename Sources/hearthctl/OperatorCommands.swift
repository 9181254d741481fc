#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import HearthControl

/// Options every operator command takes.
struct AgentOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The agent's socket (default: $HEARTH_SOCKET, else \(AgentSocket.defaultPath)).",
                                            valueName: "path"))
    var socket: String?

    @Flag(name: .long, help: "Print the agent's JSON (for scripts) instead of text.")
    var json = false

    /// The commands against the chosen socket.
    var commands: ControlCommands { ControlCommands(socketPath: AgentSocket.resolve(option: socket)) }
}

/// Runs one operator command: prints its output, or the error on stderr with its exit code
/// (3 when the agent is unreachable, 1 otherwise).
func runControl(_ body: () async throws(ControlError) -> String) async throws {
    do throws(ControlError) {
        print(try await body())
    } catch {
        var message = "hearthctl: \(error.message)\n"
        message.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
        throw ExitCode(error.exitCode)
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The agent's state: model version, kernel, events, outbox, last upload, privacy budget.")

    @OptionGroup var agent: AgentOptions

    func run() async throws {
        try await runControl { () async throws(ControlError) -> String in try await agent.commands.status(json: agent.json) }
    }
}

struct Recommend: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Top-k recommendations for a session.")

    @Option(name: .long, help: "The shopper session id.")
    var session: String
    @Option(name: .long, help: "How many items (1...1000; the agent's default is 10).")
    var k: Int?
    @Option(name: .long, help: ArgumentHelp("Item ids never to recommend, comma-separated.", valueName: "a,b"))
    var exclude: String?
    @OptionGroup var agent: AgentOptions

    func run() async throws {
        let excluded = (exclude ?? "").split(separator: ",").map(String.init).filter { !$0.isEmpty }
        try await runControl { () async throws(ControlError) -> String in
            try await agent.commands.recommend(session: session, k: k, exclude: excluded, json: agent.json)
        }
    }
}

struct Rank: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Re-rank the given items for a session.")

    @Option(name: .long, help: "The shopper session id.")
    var session: String
    @Argument(help: "Candidate item ids.")
    var items: [String]
    @OptionGroup var agent: AgentOptions

    func validate() throws {
        if items.isEmpty { throw ValidationError("give at least one item to rank") }
    }

    func run() async throws {
        try await runControl { () async throws(ControlError) -> String in
            try await agent.commands.rank(session: session, items: items, json: agent.json)
        }
    }
}

struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Event log operations.", subcommands: [Import.self])

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import",
            abstract: "Import events from a CSV (header item,kind,session,timestamp_ms[,quantity]) in batches of 500."
        )

        @Argument(help: ArgumentHelp("The CSV file.", valueName: "file.csv"))
        var file: String
        @OptionGroup var agent: AgentOptions

        func run() async throws {
            try await runControl { () async throws(ControlError) -> String in
                let csv = try EventCSV(contentsOf: file)
                return try await agent.commands.importEvents(csv, source: file, json: agent.json)
            }
        }
    }
}

struct Privacy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The privacy ledger: epsilon spent, budget, delta and entries.")

    @OptionGroup var agent: AgentOptions

    func run() async throws {
        try await runControl { () async throws(ControlError) -> String in try await agent.commands.privacy(json: agent.json) }
    }
}

struct Profile: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The device's local interest profile (never uploaded).")

    @OptionGroup var agent: AgentOptions

    func run() async throws {
        try await runControl { () async throws(ControlError) -> String in try await agent.commands.profile(json: agent.json) }
    }
}

struct Forget: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Erase all events and local state on this device (needs --yes).")

    @Flag(name: .long, help: "Confirm the erasure.")
    var yes = false
    @OptionGroup var agent: AgentOptions

    func run() async throws {
        try await runControl { () async throws(ControlError) -> String in
            try await agent.commands.forget(confirmed: yes, json: agent.json)
        }
    }
}
