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
        // Images: manifest, chunking, store, pack, differ and the sync engine (agent-safe:
        // FoundationEssentials only). SHA-256 from libcrypto, zstd from libzstd, both static in the agent.
        .target(name: "CImageHash", linkerSettings: [.linkedLibrary("crypto")]),
        .target(name: "CZstd", linkerSettings: [.linkedLibrary("zstd")]),
        .target(name: "CImageSys"),
        .target(
            name: "ProvisionerImage",
            dependencies: ["ProvisionerSystem", "CImageHash", "CZstd", "CImageSys"]
        ),
        // libarchive for importing tarballs (server side only: provisionerctl).
        .target(name: "CArchive", linkerSettings: [.linkedLibrary("archive")]),
        .executableTarget(
            name: "provisioner-agent",
            dependencies: [
                "ProvisionerCore",
                "ProvisionerSystem",
                "ProvisionerImage",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The admin's command line; server-side, so it may use all of Foundation.
        .executableTarget(
            name: "provisionerctl",
            dependencies: [
                "ProvisionerImage", "CArchive", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "ProvisionerCoreTests", dependencies: ["ProvisionerCore"]),
        .testTarget(name: "ProvisionerSystemTests", dependencies: ["ProvisionerSystem"]),
        .testTarget(name: "ProvisionerImageTests", dependencies: ["ProvisionerImage", "CImageSys"]),
        // The QEMU harness that device tests and `make demo` boot VMs with.
        .target(name: "VMHarness"),
        .executableTarget(
            name: "provisioner-vm",
            dependencies: ["VMHarness", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "VMTests", dependencies: ["VMHarness", "ProvisionerCore"]),
    ]
)
