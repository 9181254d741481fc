#if canImport(Glibc)
import Glibc
#endif
import HearthAgent
import HearthTestSupport
import Testing

@Suite("System probes")
struct SystemProbesTests {
    func put(_ path: String, _ text: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = text.utf8CString.withUnsafeBufferPointer { Glibc.write(fd, $0.baseAddress, $0.count - 1) }
        close(fd)
    }

    @Test("load average from a /proc/loadavg-shaped file; unreadable is nil")
    func loadAverage() throws {
        try withTemporaryDirectory { dir in
            put(dir + "/loadavg", "0.42 0.30 0.25 1/123 4567\n")
            #expect(SystemProbes(loadAveragePath: dir + "/loadavg").loadAverage() == 0.42)
            #expect(SystemProbes(loadAveragePath: dir + "/missing").loadAverage() == nil)
            // The real one on this machine.
            #expect(SystemProbes().loadAverage() != nil)
        }
    }

    @Test("power: mains online, battery only, and no supplies at all")
    func power() throws {
        try withTemporaryDirectory { dir in
            #expect(SystemProbes(powerSupplyDirectory: dir).onMainsPower() == nil)
            mkdir(dir + "/BAT0", 0o755)
            put(dir + "/BAT0/type", "Battery\n")
            put(dir + "/BAT0/status", "Discharging\n")
            mkdir(dir + "/AC", 0o755)
            put(dir + "/AC/type", "Mains\n")
            put(dir + "/AC/online", "0\n")
            #expect(SystemProbes(powerSupplyDirectory: dir).onMainsPower() == false)
            put(dir + "/AC/online", "1\n")
            #expect(SystemProbes(powerSupplyDirectory: dir).onMainsPower() == true)
            #expect(SystemProbes(powerSupplyDirectory: dir + "/nope").onMainsPower() == nil)
        }
    }

    @Test("minute of day is within a day")
    func minuteOfDay() {
        let minute = SystemProbes.minuteOfDay(unixSeconds: 1_700_000_000)
        #expect((0 ..< 1440).contains(minute))
    }
}
