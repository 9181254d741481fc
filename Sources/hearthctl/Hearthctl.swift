import ArgumentParser

/// `hearthctl`: the Hearth control tool. Later issues add `status` and friends; the differential
/// privacy engine lives under `hearthctl dp`.
@main
struct Hearthctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hearthctl",
        abstract: "Hearth control tool.",
        subcommands: [DP.self]
    )
}
