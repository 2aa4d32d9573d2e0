// swift-tools-version:6.0
import PackageDescription

// Layers, from pure to impure:
//   ProvisionerCore   models, parsing, validation, matching: no I/O, tested with tables
//   CBlkid            the libblkid C shim (prefixed symbols, one header)
//   ProvisionerSystem everything that touches Linux: sysfs, /dev, libblkid
//   provisioner-agent the thin executable that wires them together
let package = Package(
    name: "provisioner",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "provisioner-agent", targets: ["provisioner-agent"]),
        .library(name: "ProvisionerCore", targets: ["ProvisionerCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        .target(
            name: "ProvisionerCore",
            dependencies: [.product(name: "Yams", package: "Yams")]
        ),
        .target(
            name: "CBlkid",
            linkerSettings: [.linkedLibrary("blkid")]
        ),
        .target(
            name: "ProvisionerSystem",
            dependencies: ["ProvisionerCore", "CBlkid"]
        ),
        .executableTarget(
            name: "provisioner-agent",
            dependencies: [
                "ProvisionerCore",
                "ProvisionerSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "ProvisionerCoreTests", dependencies: ["ProvisionerCore"]),
        .testTarget(name: "ProvisionerSystemTests", dependencies: ["ProvisionerSystem"]),
        .target(name: "VMHarness", dependencies: ["ProvisionerCore"], path: "Tests/VMHarness"),
        .testTarget(name: "VMTests", dependencies: ["VMHarness", "ProvisionerCore"]),
    ]
)
