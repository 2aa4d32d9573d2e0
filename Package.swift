// swift-tools-version:6.0
import PackageDescription

// Layers, from pure to impure:
//   ProvisionerCore   models, parsing, validation, matching: no I/O, tested with tables
//   CYAML, CBlkid     C shims for libyaml and libblkid (prefixed symbols, one header each)
//   ProvisionerSystem everything that touches Linux: sysfs, /dev, libblkid
//   provisioner-agent the thin executable that wires them together
//   VMHarness         boots our initramfs in QEMU for device tests (provisioner-vm runs it by hand)
let package = Package(
    name: "provisioner",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "provisioner-agent", targets: ["provisioner-agent"]),
        .executable(name: "provisionerctl", targets: ["provisionerctl"]),
        .library(name: "ProvisionerCore", targets: ["ProvisionerCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0")
    ],
    targets: [
        .target(
            name: "CYAML",
            linkerSettings: [.linkedLibrary("yaml")]
        ),
        .target(
            name: "ProvisionerCore",
            dependencies: ["CYAML"]
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
        // The admin's command line; server-side, so it may use all of Foundation.
        .executableTarget(
            name: "provisionerctl",
            dependencies: [.product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "ProvisionerCoreTests", dependencies: ["ProvisionerCore"]),
        .testTarget(name: "ProvisionerSystemTests", dependencies: ["ProvisionerSystem"]),
        // The QEMU harness that device tests and `make demo` boot VMs with.
        .target(name: "VMHarness"),
        .executableTarget(
            name: "provisioner-vm",
            dependencies: ["VMHarness", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "VMTests", dependencies: ["VMHarness", "ProvisionerCore"]),
    ]
)
