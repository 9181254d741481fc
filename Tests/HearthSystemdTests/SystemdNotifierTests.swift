#if canImport(Glibc)
import Glibc
#endif
import HearthSystemd
import Testing

/// A datagram socket standing in for systemd's notify socket.
private final class FakeSystemd {
    let path: String
    let fd: Int32

    init(path: String) throws {
        self.path = path
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The next datagram as text, or nil after the 2 s timeout.
    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else { return nil }
        return String(decoding: buffer[0 ..< count], as: UTF8.self)
    }

    deinit {
        close(fd)
        unlink(path)
    }
}

@Suite("systemd notify protocol")
struct SystemdNotifierTests {
    @Test("READY, STATUS, WATCHDOG and STOPPING arrive as datagrams on NOTIFY_SOCKET")
    func notifications() throws {
        let fake = try FakeSystemd(path: "/tmp/hearth-notify-\(getpid()).sock")
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": fake.path])
        try notifier.ready(status: "serving 3000 items")
        #expect(fake.receive() == "READY=1\nSTATUS=serving 3000 items")
        try notifier.watchdog()
        #expect(fake.receive() == "WATCHDOG=1")
        try notifier.status("training\nround 4")
        #expect(fake.receive() == "STATUS=training round 4")
        try notifier.stopping()
        #expect(fake.receive() == "STOPPING=1")
    }

    @Test("without NOTIFY_SOCKET every call is a no-op")
    func outsideSystemd() throws {
        let notifier = SystemdNotifier(environment: [:])
        #expect(notifier.socketPath == nil)
        try notifier.ready()
        try notifier.watchdog()
    }

    @Test("a notify socket nobody listens on is a clear error")
    func deadSocket() {
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/tmp/hearth-no-such-\(getpid()).sock"])
        #expect(throws: SystemdError.sendFailed("")) { try notifier.ready() }
        let tooLong = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/tmp/" + String(repeating: "x", count: 200)])
        #expect(throws: SystemdError.invalidSocket("")) { try tooLong.ready() }
    }

    @Test("the watchdog interval applies only to the process WATCHDOG_PID names",
          arguments: [(nil, UInt64(30_000_000)), ("1", nil), ("self", UInt64(30_000_000))] as [(String?, UInt64?)])
    func watchdogInterval(pid: String?, expected: UInt64?) {
        var environment = ["WATCHDOG_USEC": "30000000"]
        if let pid { environment["WATCHDOG_PID"] = pid == "self" ? String(getpid()) : pid }
        let notifier = SystemdNotifier(environment: environment)
        #expect(notifier.watchdogMicroseconds == expected)
        #expect(notifier.pingIntervalMicroseconds == expected.map { $0 / 2 })
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "0"]).watchdogMicroseconds == nil)
    }
}
