#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The libFuzzer entry points shared by every target in Tests/Fuzz. Each target directory holds
// one file defining `enum FuzzTarget` with `run(_:)` (one input; returns normally unless a
// property fails, which is a crash) and `seeds()` (valid inputs made by the real encoders, written
// to the corpus by `scripts/fuzz.sh --write-seeds`). Built by scripts/fuzz.sh, not by SwiftPM.

/// libFuzzer's per-input callback: runs the target on a copy of the bytes. Never returns non-zero.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FuzzTarget.run(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

/// libFuzzer's start-up callback. With `HEARTH_FUZZ_WRITE_SEEDS=DIR` in the environment, writes
/// the target's generated seeds into DIR and exits instead of fuzzing.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> CInt {
    guard let directory = getenv("HEARTH_FUZZ_WRITE_SEEDS").map({ String(cString: $0) }) else { return 0 }
    var status: Int32 = 0
    for (name, bytes) in FuzzTarget.seeds() {
        let path = directory + "/" + name
        guard let file = fopen(path, "wb") else {
            print("cannot open \(path) for writing")
            status = 1
            continue
        }
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        if fclose(file) != 0 || written != bytes.count {
            print("cannot write \(path)")
            status = 1
            continue
        }
        print("wrote \(path) (\(bytes.count) bytes)")
    }
    exit(status)
}

/// Stops the run as a crash when a property the parser promises does not hold: libFuzzer
/// records the input that broke it.
func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("property violated: " + message()) }
}

/// Little-endian store of the low `width` bytes of `value` at `offset`.
func putLE(_ value: UInt64, into bytes: inout [UInt8], at offset: Int, width: Int) {
    for i in 0 ..< width { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> UInt64(8 * i)) }
}

/// Little-endian load of `width` bytes at `offset`.
func getLE(_ bytes: [UInt8], at offset: Int, width: Int) -> UInt64 {
    var value: UInt64 = 0
    for i in (0 ..< width).reversed() { value = value << 8 | UInt64(bytes[offset + i]) }
    return value
}
