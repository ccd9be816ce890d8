// swift-tools-version:6.1
// Micro benchmarks (ordo-one/benchmark), a package apart so that the main build and CI do not build the
// benchmark framework. Run: cd Benchmarks && swift package benchmark   (see ../bench/README.md)
import PackageDescription

let package = Package(
    name: "budget-gateway-benchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "budget-gateway", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        .executableTarget(
            name: "HotPath",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "BudgetConfig", package: "budget-gateway"),
                .product(name: "BudgetLedger", package: "budget-gateway"),
                .product(name: "Bedrock", package: "budget-gateway"),
                .product(name: "DataPlane", package: "budget-gateway"),
                .product(name: "ControlPlane", package: "budget-gateway"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Benchmarks/HotPath",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ],
    swiftLanguageModes: [.v6]
)
