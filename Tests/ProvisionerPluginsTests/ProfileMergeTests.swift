import Foundation
import ProvisionerCore
import Testing

@testable import ProvisionerAPI
@testable import ProvisionerPlugins

/// Profile merging (ProvisionerAPI's `ProfileMerge`) and the admin plugins' decisions, as tables.
@Suite struct ProfileMergeTests {
    static let profiles: [String: Profile] = [
        "base": Profile(
            name: "base",
            fields: NodeFields(
                image: ImageRef(name: "debian12"), mode: .stateless, kernelArgs: ["console=ttyS0"], overlays: ["hosts"],
                vars: ["site": "a", "rack": "r0"])),
        "compute": Profile(
            name: "compute", profiles: ["base"],
            fields: NodeFields(syncVerify: .stamp, overlays: ["site"], vars: ["rack": "r1"])),
        "gpu": Profile(
            name: "gpu", fields: NodeFields(image: ImageRef(name: "cuda"), kernelArgs: ["nouveau.modeset=0"])),
        "loopA": Profile(name: "loopA", profiles: ["loopB"]),
        "loopB": Profile(name: "loopB", profiles: ["loopA"]),
        "self": Profile(name: "self", profiles: ["self"]),
    ]

    /// (profiles, node's own fields) → (field, expected value as JSON, expected source)
    static let merges: [([String], NodeFields, [(String, String, String)])] = [
        ([], NodeFields(), [("mode", "\"stateful\"", "default"), ("image", "null", "default")]),
        (
            ["base"], NodeFields(),
            [
                ("mode", "\"stateless\"", "profile base"), ("image", "{\"name\":\"debian12\"}", "profile base"),
                ("overlays.hosts", "\"hosts\"", "profile base"),
            ]
        ),
        (
            ["compute"], NodeFields(mode: .stateful),
            [
                ("mode", "\"stateful\"", "node"), ("syncVerify", "\"stamp\"", "profile compute"),
                ("vars.rack", "\"r1\"", "profile compute"), ("vars.site", "\"a\"", "profile base"),
                ("overlays.site", "\"site\"", "profile compute"),
            ]
        ),
        (
            ["compute", "gpu"], NodeFields(vars: ["rack": "r9"]),
            [
                ("image", "{\"name\":\"cuda\"}", "profile gpu"),
                ("kernelArgs", "[\"nouveau.modeset=0\"]", "profile gpu"),
                ("vars.rack", "\"r9\"", "node"),
            ]
        ),
        (
            ["gpu", "compute"], NodeFields(),
            [
                ("image", "{\"name\":\"debian12\"}", "profile base"),
                ("kernelArgs", "[\"console=ttyS0\"]", "profile base"),
            ]
        ),
        (
            ["base"], NodeFields(overlays: ["mine", "hosts"]),
            [("overlays.mine", "\"mine\"", "node"), ("overlays.hosts", "\"hosts\"", "profile base")]
        ),
    ]

    @Test(arguments: merges.indices)
    func mergesWithProvenance(_ index: Int) throws {
        let (names, own, expected) = Self.merges[index]
        let node = NodeDefinition(name: "n001", profiles: names, fields: own)
        let (config, sources) = try ProfileMerge.resolve(node, profiles: Self.profiles)
        #expect(config.profiles == names)
        for (field, value, source) in expected {
            let found = sources.first { $0.field == field }
            #expect(found?.value == value, "\(field)")
            #expect(found?.source == source, "\(field)")
        }
    }

    @Test func overlaysAddUpInOrderEachOnce() throws {
        let node = NodeDefinition(name: "n1", profiles: ["compute"], fields: NodeFields(overlays: ["mine", "hosts"]))
        #expect(try ProfileMerge.resolve(node, profiles: Self.profiles).config.overlays == ["hosts", "site", "mine"])
    }

    static let refusals: [([String], ProfileError.Problem, String)] = [
        (["nope"], .unknownProfile, "node n1: node n1 lists profile nope, which does not exist"),
        (["loopA"], .cycle, "node n1: profiles include each other: loopA -> loopB -> loopA"),
        (["self"], .cycle, "node n1: profiles include each other: self -> self"),
    ]

    @Test(arguments: refusals)
    func refusesUnknownProfilesAndCycles(_ names: [String], _ problem: ProfileError.Problem, _ message: String) {
        let node = NodeDefinition(name: "n1", profiles: names)
        #expect(
            throws: ProfileError(
                problem: problem, subject: "node n1", detail: String(message.dropFirst("node n1: ".count)))
        ) {
            try ProfileMerge.resolve(node, profiles: Self.profiles)
        }
    }

    @Test func everyRuleIsAFieldOfTheWireFormat() throws {
        // A field added to NodeFields without a rule would never merge: each rule's name must be a
        // key NodeFields encodes, and each encoded key must have a rule.
        let full = NodeFields(
            image: ImageRef(name: "x"), layout: "l", mode: .stateful, plugins: [], kernelArgs: [], syncVerify: .stamp,
            kernel: "k", initramfs: "i", kernelRelease: "6.1.0-1-amd64", overlays: [], vars: [:], enrollment: .auto)
        #expect(Set(full.setFields) == Set(NodeFields.rules.map(\.name)))
        #expect(full.setFields.count == NodeFields.rules.count)
    }

    @Test func definitionJSONIsAConfigJSON() throws {
        // An old client's NodeConfig body is a definition whose every field is the node's own.
        let config = NodeConfig(name: "web1", macs: ["52:54:00:00:00:01"], mode: .stateless, kernelArgs: ["quiet"])
        let definition = NodeDefinition(config)
        #expect(definition.fields.mode == .stateless)
        #expect(definition.fields.syncVerify == .metadata)
        #expect(try ProfileMerge.resolve(definition, profiles: [:]).config == config)
    }

    static let badFields: [(NodeDefinition, String)] = [
        (NodeDefinition(name: "n1", profiles: ["bad name"]), "profiles[0]"),
        (NodeDefinition(name: "n1", fields: NodeFields(overlays: ["-x"])), "overlays[0]"),
        (NodeDefinition(name: "n1", fields: NodeFields(vars: ["rack.no": "1"])), "vars.rack.no"),
        (NodeDefinition(name: "n1", fields: NodeFields(kernelArgs: ["a b"])), "kernelArgs[0]"),
    ]

    @Test(arguments: badFields)
    func refusesBadFieldsNamingThem(_ node: NodeDefinition, _ field: String) {
        #expect { try node.validated(path: "nodes.n1") } throws: { ($0 as? ConfigError)?.field == "nodes.n1.\(field)" }
    }
}

@Suite struct AdminPluginTests {
    static let node = NodeConfig(
        name: "n001", macs: ["52:54:00:00:00:01"], profiles: ["compute"], vars: ["ip": "10.1.0.1"])
    static let script = RenderedFile(
        overlay: "site", path: "/usr/local/sbin/setup.sh", mode: 0o755, uid: 0, gid: 0,
        data: Array("#!/bin/sh\n".utf8).data,
        run: PluginRun(when: .changed, timeoutSeconds: 30))

    @Test func changedPluginsRunOnlyWhenTheirInputsChange() {
        let first = AdminPlugins.plan([Self.script], node: Self.node, stamps: [:])
        #expect(first.map(\.reason) == ["first run"])
        let stamps = [first[0].stampPath: first[0].digest + "\n"]
        #expect(AdminPlugins.plan([Self.script], node: Self.node, stamps: stamps).map(\.reason) == [nil])
        var other = Self.node
        other.vars["ip"] = "10.1.0.2"
        #expect(AdminPlugins.plan([Self.script], node: other, stamps: stamps).map(\.reason) == ["its inputs changed"])
        var always = Self.script
        always.run = PluginRun(when: .always, timeoutSeconds: 30)
        #expect(AdminPlugins.plan([always], node: Self.node, stamps: stamps).map(\.reason) == ["runs on every boot"])
    }

    @Test func pluginSeesTheNodeFieldsAndRunsChrootedWithItsLimit() {
        let env = AdminPlugins.environment(Self.node)
        #expect(env.contains("PROVISIONER_NODE=n001"))
        #expect(env.contains("PROVISIONER_VAR_ip=10.1.0.1"))
        #expect(env.contains("PROVISIONER_PROFILES=compute"))
        let plan = AdminPlugins.plan([Self.script], node: Self.node, stamps: [:])[0]
        #expect(plan.stampPath == "/var/lib/provisioner/plugin-stamps/usr_local_sbin_setup.sh")
        let argv = AdminPlugins.command(root: "/sysroot", plugin: plan, environment: ["A=1"])
        #expect(
            argv == [
                "timeout", "-k", "5", "30", "chroot", "/sysroot", "/usr/bin/env", "-i", "A=1",
                "/usr/local/sbin/setup.sh",
            ])
    }

    @Test func overlayFilesKeepOwnerAndModeAndRefuseEscapes() throws {
        var file = Self.script
        file.uid = 1000
        file.gid = 100
        #expect(
            try OverlayFiles.entries([file]) == [
                .ownedFile(
                    path: "/usr/local/sbin/setup.sh", content: Array("#!/bin/sh\n".utf8), mode: 0o755, uid: 1000,
                    gid: 100)
            ])
        file.path = "/etc/../../x"
        #expect(throws: PluginError.self) { try OverlayFiles.entries([file]) }
    }
}

@Suite struct OverlayWriteTests {
    @Test func overlayFilesAreWrittenOnceThenLeftAlone() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("overlay-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let runner = PluginRunner(root: root)
        let entry = RootEntry.ownedFile(path: "/etc/site/motd", content: [0, 1, 2, 255], mode: 0o640, uid: 0, gid: 0)
        #expect(try runner.apply([entry]).changed == ["/etc/site/motd"])
        #expect(try runner.apply([entry]).changed == [])
        #expect(FileManager.default.contents(atPath: root + "/etc/site/motd") == Data([0, 1, 2, 255]))
        let mode = try FileManager.default.attributesOfItem(atPath: root + "/etc/site/motd")[.posixPermissions] as? Int
        #expect(mode == 0o640)
        // A link in the image where a directory should be is never followed out of the root.
        try FileManager.default.createSymbolicLink(atPath: root + "/opt", withDestinationPath: "/tmp")
        #expect(throws: PluginRunner.WriteError.self) {
            try runner.apply([.ownedFile(path: "/opt/x", content: [1], mode: 0o644, uid: 0, gid: 0)])
        }
    }
}

extension Array where Element == UInt8 {
    var data: Foundation.Data { Foundation.Data(self) }
}

/// What admin plugins wrote becomes the node's (kept by the image sync), by these rules.
@Suite struct AdminPluginOutputsTests {
    @Test func writesAreRecordedOnceSortedAndNeverTheVirtualTreesOrOutsideTheRoot() {
        let merged = AdminPlugins.mergeOutputs(
            recorded: "etc/site-check\n",
            written: [
                "etc/site-check", "opt/tool/config", "proc/1/status", "var/log/plugin.log", "run/x", "tmp/y",
                ".provisioner-state/applied", "var/lib/provisioner/plugin-stamps/usr_local_sbin_a",
                "var/lib/provisioner/plugin-outputs", "../escape", "/absolute", "", "a//b", "var/lib/app/state",
            ])
        #expect(merged == "etc/site-check\nopt/tool/config\nvar/lib/app/state\n")
        #expect(AdminPlugins.mergeOutputs(recorded: nil, written: []) == "")
    }
}

/// The paths the sync leaves to the plugins (rows N8 and N10 of docs/boot.md).
@Suite struct OwnedPathsTests {
    @Test func everyPathAPluginWritesIsTheNodes() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("owned-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(
            atPath: root + "/var/lib/provisioner", withIntermediateDirectories: true)
        // What an admin plugin wrote on an earlier boot, as recorded.
        try "etc/slurm/slurm.conf\nopt/site/ready\n".write(
            toFile: root + AdminPlugins.outputsPath, atomically: true, encoding: .utf8)
        var node = AdminPluginTests.node
        node.files = [
            AdminPluginTests.script,
            RenderedFile(overlay: "site", path: "/etc/motd", mode: 0o644, uid: 0, gid: 0, data: Data("hi\n".utf8)),
        ]
        let paths = PluginRunner(root: root).ownedPaths(
            [PluginConfig(name: "hostname")], node: node, mounts: [], swaps: [])
        #expect(paths.contains("etc/hostname"))
        #expect(paths.contains("usr/local/sbin/setup.sh"))
        #expect(paths.contains(String(AdminPlugins.stampPath(for: "/usr/local/sbin/setup.sh").dropFirst())))
        #expect(paths.contains("etc/motd"))
        #expect(!paths.contains(String(AdminPlugins.stampPath(for: "/etc/motd").dropFirst())))
        #expect(paths.contains(String(AdminPlugins.outputsPath.dropFirst())))
        #expect(paths.contains("etc/slurm/slurm.conf") && paths.contains("opt/site/ready"))
    }
}
