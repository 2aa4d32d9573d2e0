// swift-tools-version:6.0
import PackageDescription

// Layers, from pure to impure:
//   ProvisionerCore   models, parsing, validation, matching: no I/O, tested with tables
//   CYAML, CBlkid     C shims for libyaml and libblkid (prefixed symbols, one header each)
//   CDeviceMapper     device-mapper's ioctls with the kernel's own struct dm_ioctl
//   ProvisionerSystem everything that touches Linux: sysfs, /dev, libblkid
//   provisioner-agent the thin executable that wires them together
//   VMHarness         boots our initramfs in QEMU for device tests (provisioner-vm runs it by hand)
//   ProvisionerAPI    wire types the agent and the server share (agent-safe: FoundationEssentials only)
//   ProvisionerClient the agent's HTTPS client on SwiftNIO + NIOSSL (agent-safe)
//   ProvisionerKeys   a node's key and certificate request (agent-safe: swift-crypto, SwiftASN1)
//   ProvisionerPKI    the cluster CA and certificates (server side: swift-certificates, swift-crypto)
//   ProvisionerServer the Hummingbird app: registry, sessions, events, files, audit (server side)
let package = Package(
    name: "provisioner",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "provisioner-agent", targets: ["provisioner-agent"]),
        .executable(name: "provisionerctl", targets: ["provisionerctl"]),
        .executable(name: "provisioner-server", targets: ["provisioner-server"]),
        .library(name: "ProvisionerCore", targets: ["ProvisionerCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Agent-safe networking: NIOCore/NIOPosix/NIOHTTP1/NIOSSL do not import Foundation on Linux.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // Server side only (docs/server-api.md says why each).
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/vapor/sqlite-nio", from: "1.13.2"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        // Overlay templates, rendered on the server per node (server side only: it imports Foundation).
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
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
        .target(name: "CDeviceMapper"),
        .target(
            name: "ProvisionerSystem",
            dependencies: ["ProvisionerCore", "CBlkid", "CDeviceMapper"]
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
        // libarchive (server side only): provisionerctl imports tarballs, the server writes the cpio of
        // a kernel's modules initramfs.
        .target(name: "CArchive", linkerSettings: [.linkedLibrary("archive")]),
        .target(
            name: "ProvisionerPublish",
            dependencies: ["ProvisionerAPI", "ProvisionerClient", "ProvisionerImage"]
        ),
        .executableTarget(
            name: "provisioner-agent",
            dependencies: [
                "ProvisionerPublish",
                "ProvisionerKeys",
                "ProvisionerCore",
                "ProvisionerSystem",
                "ProvisionerImage",
                "ProvisionerClient",
                "ProvisionerAPI",
                "ProvisionerPlugins",
                "ProvisionerBoot",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // The boot flow's pure parts: kernel command line, the ESP's fallback boot files, progress text.
        .target(name: "ProvisionerBoot", dependencies: ["ProvisionerCore", "ProvisionerAPI"]),
        .testTarget(name: "ProvisionerBootTests", dependencies: ["ProvisionerBoot"]),
        // The wire types of the agent <-> server protocol (docs/server-api.md). Agent-safe.
        .target(name: "ProvisionerAPI", dependencies: ["ProvisionerCore"]),
        // The built-in node plugins (hostname, network, fstab, ssh-keys, units): pure decisions, thin writes.
        .target(name: "ProvisionerPlugins", dependencies: ["ProvisionerCore", "ProvisionerAPI"]),
        .testTarget(name: "ProvisionerPluginsTests", dependencies: ["ProvisionerPlugins"]),
        // The agent's HTTPS client: mutual TLS, JSON calls, ranged downloads, mirrors. Agent-safe.
        .target(
            name: "ProvisionerClient",
            dependencies: [
                "ProvisionerCore", "ProvisionerAPI",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // Cluster CA, server, client and admin certificates (docs/certificates.md). Server side.
        // The agent's half of the PKI: its key and certificate request, without swift-certificates
        // (which imports Foundation, and so ICU's 34 MB, into the static agent).
        .target(
            name: "ProvisionerKeys",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        .target(
            name: "ProvisionerPKI",
            dependencies: [
                "ProvisionerKeys",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        // The provisioning server as a library, so tests build the very same app.
        .target(
            name: "ProvisionerServer",
            dependencies: [
                "ProvisionerCore", "ProvisionerAPI", "ProvisionerPKI", "ProvisionerImage", "CArchive",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Mustache", package: "swift-mustache"),
            ]
        ),
        // Only reads its configuration and flags, then runs ProvisionerServer's app.
        .executableTarget(
            name: "provisioner-server",
            dependencies: [
                "ProvisionerServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The admin's command line; server-side, so it may use all of Foundation.
        .executableTarget(
            name: "provisionerctl",
            dependencies: [
                "ProvisionerCore", "ProvisionerAPI", "ProvisionerClient", "ProvisionerPKI", "ProvisionerImage", "CArchive",
                "ProvisionerPublish",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "ProvisionerServerTests",
            dependencies: [
                "ProvisionerServer", "ProvisionerClient", "ProvisionerAPI", "ProvisionerPKI", "ProvisionerCore",
                "ProvisionerImage",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "ProvisionerCoreTests", dependencies: ["ProvisionerCore"]),
        .testTarget(name: "ProvisionerSystemTests", dependencies: ["ProvisionerSystem"]),
        .testTarget(name: "ProvisionerImageTests", dependencies: ["ProvisionerImage", "CImageSys", "ProvisionerSystem"]),
        // The QEMU harness that device tests and `make demo` boot VMs with.
        .target(name: "VMHarness"),
        .executableTarget(
            name: "provisioner-vm",
            dependencies: ["VMHarness", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "VMTests", dependencies: ["VMHarness", "ProvisionerCore"]),
        // Every parser of outside input as a function of bytes; `provisioner-fuzz` runs them under
        // libFuzzer (make fuzz, docs/fuzzing.md), the tests replay the committed corpus.
        .target(
            name: "ProvisionerFuzz", dependencies: ["ProvisionerCore", "ProvisionerAPI", "ProvisionerImage", "ProvisionerBoot"]),
        .target(name: "CFuzzDriver"),
        .executableTarget(name: "provisioner-fuzz", dependencies: ["ProvisionerFuzz", "CFuzzDriver"]),
        .testTarget(name: "ProvisionerFuzzTests", dependencies: ["ProvisionerFuzz", "ProvisionerImage"]),
    ]
)
