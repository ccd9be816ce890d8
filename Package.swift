// swift-tools-version:6.1
import PackageDescription

/// Settings shared by every target: Swift 6 language mode, and the upcoming features that keep
/// imports and existentials explicit (as Hummingbird and swift-log do).
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "budget-gateway",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "budgetctl", targets: ["budgetctl"]),
        .executable(name: "bedrock-emulator", targets: ["bedrock-emulator"]),
        .executable(name: "budget-controld", targets: ["budget-controld"]),
        .executable(name: "budget-proxyd", targets: ["budget-proxyd"]),
        .library(name: "BudgetConfig", targets: ["BudgetConfig"]),
        .library(name: "Bedrock", targets: ["Bedrock"]),
        .library(name: "BudgetLedger", targets: ["BudgetLedger"]),
        .library(name: "DataPlane", targets: ["DataPlane"]),
        // For the micro benchmarks' control.sock round trip (Benchmarks/).
        .library(name: "ControlPlane", targets: ["ControlPlane", "BudgetWire", "BudgetStore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // JSON values with ordered members, a strict bounded parser and a serializer.
        .target(name: "BudgetJSON", swiftSettings: swiftSettings),
        // The declarative config: decK-format reading, validation, canonical state, plans.
        .target(
            name: "BudgetConfig",
            dependencies: [
                "BudgetJSON",
                // The CPUs a large file's consumers may be read on (ConfigLoader.defaultWorkers).
                "CBudgetSystem",
                // For the libyaml it bundles (its CYaml module), whose events YAMLComposer reads.
                .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // The one JSON form of entities, shared by the socket protocol and the store (versioned).
        .target(name: "EntityCodec", dependencies: ["BudgetConfig", "BudgetJSON"], swiftSettings: swiftSettings),
        // Budgets: windows, reservations, admission and usage accounting (no I/O).
        .target(name: "BudgetLedger", dependencies: ["BudgetConfig"], swiftSettings: swiftSettings),
        // The Unix-socket protocol between the daemons and budgetctl: frames, messages, a client.
        .target(
            name: "BudgetWire",
            dependencies: [
                "BudgetConfig", "BudgetLedger", "BudgetJSON", "EntityCodec",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // The control plane's durable state: config and usage counters in SQLite (GRDB, WAL).
        .target(
            name: "BudgetStore",
            dependencies: [
                "BudgetConfig", "BudgetLedger", "EntityCodec", "CBudgetSystem",
                .product(name: "GRDB", package: "GRDB.swift"),
                // SQLite's C API, for the group commit's rows (BudgetStore.insert).
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
        // C helpers for what Glibc's overlay lacks (struct ucred for SO_PEERCRED; SO_PEERGROUPS, malloc_trim, ...).
        .target(name: "CBudgetSystem"),
        // libsystemd (Debian: libsystemd-dev), and the Swift face of it.
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        .target(
            name: "Systemd",
            dependencies: ["CSystemd"],
            swiftSettings: swiftSettings
        ),
        // What every daemon needs: logging and its flags, listen addresses, Unix listeners, the watchdog.
        .target(
            name: "DaemonKit",
            dependencies: [
                "CBudgetSystem", "Systemd",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // budget-controld's wiring: the ledger and store behind the two sockets.
        .target(
            name: "ControlPlane",
            dependencies: [
                "BudgetConfig", "BudgetLedger", "BudgetWire", "BudgetStore", "DaemonKit", "CBudgetSystem", "Systemd",
                "BudgetRedis",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "budget-controld",
            dependencies: [
                "ControlPlane", "DaemonKit", "BudgetStore", "Systemd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Bedrock Runtime without I/O: SigV4, the event stream, OpenAI chat <-> Converse.
        .target(
            name: "Bedrock",
            dependencies: [
                "BudgetJSON",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // A local Bedrock Runtime that speaks the real wire format, for the demo, tests and benchmarks.
        .target(
            name: "BedrockEmulator",
            dependencies: [
                "Bedrock",
                "BudgetJSON",
                "DaemonKit",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "bedrock-emulator",
            dependencies: [
                "BedrockEmulator", "DaemonKit", "Bedrock",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // budget-proxyd's wiring: HTTP in, budgets through control.sock, Bedrock out.
        .target(
            name: "DataPlane",
            dependencies: [
                "BudgetConfig", "BudgetLedger", "BudgetWire", "BudgetJSON", "Bedrock", "DaemonKit", "Systemd",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "budget-proxyd",
            dependencies: [
                "DataPlane", "DaemonKit", "Systemd",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // A compact Redis (RESP2) client over SwiftNIO: pipelining, AUTH/ACL, SELECT, TLS, Sentinel, scripts.
        .target(
            name: "BudgetRedis",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),  // SHA-1 of scripts (EVALSHA)
            ],
            swiftSettings: swiftSettings
        ),
        // Load generators for bench/ (not installed).
        .executableTarget(
            name: "budget-bench",
            dependencies: [
                "BudgetWire", "BudgetLedger", "BudgetConfig", "DaemonKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // What budgetctl's online verbs do, apart from parsing and printing.
        .target(
            name: "BudgetAdmin",
            dependencies: [
                "BudgetConfig", "BudgetWire", "BudgetLedger", .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // The CLI: argument parsing and printing only.
        .executableTarget(
            name: "budgetctl",
            dependencies: [
                "BudgetConfig", "BudgetAdmin", "BudgetWire", "BudgetLedger", "DaemonKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // What the tests that run processes share: waiting on them off Swift's cooperative pool.
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: swiftSettings),
        .testTarget(
            name: "BudgetConfigTests",
            dependencies: ["BudgetConfig", "EntityCodec"],
            resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BudgetLedgerTests", dependencies: ["BudgetLedger", "BudgetConfig"], swiftSettings: swiftSettings),
        .testTarget(name: "BudgetJSONTests", dependencies: ["BudgetJSON"], swiftSettings: swiftSettings),
        .testTarget(name: "BedrockTests", dependencies: ["Bedrock", "BudgetJSON"], swiftSettings: swiftSettings),
        .testTarget(
            name: "BedrockEmulatorTests", dependencies: ["BedrockEmulator", "Bedrock", "BudgetJSON"],
            swiftSettings: swiftSettings),
        // budget-proxyd in process against a real emulator (in process) and a real budget-controld (a process).
        .testTarget(
            name: "DataPlaneTests",
            dependencies: [
                "DataPlane", "DaemonKit", "BedrockEmulator", "budget-controld", "budgetctl", "BudgetConfig", "BudgetWire",
                "BudgetLedger", "ControlPlane", "TestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Runs the built `budgetctl` as a process, as a user would.
        .testTarget(
            name: "BudgetctlTests",
            dependencies: [
                "budgetctl", "bedrock-emulator", "budget-controld", "budget-proxyd", "BudgetConfig", "BudgetWire",
                "BudgetLedger", "DaemonKit", "TestSupport",
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BudgetWireTests",
            dependencies: [
                "BudgetWire", "BudgetLedger", "BudgetConfig",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Against real redis-server and redis-sentinel processes (scripts/deps.sh test installs them).
        .testTarget(
            name: "BudgetRedisTests",
            dependencies: [
                "BudgetRedis", "ControlPlane", "BudgetLedger", "BudgetWire", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BudgetStoreTests",
            dependencies: [
                "BudgetStore", "BudgetConfig", "BudgetLedger", .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
