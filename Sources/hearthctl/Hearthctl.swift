import ArgumentParser

/// `hearthctl`: the Hearth control tool. The operator commands (`status`, `recommend`, `rank`,
/// `events import`, `privacy`, `profile`, `forget`) talk to the agent's socket; the
/// differential privacy engine lives under `hearthctl dp`.
@main
struct Hearthctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hearthctl",
        abstract: "Hearth control tool.",
        subcommands: [Status.self, Recommend.self, Rank.self, Events.self, Privacy.self, Profile.self, Forget.self, DP.self]
    )
}
