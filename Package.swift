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
    ],
    targets: [
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .target(name: "TillerTensor", dependencies: ["COpenBLAS"], swiftSettings: engineFlags),
        .target(name: "TillerFormats", dependencies: ["TillerTensor"], swiftSettings: engineFlags),
        .target(name: "TillerTokenizers", dependencies: ["TillerFormats"], swiftSettings: engineFlags),
        .target(name: "TillerModels", dependencies: ["TillerTensor", "TillerFormats", "TillerTokenizers"], swiftSettings: engineFlags),
        .target(name: "TillerSteering", dependencies: ["TillerModels", "TillerFormats"], resources: [.copy("Resources")], swiftSettings: engineFlags),
        .executableTarget(
            name: "tiller",
            dependencies: [
                "TillerSteering", "TillerModels", "TillerFormats", "TillerTokenizers", "TillerTensor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: cpuFlags
        ),
        .testTarget(name: "TillerTensorTests", dependencies: ["TillerTensor"], resources: [.copy("Fixtures")], swiftSettings: cpuFlags),
        .testTarget(name: "TillerFormatsTests", dependencies: ["TillerFormats"], resources: [.copy("Fixtures")], swiftSettings: cpuFlags),
        .testTarget(name: "TillerTokenizersTests", dependencies: ["TillerTokenizers"], resources: [.copy("Fixtures")], swiftSettings: cpuFlags),
        .testTarget(name: "TillerSteeringTests", dependencies: ["TillerSteering"], resources: [.copy("Fixtures")], swiftSettings: cpuFlags),
        .testTarget(name: "TillerModelsTests", dependencies: ["TillerModels"], resources: [.copy("Fixtures")], swiftSettings: cpuFlags),
    ],
    swiftLanguageModes: [.v5]
)
