// hearth-cross-smoke: the core and the kernels end to end, built natively (SwiftPM) and as
// Embedded Swift for aarch64 (cross/build-aarch64.sh), so the two builds' results can be compared.
//
//   hearth-cross-smoke write-model FILE          write the seeded model file
//   hearth-cross-smoke run FILE                  load it, score, rank, train, privatize, account;
//                                                print `key kind values` lines (see Report)
//   hearth-cross-smoke compare REFERENCE OTHER   compare two `run` outputs (exit 1 on a mismatch)
import CHearthSmokeSupport

func argument(_ index: Int32) -> String? {
    hearth_smoke_argument(index).map { String(cString: $0) }
}

func fail(_ message: String, status: Int32 = 1) -> Never {
    ("hearth-cross-smoke: " + message).withCString { hearth_smoke_print_error($0) }
    hearth_smoke_exit(status)
}

func readFile(_ path: String) -> [UInt8] {
    var length = 0
    guard let buffer = path.withCString({ hearth_smoke_read_file($0, &length) }) else {
        fail("cannot read \(path): \(String(cString: hearth_smoke_error()))")
    }
    defer { hearth_smoke_free(buffer) }
    return Array(UnsafeBufferPointer(start: buffer, count: length))
}

func lines(of bytes: [UInt8]) -> [String] {
    var out: [String] = []
    var start = 0
    for (position, byte) in bytes.enumerated() where byte == 0x0A {
        out.append(String(decoding: bytes[start ..< position], as: UTF8.self))
        start = position + 1
    }
    if start < bytes.count { out.append(String(decoding: bytes[start...], as: UTF8.self)) }
    return out
}

let usage = "usage: hearth-cross-smoke write-model FILE | run FILE | compare REFERENCE OTHER"
switch (argument(1), argument(2), argument(3), hearth_smoke_argument_count()) {
case ("write-model", let path?, nil, 3):
    let bytes: [UInt8]
    do throws(SmokeFailure) { bytes = try Smoke.modelFileBytes() } catch { fail(error.message) }
    let status = bytes.withUnsafeBufferPointer { buffer in
        path.withCString { hearth_smoke_write_file($0, buffer.baseAddress, buffer.count) }
    }
    if status != 0 { fail("cannot write \(path): \(String(cString: hearth_smoke_error()))") }
    print("wrote \(path): \(bytes.count) bytes, \(Smoke.itemCount) items x \(Smoke.dimension)")
case ("run", let path?, nil, 3):
    let report: Report
    do throws(SmokeFailure) { report = try Smoke.run(modelFile: readFile(path)) } catch { fail(error.message) }
    for line in report.lines { print(line) }
case ("compare", let reference?, let other?, 4):
    let comparison = Comparison(reference: lines(of: readFile(reference)), candidate: lines(of: readFile(other)))
    for line in comparison.summary { print("  " + line) }
    if !comparison.failures.isEmpty {
        for line in comparison.failures { print("  MISMATCH " + line) }
        fail("\(comparison.failures.count) result(s) differ between \(reference) and \(other)")
    }
    print("compare: \(comparison.summary.count) results agree (int and text exact, floats within tolerance)")
default:
    fail(usage, status: 2)
}
