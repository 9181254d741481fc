#if canImport(Glibc)
import Glibc
#endif

/// Reads the device conditions the training scheduler needs from Linux: load average, power
/// supply, local time. Paths are injectable so tests can fake a board's `/proc` and `/sys`.
public struct SystemProbes: Sendable {
    public var loadAveragePath: String
    public var powerSupplyDirectory: String

    public init(loadAveragePath: String = "/proc/loadavg", powerSupplyDirectory: String = "/sys/class/power_supply") {
        self.loadAveragePath = loadAveragePath
        self.powerSupplyDirectory = powerSupplyDirectory
    }

    /// The 1-minute load average, or nil when it cannot be read.
    public func loadAverage() -> Double? {
        guard let text = readSmallFile(loadAveragePath), let first = text.split(separator: " ").first else { return nil }
        return Double(first)
    }

    /// true when a mains adapter (`type` Mains/USB/USB_C, `online` 1) is connected; false when
    /// the board has power supplies but none of them online as mains (running on battery);
    /// nil when the board reports no power supplies at all (always-on kiosks).
    public func onMainsPower() -> Bool? {
        guard let directory = opendir(powerSupplyDirectory) else { return nil }
        defer { closedir(directory) }
        var sawSupply = false
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasPrefix(".") { continue }
            let base = powerSupplyDirectory + "/" + name
            guard let type = readSmallFile(base + "/type")?.trimmedLine() else { continue }
            sawSupply = true
            if ["Mains", "USB", "USB_C", "USB_PD"].contains(type), readSmallFile(base + "/online")?.trimmedLine() == "1" {
                return true
            }
        }
        return sawSupply ? false : nil
    }

    /// Minutes since local midnight for a Unix time in seconds.
    public static func minuteOfDay(unixSeconds: Int) -> Int {
        var time = time_t(unixSeconds)
        var parts = tm()
        guard localtime_r(&time, &parts) != nil else { return 0 }
        return Int(parts.tm_hour) * 60 + Int(parts.tm_min)
    }
}

/// The contents of a small text file (at most 4 KiB), or nil.
func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 4096)
    let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard count >= 0 else { return nil }
    return String(decoding: buffer[0 ..< count], as: UTF8.self)
}

extension String {
    func trimmedLine() -> String {
        var s = Substring(self)
        while let last = s.last, last == "\n" || last == " " || last == "\r" { s = s.dropLast() }
        return String(s)
    }
}
