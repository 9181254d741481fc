// swift-tools-version:6.1
import PackageDescription

/// Hearth: private, on-device product recommendations.
///
/// Layers, bottom up:
/// - `CHearthKernels`: int8 scoring kernels (scalar oracle, AVX2, AVX-VNNI, NEON, NEON dotprod),
///   run-time dispatch and top-K. Plain C, no dependencies.
/// - `CHearthSQLite`, `CHearthCurl`: system-library targets with typed shims for C variadics.
/// - `HearthCore`: the pure core (catalogue, model, training, quantisation, ranking, model file).
///   No I/O and no Foundation; clock and randomness are injected. Also compiles as Embedded Swift.
/// - `HearthDatasets`: reads dataset CSVs from disk (I/O) for the tools and tests.
/// - Executables parse arguments and call the libraries.
let package = Package(
    name: "Hearth",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "HearthCore", targets: ["HearthCore"]),
        .executable(name: "hearth-bench", targets: ["hearth-bench"]),
        .executable(name: "hearth-demo", targets: ["hearth-demo"]),
        .executable(name: "hearthctl", targets: ["hearthctl"]),
        .executable(name: "hearth-agent", targets: ["hearth-agent"]),
        .executable(name: "hearth-fetch", targets: ["hearth-fetch"]),
        .executable(name: "hearth-aggregator", targets: ["hearth-aggregator"]),
        .executable(name: "hearth-sim", targets: ["hearth-sim"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        // The aggregator's HTTP server. No default traits: they pull in full Foundation (ICU)
        // and swift-configuration, neither of which the aggregator uses.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        .target(
            name: "CHearthKernels",
            cSettings: [
                // Bit-exactness between kernels needs the same float operations in the same order:
                // no FMA contraction anywhere in the shared epilogue.
                .unsafeFlags(["-ffp-contract=off", "-O2"]),
            ]
        ),
        .target(name: "CHearthMath"),
        .target(name: "CHearthMemory"),
        .target(name: "CHearthSpawn"),
        // The core and the kernels end to end, built natively here and as Embedded Swift for
        // aarch64 by cross/build-aarch64.sh, which compares the two builds' results.
        .target(name: "CHearthSmokeSupport", path: "cross/smoke-support"),
        .executableTarget(
            name: "hearth-cross-smoke",
            dependencies: ["HearthCore", "HearthPrivacy", "CHearthKernels", "CHearthSmokeSupport"],
            path: "cross/smoke",
            // The core's libm calls (CHearthMath, and `rounded()` in debug builds); the other
            // executables get libm through Foundation or Glibc, which this one does not import.
            linkerSettings: [.linkedLibrary("m")]
        ),
        .target(
            name: "HearthLocalAPI",
            dependencies: [
                "HearthCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "HearthLocalAPITests",
            dependencies: [
                "HearthLocalAPI", "HearthTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ]
        ),
        .target(name: "HearthSystemd", dependencies: [.product(name: "Logging", package: "swift-log")]),
        .target(name: "HearthConfig"),
        // Durable file writes (fsync, rename, directory fsync) for the agent, aggregator, uploader and tools.
        .target(name: "HearthFiles"),
        .testTarget(name: "HearthFilesTests", dependencies: ["HearthFiles", "HearthTestSupport"]),
        .target(
            name: "HearthAgent",
            dependencies: [
                "HearthCore", "HearthPrivacy", "HearthConfig", "HearthSystemd",
                "HearthStore", "HearthLocalAPI", "HearthUploader", "HearthFiles", "CHearthMemory",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "HearthAgentTests",
            dependencies: [
                // The end-to-end tests spawn the built `hearth-agent` and `hearth-aggregator`;
                // depending on them builds them first.
                "HearthAgent", "HearthTestSupport", "HearthCore", "HearthPrivacy", "HearthLocalAPI", "HearthUploader",
                "HearthCurl", "HearthProcess", "CHearthSpawn", "HearthStore", "HearthConfig", "HearthAggregator",
                "HearthAggregation", "hearth-agent", "hearth-fetch", "hearth-aggregator",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            // A test-only TLS certificate and key for 127.0.0.1 (never used outside tests).
            exclude: ["Fixtures"]
        ),
        .executableTarget(
            name: "hearth-agent",
            dependencies: [
                "HearthAgent", "HearthConfig", "HearthLocalAPI", "HearthSystemd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "HearthAggregator",
            dependencies: [
                "HearthCore", "HearthPrivacy", "HearthAggregation", "HearthStore", "HearthConfig", "HearthLocalAPI",
                "HearthFiles", "CHearthSQLite",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "hearth-aggregator",
            dependencies: [
                "HearthAggregator", "HearthConfig", "HearthDatasets", "HearthCore", "HearthLocalAPI", "HearthSystemd",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "HearthAggregatorTests",
            dependencies: [
                "HearthAggregator", "HearthTestSupport", "HearthCore", "HearthPrivacy", "HearthAggregation", "HearthConfig",
                "HearthStore",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "HearthConfigTests", dependencies: ["HearthConfig"]),
        .testTarget(name: "HearthSystemdTests", dependencies: ["HearthSystemd"]),
        .target(name: "HearthPrivacy", dependencies: ["CHearthMath"]),
        // HTTP messages, errors, the client and the agent <-> hearth-fetch framing; links nothing.
        .target(name: "HearthHTTP"),
        // libcurl in process (the tools, tests and hearth-fetch; never the agent).
        .target(name: "HearthCurl", dependencies: ["CHearthCurl", "HearthHTTP"]),
        // The agent's HTTP exchanges with its aggregator, one short-lived process each, so that
        // hearth-agent does not map libcurl and its TLS libraries (docs/agent.md).
        .executableTarget(name: "hearth-fetch", dependencies: ["HearthCurl", "HearthHTTP"]),
        .target(
            name: "HearthUploader",
            dependencies: [
                "HearthHTTP", "HearthCore", "HearthPrivacy", "HearthFiles", "CHearthSpawn",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(
            name: "HearthUploaderTests",
            dependencies: [
                "HearthUploader", "HearthCurl", "HearthCore", "HearthPrivacy", "HearthTestSupport", "HearthProcess", "hearth-fetch",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .executableTarget(
            name: "hearthctl",
            dependencies: [
                "HearthPrivacy", "HearthControl",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(name: "HearthControl", dependencies: ["HearthCore", "HearthUploader", "HearthCurl", "HearthLocalAPI"]),
        .testTarget(
            name: "HearthControlTests",
            dependencies: [
                "HearthControl", "HearthLocalAPI", "HearthCore", "HearthTestSupport",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "HearthPrivacyTests", dependencies: ["HearthPrivacy", "HearthTestSupport"]),
        .target(name: "HearthAggregation", dependencies: ["HearthCore", "HearthPrivacy", "CHearthMath"]),
        .testTarget(name: "HearthAggregationTests", dependencies: ["HearthAggregation", "HearthCore", "HearthPrivacy", "HearthTestSupport"]),
        .target(name: "CHearthBench", cSettings: [.unsafeFlags(["-O2"])]),
        .systemLibrary(
            name: "CHearthSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .systemLibrary(
            name: "CHearthCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        .target(
            name: "HearthCore",
            dependencies: ["CHearthKernels", "CHearthMath"]
        ),
        .target(
            name: "HearthDatasets",
            dependencies: ["HearthCore", "HearthFiles"]
        ),
        .target(
            name: "HearthTestSupport",
            dependencies: ["HearthCore", "HearthDatasets", "HearthLocalAPI", "HearthPrivacy", "HearthHTTP", "CHearthSQLite"]
        ),
        .executableTarget(
            name: "hearth-bench",
            dependencies: [
                "HearthCore", "HearthDatasets", "CHearthBench", "HearthUploader", "HearthCurl", "HearthPrivacy", "CHearthSpawn",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "hearth-demo",
            dependencies: [
                "HearthCore", "HearthDatasets", "HearthDemoRunner",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(
            name: "HearthDemoRunner",
            dependencies: ["HearthCore", "HearthDatasets", "HearthControl", "HearthLocalAPI", "HearthUploader", "HearthCurl", "HearthProcess"]
        ),
        // Child processes and a real `hearth-aggregator` on loopback (the demo, hearth-sim --over-http).
        .target(name: "HearthProcess", dependencies: ["CHearthSpawn"]),
        .testTarget(
            name: "HearthKernelTests",
            dependencies: ["CHearthKernels", "HearthCore", "HearthTestSupport"]
        ),
        .testTarget(
            name: "HearthCoreTests",
            dependencies: ["HearthCore", "HearthDatasets", "HearthTestSupport"]
        ),
        .testTarget(
            name: "SystemLibraryTests",
            dependencies: ["CHearthSQLite", "CHearthCurl"]
        ),
        .target(name: "HearthStore", dependencies: ["CHearthSQLite", "HearthCore", "HearthPrivacy"]),
        .testTarget(name: "HearthStoreTests", dependencies: ["HearthStore", "HearthTestSupport"]),
        // hearth-sim: the federation simulated in process on the real training, privacy and
        // aggregation code (docs/results.md).
        // --over-http drives the agent's upload, plan and model code against a real aggregator process.
        .target(
            name: "HearthSimulation",
            dependencies: [
                "HearthCore", "HearthPrivacy", "HearthAggregation", "HearthDatasets",
                "HearthAgent", "HearthConfig", "HearthUploader", "HearthCurl", "HearthLocalAPI", "HearthProcess",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "hearth-sim",
            dependencies: [
                "HearthSimulation", "HearthCore", "HearthDatasets", "HearthProcess",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "HearthSimulationTests",
            // The --over-http test starts the built `hearth-aggregator`; depending on it builds it first.
            dependencies: ["HearthSimulation", "HearthCore", "HearthPrivacy", "HearthAggregation", "HearthDatasets", "HearthProcess",
                           "HearthTestSupport",
                           "hearth-aggregator", .product(name: "Logging", package: "swift-log")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
