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
        .library(name: "BudgetConfig", targets: ["BudgetConfig"]),
        .library(name: "Bedrock", targets: ["Bedrock"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        // JSON values with ordered members, a strict bounded parser and a serializer.
        .target(name: "BudgetJSON", swiftSettings: swiftSettings),
        // The declarative config: decK-format reading, validation, canonical state, plans.
        .target(
            name: "BudgetConfig",
            dependencies: [
                "BudgetJSON",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // Budgets: windows, reservations, admission and usage accounting (no I/O).
        .target(name: "BudgetLedger", swiftSettings: swiftSettings),
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
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "bedrock-emulator",
            dependencies: [
                "BedrockEmulator",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // The CLI: argument parsing and printing only.
        .executableTarget(
            name: "budgetctl",
            dependencies: [
                "BudgetConfig",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BudgetConfigTests",
            dependencies: ["BudgetConfig"],
            resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "BudgetLedgerTests", dependencies: ["BudgetLedger"], swiftSettings: swiftSettings),
        .testTarget(name: "BudgetJSONTests", dependencies: ["BudgetJSON"], swiftSettings: swiftSettings),
        .testTarget(name: "BedrockTests", dependencies: ["Bedrock", "BudgetJSON"], swiftSettings: swiftSettings),
        .testTarget(
            name: "BedrockEmulatorTests", dependencies: ["BedrockEmulator", "Bedrock", "BudgetJSON"],
            swiftSettings: swiftSettings),
        // Runs the built `budgetctl` as a process, as a user would.
        .testTarget(
            name: "BudgetctlTests",
            dependencies: ["budgetctl", "bedrock-emulator", "BudgetConfig"],
            swiftSettings: swiftSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
