// swift-tools-version:6.0
// Tokenizer speed: Tiller's encode of ~1 MB of English beside transformers' fast tokenizer (see run.sh).
// Sources/{COpenBLAS,TillerTensor,TillerFormats,TillerTokenizers} are symlinks into the main package, so
// this builds only what it measures:  cd bench/tokenizer && swift run -c release TokenizerBench ...
import PackageDescription

let cpuFlags: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"])]
let engineFlags: [SwiftSetting] = cpuFlags + [.unsafeFlags(["-enforce-exclusivity=unchecked"])]
let package = Package(
    name: "TokenizerBench",
    platforms: [.macOS(.v14)],
    targets: [
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .target(name: "TillerTensor", dependencies: ["COpenBLAS"], swiftSettings: engineFlags),
        .target(name: "TillerFormats", dependencies: ["TillerTensor"], swiftSettings: engineFlags),
        .target(name: "TillerTokenizers", dependencies: ["TillerFormats"], swiftSettings: engineFlags),
        .executableTarget(name: "TokenizerBench", dependencies: ["TillerTokenizers", "TillerFormats"], swiftSettings: cpuFlags),
    ],
    swiftLanguageModes: [.v5]
)
