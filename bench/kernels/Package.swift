// swift-tools-version:6.0
// Micro-benchmark of TillerTensor's kernels (matvec GB/s, panel GEMM GFLOP/s, pool overhead).
// Sources/TillerTensor and Sources/COpenBLAS are symlinks into the main package, so this builds
// only what it measures:  cd bench/kernels && swift run -c release KernelBench
import PackageDescription

let cpuFlags: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"])]
let package = Package(
    name: "KernelBench",
    targets: [
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .target(name: "TillerTensor", dependencies: ["COpenBLAS"],
                swiftSettings: cpuFlags + [.unsafeFlags(["-enforce-exclusivity=unchecked"])]),
        .executableTarget(name: "KernelBench", dependencies: ["TillerTensor", "COpenBLAS"], swiftSettings: cpuFlags),
    ],
    swiftLanguageModes: [.v5]
)
