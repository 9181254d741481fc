#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import CHearthBench
import CHearthSpawn
import HearthCore
import HearthDatasets
import HearthPrivacy
import HearthCurl
import HearthUploader

/// Aggregator load (issue 5): a real `hearth-aggregator serve` on loopback, a fleet enrolled with
/// `devices add --count`, and one valid privatized update per device uploaded through libcurl
/// from concurrent tasks. Reports accepted updates/s, client-side latency of `POST /v1/updates`,
/// versions published and the server's resident memory (idle and peak).
struct AggregatorLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aggregator",
        abstract: "Load a real hearth-aggregator on loopback: one privatized update per device, through libcurl.",
        discussion: """
            Creates a temporary state directory and configuration (plain HTTP on 127.0.0.1, local \
            mode, q = 1, 16 bits), runs `hearth-aggregator init` on a generated catalogue whose \
            items x (dim + 1) is close to --params, enrols --devices devices with `devices add \
            bench --count N`, starts `serve`, uploads, reads the server's VmHWM and stops it with \
            SIGTERM. Exits 1 if any upload is not accepted, the server does not exit 0, or the \
            run exceeds --seconds-limit.
            """)

    @Option(help: "Devices to enrol; each uploads one update.") var devices: Int = 1_000
    @Option(help: "Model size to aim for: the catalogue gets round(params / (dim + 1)) items.") var params: Int = 100_000
    @Option(help: "Embedding width of the generated model.") var dim: Int = 32
    @Option(help: "Uploads in flight at once.") var concurrency: Int = 8
    @Option(help: "FedBuff buffer size K: a version is published every K accepted updates.") var buffer: Int = 100
    @Option(help: "Distinct privatized updates to cycle through (each device changes only the key and CRC).") var distinct: Int = 4
    @Option(name: .customLong("seconds-limit"), help: "Give up (exit 1) when the whole run takes longer.") var secondsLimit: Double = 120
    @Option(help: "The hearth-aggregator binary (default: the one next to this hearth-bench).") var aggregator: String?
    @Option(help: "Seed for the update contents.") var seed: UInt64 = 1
    @Flag(help: "Keep the temporary state directory (its path is printed).") var keep = false
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard devices >= 1, dim >= 1, params >= dim + 1 else {
            throw ValidationError("--devices and --dim must be positive and --params at least dim + 1")
        }
        guard (1 ... 256).contains(concurrency) else { throw ValidationError("--concurrency must be in 1...256") }
        guard (1 ... 100_000).contains(buffer) else { throw ValidationError("--buffer must be in 1...100000") }
        guard distinct >= 1 else { throw ValidationError("--distinct must be positive") }
        guard secondsLimit > 0, secondsLimit.isFinite else { throw ValidationError("--seconds-limit must be positive") }
        // Every update declares model version 1, so it is devices / buffer versions stale at most.
        guard devices / buffer <= 1_000 else {
            throw ValidationError("--devices / --buffer must be at most 1000 (the aggregator's largest max_staleness)")
        }
    }

    func run() async throws {
        let deadline = hearth_bench_now_ns() + UInt64(secondsLimit * 1e9)
        var directory: String?
        defer { if let directory, !keep { removeTree(directory) } }
        do {
            let binary = try aggregator ?? siblingExecutable("hearth-aggregator")
            let made = try makeTemporaryDirectory()
            directory = made
            if keep { writeStderr("hearth-bench: state in \(made)\n") }
            let report = try await measure(binary: binary, directory: made, deadline: deadline)
            print(json ? report.json : report.table)
            if !report.problems.isEmpty {
                for problem in report.problems.prefix(20) { writeStderr("hearth-bench: \(problem)\n") }
                throw ExitCode(1)
            }
        } catch let error as BenchError {
            writeStderr("hearth-bench: \(error.message)\n")
            throw ExitCode(1)
        }
    }

    /// The whole run: set-up, enrolment, server start, uploads, memory readings, shutdown.
    private func measure(binary: String, directory: String, deadline: UInt64) async throws(BenchError) -> LoadReport {
        let items = max(1, Int((Double(params) / Double(dim + 1)).rounded()))
        let dimension = items * (dim + 1)
        let catalog = directory + "/items.csv"
        var csv = "item_id\n"
        for i in 0 ..< items { csv += "item-\(i)\n" }
        try writeText(catalog, csv)
        let config = directory + "/aggregator.toml"
        try writeText(config, configurationText(directory: directory))

        _ = try await runToCompletion(binary, ["init", "--config", config, "--catalog", catalog, "--dim", String(dim)],
                                      directory: directory, name: "init", deadline: deadline)
        let enrolStart = hearth_bench_now_ns()
        let fleet = try await runToCompletion(binary, ["devices", "add", "bench", "--count", String(devices), "--config", config],
                                              directory: directory, name: "enrol", deadline: deadline)
        let enrolSeconds = seconds(since: enrolStart)
        let credentials = try parseFleet(fleet)

        let envelopes = try makeEnvelopes(dimension: dimension)

        let portFile = directory + "/port"
        let server = try Child(binary, ["serve", "--config", config, "--port-file", portFile],
                               stdout: directory + "/serve.out", stderr: directory + "/serve.log")
        do {
            let port = try await waitForPort(portFile, server: server, log: directory + "/serve.log", deadline: deadline)
            try await Task.sleep(for: .seconds(1))
            let idle = try ProcessStatus(pid: server.pid)
            let base = "http://127.0.0.1:\(port)"
            let cpuBefore = try processCPUSeconds(server.pid)

            let uploadStart = hearth_bench_now_ns()
            let outcome = await upload(url: base + "/v1/updates", envelopes: envelopes, credentials: credentials, deadline: deadline)
            let uploadSeconds = seconds(since: uploadStart)

            let cpuAfter = try processCPUSeconds(server.pid)
            let metrics = await scrapeMetrics(base)
            let loaded = try ProcessStatus(pid: server.pid)   // VmHWM just before SIGTERM
            let stopStart = hearth_bench_now_ns()
            server.signal(SIGTERM)
            let status = await server.wait(until: hearth_bench_now_ns() + 30_000_000_000)
            let stopSeconds = seconds(since: stopStart)
            if status == nil { server.signal(SIGKILL); _ = await server.wait(until: hearth_bench_now_ns() + 5_000_000_000) }

            var problems = outcome.failures
            if outcome.notAttempted > 0 {
                problems.append("\(outcome.notAttempted) uploads not attempted: --seconds-limit \(secondsLimit) reached")
            }
            let exitStatus = status.flatMap(processExitCode)
            if exitStatus != 0 {
                problems.append("the aggregator did not exit 0 on SIGTERM (status \(status.map { "\($0)" } ?? "none: killed after 30 s")); log: \(directory)/serve.log")
            }
            let expectedVersions = outcome.accepted / buffer
            let published = metrics.modelVersion.map { $0 - 1 }
            if published != expectedVersions {
                problems.append("expected \(expectedVersions) published versions, /metrics says model version \(metrics.modelVersion.map { "\($0)" } ?? "?")")
            }
            if metrics.accepted != outcome.accepted {
                problems.append("the client counted \(outcome.accepted) accepted, /metrics says \(metrics.accepted.map { "\($0)" } ?? "?")")
            }
            return LoadReport(
                devices: devices, items: items, dim: dim, parameters: dimension, envelopeBytes: envelopes[0].count,
                concurrency: concurrency, buffer: buffer, enrolSeconds: enrolSeconds, uploadSeconds: uploadSeconds,
                accepted: outcome.accepted, notAccepted: devices - outcome.accepted, latenciesNanoseconds: outcome.latencies,
                versionsPublished: published ?? 0, highestPublishedInAnswers: outcome.highestPublished,
                idleRSSKiB: idle.rssKiB, peakKiB: loaded.hwmKiB, finalRSSKiB: loaded.rssKiB,
                serverCPUSeconds: cpuAfter - cpuBefore, clientPrepareSeconds: Double(outcome.prepareNanoseconds) / 1e9,
                stopSeconds: stopSeconds, exitCode: exitStatus, problems: problems)
        } catch {
            server.signal(SIGKILL)
            _ = await server.wait(until: hearth_bench_now_ns() + 5_000_000_000)
            throw error as? BenchError ?? BenchError("\(error)")
        }
    }

    /// The configuration: loopback plain HTTP, ephemeral port, limits that refuse nothing.
    private func configurationText(directory: String) -> String {
        """
        [server]
        host = "127.0.0.1"
        port = 0
        state_directory = "\(directory)/state"
        signing_key = "\(directory)/signing.key"
        updates_per_device_per_hour = 3600
        [plan]
        sampling_rate = 1.0
        clip_norm = 1.0
        noise_multiplier = 1.0
        mode = "local"
        unit = "device"
        bit_width = 16
        max_staleness = 1000
        [fedbuff]
        buffer_size = \(buffer)
        minimum_updates = 1
        round_deadline_seconds = 86400
        [privacy]
        epsilon_budget = 1000000000.0

        """
    }

    /// Checks `devices add --count` output: one `bench-i<TAB>hrth_...` line per device, in order.
    private func parseFleet(_ output: String) throws(BenchError) -> [String] {
        let lines = output.split(separator: "\n", omittingEmptySubsequences: true)
        guard lines.count == devices else {
            throw BenchError("devices add --count \(devices) printed \(lines.count) lines")
        }
        var credentials: [String] = []
        credentials.reserveCapacity(devices)
        for (i, line) in lines.enumerated() {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count == 2, fields[0] == "bench-\(i)", fields[1].hasPrefix("hrth_"), fields[1].utf8.count == 69 else {
                throw BenchError("devices add --count: line \(i + 1) is not 'bench-\(i)<TAB>hrth_<64 hex>'")
            }
            credentials.append(String(fields[1]))
        }
        return credentials
    }

    /// `distinct` privatized updates made exactly as an agent makes one (local mode, device unit).
    private func makeEnvelopes(dimension: Int) throws(BenchError) -> [[UInt8]] {
        let privacy = PrivacyConfiguration(clipNorm: 1, noiseMultiplier: 1, bitWidth: 16, mode: .local, unit: .device)
        var rng = Xoshiro256(seed: seed)
        var envelopes: [[UInt8]] = []
        do throws(PrivacyError) {
            let privatizer = try UpdatePrivatizer(configuration: privacy, dimension: dimension)
            for _ in 0 ..< min(distinct, devices) {
                let raw = (0 ..< dimension).map { _ in Float.random(in: -0.05 ... 0.05, using: &rng) }
                let update = try privatizer.privatize(update: raw, using: &rng)
                let key = try IdempotencyKey(bytes: [UInt8](repeating: 0, count: IdempotencyKey.byteCount))
                envelopes.append(try UpdateEnvelope(update: update, configuration: privacy, modelVersion: 1, samplingRate: 1,
                                                    idempotencyKey: key).encode())
            }
        } catch {
            throw BenchError("cannot privatize a \(dimension)-parameter update: \(error)")
        }
        return envelopes
    }

    /// Uploads one update per device from `concurrency` tasks; task w takes devices w, w + c, ...
    private func upload(url: String, envelopes: [[UInt8]], credentials: [String], deadline: UInt64) async -> UploadOutcome {
        let client = CurlClient(configuration: CurlClient.Configuration(connectTimeoutMilliseconds: 10_000,
                                                                        timeoutMilliseconds: 60_000, userAgent: "hearth-bench"))
        let devices = self.devices, stride = concurrency
        return await withTaskGroup(of: UploadOutcome.self) { group in
            for worker in 0 ..< stride {
                group.addTask {
                    await uploadSlice(first: worker, stride: stride, devices: devices, client: client, url: url,
                                      envelopes: envelopes, credentials: credentials, deadline: deadline)
                }
            }
            var total = UploadOutcome()
            for await part in group { total.merge(part) }
            return total
        }
    }
}

/// What the upload tasks saw.
struct UploadOutcome: Sendable {
    var accepted = 0
    var notAttempted = 0
    var highestPublished: UInt64 = 0
    var latencies: [UInt64] = []
    var prepareNanoseconds: UInt64 = 0
    var failures: [String] = []

    mutating func merge(_ other: UploadOutcome) {
        accepted += other.accepted
        notAttempted += other.notAttempted
        highestPublished = max(highestPublished, other.highestPublished)
        latencies += other.latencies
        prepareNanoseconds += other.prepareNanoseconds
        failures += other.failures
    }
}

/// Uploads devices `first`, `first + stride`, ...: each sends envelope `i % count` with its own
/// idempotency key (bytes 64..<80) and the CRC-32 recomputed; nothing else changes.
func uploadSlice(first: Int, stride: Int, devices: Int, client: CurlClient, url: String, envelopes: [[UInt8]],
                 credentials: [String], deadline: UInt64) async -> UploadOutcome {
    var outcome = UploadOutcome()
    var device = first
    while device < devices {
        let started = hearth_bench_now_ns()
        guard started < deadline else {
            outcome.notAttempted += (devices - device + stride - 1) / stride
            break
        }
        var body = envelopes[device % envelopes.count]
        let key = benchmarkKey(device)
        body.replaceSubrange(UpdateEnvelope.headerSize - IdempotencyKey.byteCount ..< UpdateEnvelope.headerSize, with: key)
        let crc = body.withUnsafeBytes { CRC32.checksum(UnsafeRawBufferPointer(rebasing: $0[..<($0.count - 4)])) }
        for j in 0 ..< 4 { body[body.count - 4 + j] = UInt8(truncatingIfNeeded: crc >> UInt32(8 * j)) }
        let sent = hearth_bench_now_ns()
        outcome.prepareNanoseconds += sent - started
        let request = HTTPRequest(
            method: .post, url: url,
            headers: [HTTPField("Content-Type", UpdateEnvelope.contentType), HTTPField("Idempotency-Key", hex(key)),
                      HTTPField("Authorization", "Bearer " + credentials[device])],
            body: body, timeoutMilliseconds: deadline > sent ? Int((deadline - sent) / 1_000_000) + 1 : 1)
        do {
            let response = try await client.perform(request)
            outcome.latencies.append(hearth_bench_now_ns() - sent)
            if (200 ..< 300).contains(response.status), response.header("Idempotent-Replayed") == nil {
                outcome.accepted += 1
                if let version = publishedVersion(response.body) { outcome.highestPublished = max(outcome.highestPublished, version) }
            } else {
                let reason = response.header("X-Hearth-Reason") ?? String(decoding: response.body.prefix(200), as: UTF8.self)
                outcome.failures.append("bench-\(device): HTTP \(response.status) \(reason)")
            }
        } catch {
            outcome.failures.append("bench-\(device): \(error)")
        }
        device += stride
    }
    return outcome
}

/// Device `i`'s idempotency key: its index (little-endian) and the tag "hrthbnch".
func benchmarkKey(_ device: Int) -> [UInt8] {
    (0 ..< 8).map { UInt8(truncatingIfNeeded: UInt64(device) >> UInt64(8 * $0)) } + Array("hrthbnch".utf8)
}

func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// `published_version` from `{"status":"accepted","published_version":N|null}`.
func publishedVersion(_ body: [UInt8]) -> UInt64? {
    integer(after: "\"published_version\":", in: String(decoding: body, as: UTF8.self))
}

/// The unsigned integer right after `marker` in `text` (spaces allowed), if any.
func integer(after marker: String, in text: String) -> UInt64? {
    guard let range = text.firstRange(of: marker) else { return nil }
    let digits = text[range.upperBound...].drop(while: { $0 == " " }).prefix(while: { $0.isASCII && $0.isNumber })
    return UInt64(digits)
}

/// The two counters the benchmark cross-checks against `GET /metrics`.
struct MetricsSnapshot {
    var accepted: Int?
    var modelVersion: Int?
}

func scrapeMetrics(_ base: String) async -> MetricsSnapshot {
    let client = CurlClient(configuration: CurlClient.Configuration(timeoutMilliseconds: 10_000, userAgent: "hearth-bench"))
    guard let response = try? await client.perform(HTTPRequest(method: .get, url: base + "/metrics", maxResponseBytes: 1 << 20)),
          response.status == 200 else { return MetricsSnapshot() }
    var snapshot = MetricsSnapshot()
    for line in String(decoding: response.body, as: UTF8.self).split(separator: "\n") {
        let fields = line.split(separator: " ")
        guard fields.count == 2 else { continue }
        let value = Double(fields[1]).map { Int($0) }
        if fields[0] == "hearth_updates_accepted_total" { snapshot.accepted = value }
        if fields[0] == "hearth_model_version" { snapshot.modelVersion = value }
    }
    return snapshot
}

// MARK: - Report

/// The figures of one run.
struct LoadReport {
    var devices: Int
    var items: Int
    var dim: Int
    var parameters: Int
    var envelopeBytes: Int
    var concurrency: Int
    var buffer: Int
    var enrolSeconds: Double
    var uploadSeconds: Double
    var accepted: Int
    var notAccepted: Int
    var latenciesNanoseconds: [UInt64]
    var versionsPublished: Int
    var highestPublishedInAnswers: UInt64
    var idleRSSKiB: Int
    var peakKiB: Int
    var finalRSSKiB: Int
    var serverCPUSeconds: Double
    var clientPrepareSeconds: Double
    var stopSeconds: Double
    var exitCode: Int32?
    var problems: [String]

    var updatesPerSecond: Double { Double(accepted) / uploadSeconds }
    var megabytesPerSecond: Double { Double(accepted * envelopeBytes) / uploadSeconds / 1e6 }

    /// Nearest-rank percentile of the latencies, in milliseconds.
    func latency(_ p: Double) -> Double {
        let sorted = latenciesNanoseconds.sorted()
        guard !sorted.isEmpty else { return 0 }
        let rank = max(1, Int((p * Double(sorted.count)).rounded(.up)))
        return Double(sorted[min(rank, sorted.count) - 1]) / 1e6
    }

    var table: String {
        func mib(_ kib: Int) -> String { "\(rounded(Double(kib) / 1024, places: 10)) MiB (\(kib) kB)" }
        return """
            aggregator load: \(devices) devices, \(items) items x \(dim) (+ bias) = \(parameters) parameters, \
            \(envelopeBytes)-byte updates (16 bits), \(concurrency) concurrent uploads, K = \(buffer)
            | figure | measured |
            | --- | --- |
            | accepted updates | \(accepted) of \(devices) in \(rounded(uploadSeconds)) s: \(rounded(updatesPerSecond, places: 10)) updates/s (\(rounded(megabytesPerSecond, places: 10)) MB/s) |
            | POST /v1/updates latency (client) | p50 \(rounded(latency(0.5), places: 10)) ms, p99 \(rounded(latency(0.99), places: 10)) ms, max \(rounded(latency(1), places: 10)) ms |
            | versions published | \(versionsPublished) |
            | server RSS idle (1 s after start) | \(mib(idleRSSKiB)) |
            | server peak (VmHWM before SIGTERM) | \(mib(peakKiB)) |
            | server RSS before SIGTERM | \(mib(finalRSSKiB)) |
            | server CPU during uploads | \(rounded(serverCPUSeconds, places: 100)) s |
            | client key + CRC preparation | \(rounded(clientPrepareSeconds, places: 100)) s in all |
            | enrolment (devices add --count) | \(rounded(enrolSeconds, places: 100)) s |
            | SIGTERM to exit | \(rounded(stopSeconds, places: 100)) s, exit code \(exitCode.map { "\($0)" } ?? "none") |
            """
    }

    var json: String {
        let fields = [
            "\"benchmark\": \"aggregator\"", "\"devices\": \(devices)", "\"items\": \(items)", "\"dim\": \(dim)",
            "\"parameters\": \(parameters)", "\"envelope_bytes\": \(envelopeBytes)", "\"concurrency\": \(concurrency)",
            "\"buffer\": \(buffer)", "\"accepted\": \(accepted)", "\"not_accepted\": \(notAccepted)",
            "\"upload_seconds\": \(rounded(uploadSeconds))", "\"updates_per_second\": \(rounded(updatesPerSecond))",
            "\"megabytes_per_second\": \(rounded(megabytesPerSecond))",
            "\"latency_ms\": {\"p50\": \(rounded(latency(0.5))), \"p99\": \(rounded(latency(0.99))), \"max\": \(rounded(latency(1)))}",
            "\"versions_published\": \(versionsPublished)",
            "\"server_idle_rss_kib\": \(idleRSSKiB)", "\"server_peak_kib\": \(peakKiB)", "\"server_final_rss_kib\": \(finalRSSKiB)",
            "\"server_cpu_seconds\": \(rounded(serverCPUSeconds))", "\"client_prepare_seconds\": \(rounded(clientPrepareSeconds))",
            "\"enrol_seconds\": \(rounded(enrolSeconds))", "\"stop_seconds\": \(rounded(stopSeconds))",
            "\"server_exit_code\": \(exitCode.map { "\($0)" } ?? "null")", "\"ok\": \(problems.isEmpty)",
        ]
        return "{" + fields.joined(separator: ", ") + "}"
    }
}

// MARK: - Processes and files

/// A failure of the benchmark's own machinery (set-up, a child process, a file).
struct BenchError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// A child process started with posix_spawn, stdout and stderr to files.
final class Child: Sendable {
    let pid: pid_t

    init(_ executable: String, _ arguments: [String], stdout: String, stderr: String) throws(BenchError) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        let closeFrom = hearth_spawn_close_from(&actions, 3)
        guard closeFrom == 0 else { throw BenchError("cannot close descriptors for \(executable): \(String(cString: strerror(closeFrom)))") }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, nil, argv, environ)
        guard rc == 0 else { throw BenchError("cannot start \(executable): \(String(cString: strerror(rc)))") }
        pid = child
    }

    func signal(_ signal: Int32) { kill(pid, signal) }

    /// The wait status once the child has exited, or nil if it is still running at `deadline`
    /// (`hearth_bench_now_ns` time).
    func wait(until deadline: UInt64) async -> Int32? {
        while true {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { return status }
            if r < 0 && errno != EINTR { return nil }
            if hearth_bench_now_ns() >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// The exit code of a wait status, or nil when the process was killed by a signal.
func processExitCode(_ status: Int32) -> Int32? {
    (status & 0x7F) == 0 ? (status >> 8) & 0xFF : nil
}

/// Runs `executable arguments` to completion (before `deadline`); returns its stdout. Throws with
/// its stderr when it fails.
func runToCompletion(_ executable: String, _ arguments: [String], directory: String, name: String,
                     deadline: UInt64) async throws(BenchError) -> String {
    let out = directory + "/\(name).out", err = directory + "/\(name).err"
    let child = try Child(executable, arguments, stdout: out, stderr: err)
    guard let status = await child.wait(until: deadline) else {
        child.signal(SIGKILL)
        _ = await child.wait(until: hearth_bench_now_ns() + 5_000_000_000)
        throw BenchError("hearth-aggregator \(arguments[0]) did not finish within --seconds-limit")
    }
    guard processExitCode(status) == 0 else {
        throw BenchError("hearth-aggregator \(arguments.joined(separator: " ")) failed (status \(status)): \(text(err))")
    }
    return text(out)
}

/// Waits for `serve --port-file` to write its port.
func waitForPort(_ path: String, server: Child, log: String, deadline: UInt64) async throws(BenchError) -> Int {
    let limit = min(deadline, hearth_bench_now_ns() + 60_000_000_000)
    while hearth_bench_now_ns() < limit {
        if let line = text(path).split(separator: "\n").first, let port = Int(line), port > 0 { return port }
        if let status = await server.wait(until: 0) {
            throw BenchError("hearth-aggregator serve exited early (status \(status)): \(text(log))")
        }
        try? await Task.sleep(for: .milliseconds(20))
    }
    throw BenchError("hearth-aggregator serve never wrote its port: \(text(log))")
}

/// The resident-memory lines of `/proc/PID/status`, in kB.
struct ProcessStatus {
    var rssKiB = 0
    var hwmKiB = 0

    init(pid: pid_t) throws(BenchError) {
        let status = text("/proc/\(pid)/status")
        guard !status.isEmpty else { throw BenchError("cannot read /proc/\(pid)/status") }
        for line in status.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, let value = Int(fields[1]) else { continue }
            if fields[0] == "VmRSS:" { rssKiB = value }
            if fields[0] == "VmHWM:" { hwmKiB = value }
        }
    }
}

/// User + system CPU time of `pid` so far (`/proc/PID/stat` utime and stime).
func processCPUSeconds(_ pid: pid_t) throws(BenchError) -> Double {
    let stat = text("/proc/\(pid)/stat")
    guard let end = stat.lastIndex(of: ")") else { throw BenchError("cannot read /proc/\(pid)/stat") }
    let fields = stat[stat.index(after: end)...].split(separator: " ")
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else {
        throw BenchError("unexpected /proc/\(pid)/stat")
    }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// The file at `path` as text ("" when unreadable).
func text(_ path: String) -> String {
    (try? readFile(path)).map { String(decoding: $0, as: UTF8.self) } ?? ""
}

func writeText(_ path: String, _ contents: String) throws(BenchError) {
    do {
        try writeFileAtomically(path, bytes: Array(contents.utf8))
    } catch {
        throw BenchError("cannot write \(path): \(error)")
    }
}

func seconds(since start: UInt64) -> Double { Double(hearth_bench_now_ns() - start) / 1e9 }

/// `name` in the directory of the running executable (`/proc/self/exe`).
func siblingExecutable(_ name: String) throws(BenchError) -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { throw BenchError("cannot read /proc/self/exe; pass --aggregator") }
    let path = String(decoding: buffer[0 ..< n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
    let sibling = directory + "/" + name
    guard access(sibling, X_OK) == 0 else { throw BenchError("no executable \(sibling); build it or pass --aggregator") }
    return sibling
}

/// A new private directory under $TMPDIR (or /tmp).
func makeTemporaryDirectory() throws(BenchError) -> String {
    let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    var template = Array((base + "/hearth-bench-aggregator-XXXXXX").utf8CString)
    guard let made = mkdtemp(&template) else { throw BenchError("mkdtemp failed: \(String(cString: strerror(errno)))") }
    return String(cString: made)
}

/// Removes `path` and everything under it (no symlinks followed).
func removeTree(_ path: String) {
    var info = stat()
    guard lstat(path, &info) == 0 else { return }
    if (info.st_mode & S_IFMT) == S_IFDIR, let dir = opendir(path) {
        var children: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { children.append(path + "/" + name) }
        }
        closedir(dir)
        children.forEach(removeTree)
        rmdir(path)
    } else {
        unlink(path)
    }
}

/// Writes `text` to stderr.
func writeStderr(_ text: String) {
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
