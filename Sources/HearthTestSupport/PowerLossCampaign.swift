#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Drives a power-loss simulation: a recording `PowerLossVFS`, a directory for the store under
/// test, and the power-loss images built from its cuts, each in a fresh directory.
///
/// Parameters from the environment (so a failure can be reproduced and the harness shown to
/// catch loss without a permanent test that asserts it):
/// - `HEARTH_POWER_SEED`: the seed (default: the test's own);
/// - `HEARTH_POWER_SYNCHRONOUS`: `NORMAL` (or `OFF`) makes the test weaken the store's
///   `synchronous` after opening it; acknowledged commits are then lost in some images and the
///   test fails, which is the point of the demonstration.
public final class PowerLossCampaign {
    /// The recording VFS (its name is unique to this campaign).
    public let vfs: PowerLossVFS
    /// Where the store under test lives (opened through `vfs`).
    public let storeDirectory: String
    /// Drives the choice of each image's surviving writes.
    public var random: PowerLossRandom
    /// Drives the test's operations (apart from `random`, so the operations do not depend on
    /// how many unsynced writes the images drew from: the same seed gives the same operations
    /// under `HEARTH_POWER_SYNCHRONOUS=NORMAL` as under FULL).
    public var operations: PowerLossRandom
    /// The seed in use (printed with the results).
    public let seed: UInt64
    /// The `synchronous` setting the test should force, nil to keep the store's own (FULL).
    public let weakenedSynchronous: String?
    /// Cuts taken and images built and checked so far.
    public private(set) var cuts = 0
    public private(set) var images = 0
    /// Images per tearing mode.
    public private(set) var imagesByTearing: [PowerLossTearing: Int] = [:]
    private let root: String
    private var nextImage = 0

    /// A campaign named `name` (unique among the tests running at once), seeded by
    /// `HEARTH_POWER_SEED` or `defaultSeed`, with automatic cuts at `cutProbability` per I/O event.
    public init(name: String, defaultSeed: UInt64, cutProbability: Double) throws {
        let chosenSeed = environment("HEARTH_POWER_SEED").flatMap { UInt64($0) } ?? defaultSeed
        seed = chosenSeed
        random = PowerLossRandom(seed: chosenSeed ^ 0x5EED_0F_1A55)
        operations = PowerLossRandom(seed: chosenSeed ^ 0x0BE2_A710)
        let synchronous = environment("HEARTH_POWER_SYNCHRONOUS")?.uppercased()
        weakenedSynchronous = (synchronous == nil || synchronous == "FULL") ? nil : synchronous
        root = try makeTemporaryDirectory(prefix: "hearth-power")
        storeDirectory = root + "/store"
        mkdir(storeDirectory, 0o700)
        // Registered VFS names are process-wide: one per campaign name and seed.
        vfs = try PowerLossVFS(name: "hearth-power-\(name)-\(chosenSeed)", seed: chosenSeed)
        vfs.automaticCutProbability = cutProbability
    }

    deinit {
        vfs.unregister()
        removeTree(root)
    }

    /// Builds one image per snapshot (tearing modes in turn) in a fresh directory and runs
    /// `check` on it; the directory is removed afterwards.
    public func examine(_ snapshots: [PowerLossSnapshot], _ check: (String) throws -> Void) throws {
        for snapshot in snapshots {
            cuts += 1
            let tearing = PowerLossTearing.allCases[nextImage % PowerLossTearing.allCases.count]
            let directory = root + "/image-\(nextImage)"
            nextImage += 1
            guard mkdir(directory, 0o700) == 0 else {
                throw PowerLossError("cannot create \(directory): \(String(cString: strerror(errno)))")
            }
            defer { removeTree(directory) }
            try snapshot.materialize(into: directory, tearing: tearing, random: &random)
            try check(directory)
            images += 1
            imagesByTearing[tearing, default: 0] += 1
        }
    }

    /// "whole N, sectors N, garbage N".
    public var tearingSummary: String {
        "whole writes \(imagesByTearing[.wholeWrites] ?? 0), sectors \(imagesByTearing[.sectors] ?? 0), "
            + "sectors with garbage \(imagesByTearing[.sectorsWithGarbage] ?? 0)"
    }
}

private func environment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    let text = String(cString: value)
    return text.isEmpty ? nil : text
}

/// A fresh directory in /dev/shm when it is there (the images are many and small; the
/// simulation, not the disk, decides what survives), else in /tmp.
private func makeTemporaryDirectory(prefix: String) throws -> String {
    let parent = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
    var template = Array("\(parent)/\(prefix)-XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { buffer -> String? in
        guard let base = buffer.baseAddress, let result = mkdtemp(base) else { return nil }
        return String(cString: result)
    }
    guard let made else { throw PowerLossError("mkdtemp in \(parent) failed: \(String(cString: strerror(errno)))") }
    return made
}
