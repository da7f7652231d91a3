// swift-tools-version:6.0
import PackageDescription

// Release code is built for Haswell on x86_64: Swift's default (SSE2) turns SIMD FMA into
// library calls, 15–50× slower. Other architectures keep the toolchain default.
#if arch(x86_64)
let cpuFlags: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"])]
let cpuCFlags: [CSetting] = [.unsafeFlags(["-march=haswell"])]
#else
let cpuFlags: [SwiftSetting] = []
let cpuCFlags: [CSetting] = []
#endif

// Numeric engine targets: optimised even in debug builds so that tests stay fast.
let engineFlags: [SwiftSetting] = cpuFlags + [
    .unsafeFlags(["-enforce-exclusivity=unchecked"]),
    .unsafeFlags(["-O"], .when(configuration: .debug)),
]

let package = Package(
    name: "Tiller",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "tiller", targets: ["tiller"]),
        .library(name: "TillerModels", targets: ["TillerModels"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // BLAS: OpenBLAS loaded at first use (see blas.c), Accelerate on macOS.
        .target(name: "COpenBLAS", cSettings: cpuCFlags, linkerSettings: [
            .linkedLibrary("dl", .when(platforms: [.linux])),
            .linkedFramework("Accelerate", .when(platforms: [.macOS])),
        ]),
        // AVX-512 one-row kernels, chosen at run time beside the portable Swift (AVX2) ones; optimised in
        // every configuration.
        .target(name: "CTillerKernels", cSettings: cpuCFlags + [.unsafeFlags(["-O3"])]),
        .target(name: "TillerTensor", dependencies: ["COpenBLAS", "CTillerKernels"], swiftSettings: engineFlags),
        .target(name: "TillerFormats", dependencies: ["TillerTensor"], swiftSettings: engineFlags),
        .target(name: "TillerTokenizers", dependencies: ["TillerFormats"], swiftSettings: engineFlags),
        .target(name: "TillerModels", dependencies: ["TillerTensor", "TillerFormats", "TillerTokenizers"], swiftSettings: engineFlags),
        .target(name: "TillerSteering", dependencies: ["TillerModels", "TillerFormats"], resources: [.copy("Resources")], swiftSettings: engineFlags),
        // The one bridge between synchronous and asynchronous code (judges, CLI, server shutdown).
        .target(name: "TillerAsync", swiftSettings: cpuFlags),
        // Judges (OpenAI-compatible HTTP and local engine) and their SQLite cache.
        .target(name: "TillerEval", dependencies: [
            "TillerAsync", "TillerModels", "TillerTokenizers", "TillerSteering", .product(name: "GRDB", package: "GRDB.swift"),
        ], resources: [.copy("Resources")], swiftSettings: cpuFlags),
        // `tiller serve`: OpenAI-compatible HTTP server with per-request steering.
        .target(name: "TillerServer", dependencies: [
            "TillerAsync", "TillerModels", "TillerTokenizers", "TillerFormats", "TillerSteering",
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ], swiftSettings: cpuFlags),
        // Experiments (the steering sweep and the whole-experiment tables): experiment files, sweeps, results
        // database, selection and reports.
        .target(name: "TillerExperiment", dependencies: [
            "TillerSteering", "TillerEval", "TillerModels", "TillerTokenizers", "TillerFormats",
            .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Yams", package: "Yams"),
        ], swiftSettings: cpuFlags),
        .executableTarget(
            name: "tiller",
            dependencies: [
                "TillerSteering", "TillerModels", "TillerFormats", "TillerTokenizers", "TillerTensor",
                "TillerEval", "TillerServer", "TillerExperiment",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: cpuFlags
        ),
        // The parsers' fuzz driver (tools/fuzz/run.sh; not run by CI).
        .executableTarget(name: "tiller-fuzz", dependencies: ["TillerTensor", "TillerFormats", "TillerTokenizers", "TillerModels", "TillerSteering", "TillerExperiment", "TillerServer"],
                          path: "tools/fuzz", exclude: ["seeds", "make_seeds.py", "run.sh", "README.md"], swiftSettings: cpuFlags),
        // Test helpers shared by the test targets that load the real default models.
        .target(name: "TillerTestSupport", dependencies: ["TillerModels", "TillerFormats", "TillerTokenizers"],
                path: "Tests/TillerTestSupport", swiftSettings: cpuFlags),
        .testTarget(name: "TillerTensorTests", dependencies: ["TillerTensor"], resources: [.copy("Fixtures")], swiftSettings: cpuFlags),
        .testTarget(name: "TillerFormatsTests", dependencies: ["TillerFormats", "TillerTestSupport"], resources: [.copy("Fixtures")], swiftSettings: cpuFlags),
        .testTarget(name: "TillerTokenizersTests", dependencies: ["TillerTokenizers"], resources: [.copy("Fixtures")], swiftSettings: cpuFlags),
        .testTarget(name: "TillerSteeringTests", dependencies: ["TillerSteering", "TillerTestSupport"], resources: [.copy("Fixtures")], swiftSettings: cpuFlags),
        .testTarget(name: "TillerModelsTests", dependencies: ["TillerModels", "TillerTestSupport"], resources: [.copy("Fixtures")], swiftSettings: cpuFlags),
        .testTarget(name: "TillerEvalTests", dependencies: ["TillerEval", "TillerServer", "TillerTestSupport"], resources: [.copy("Fixtures")], swiftSettings: cpuFlags),
        .testTarget(name: "TillerExperimentTests", dependencies: [
            "TillerExperiment", "TillerFormats", "TillerSteering", .product(name: "GRDB", package: "GRDB.swift"),
        ], swiftSettings: cpuFlags),
        .testTarget(name: "TillerServerTests", dependencies: [
            "TillerAsync", "TillerServer", "TillerModels", "TillerSteering", "TillerTokenizers", "TillerTestSupport"], swiftSettings: cpuFlags),
    ],
    swiftLanguageModes: [.v5]
)
