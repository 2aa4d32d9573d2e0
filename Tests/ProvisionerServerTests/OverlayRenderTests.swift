import Foundation
import ProvisionerAPI
import Testing

@testable import ProvisionerServer

/// Template rendering (swift-mustache) per node: what templates see, and what they may not do.
@Suite struct OverlayRenderTests {
    static let cluster = [
        NodeConfig(name: "n001", macs: ["52:54:00:00:00:01"], profiles: ["compute"], overlays: ["site"], vars: ["ip": "10.1.0.1", "rack": "r1"]),
        NodeConfig(name: "n002", macs: ["52:54:00:00:00:02"], vars: ["ip": "10.1.0.2"]),
        NodeConfig(
            name: "login1",
            plugins: [PluginConfig(name: "network", parameters: ["address": "10.1.9.1/16"])]),
        NodeConfig(name: "nodhcp"),
    ]

    static func overlay(_ template: String, path: String = "/etc/x") -> [String: Overlay] {
        ["site": Overlay(name: "site", files: [OverlayFile(path: path, template: true, data: Data(template.utf8))])]
    }

    static let renders: [(String, String)] = [
        ("{{name}} {{ip}} {{mac}}", "n001 10.1.0.1 52:54:00:00:00:01"),
        ("{{vars.rack}}", "r1"),
        ("{{#profiles}}[{{.}}]{{/profiles}}", "[compute]"),
        ("{{#hosts}}{{ip}} {{name}}\n{{/hosts}}", "10.1.9.1 login1\n10.1.0.1 n001\n10.1.0.2 n002\n"),
        ("a & <b>", "a & <b>"),
        ("{{name}} & {{vars.rack}}<", "n001 & r1<"),
    ]

    @Test(arguments: renders)
    func rendersWithTheNodesFields(_ template: String, _ expected: String) throws {
        let files = try OverlayRender.render(node: Self.cluster[0], cluster: Self.cluster, overlays: Self.overlay(template))
        #expect(files.count == 1)
        #expect(String(decoding: files[0].data, as: UTF8.self) == expected)
    }

    static let refusals: [(String, String)] = [
        ("{{vars.missing}}", "overlay site, file /etc/x: node n001: the template refers to vars.missing, which this node does not have"),
        ("{{nmae}}", "overlay site, file /etc/x: node n001: the template refers to nmae, which this node does not have"),
        ("{{#nodes}}{{vars.rack}}{{/nodes}}", "overlay site, file /etc/x: node n001: the template refers to nodes[login1].vars.rack, which this node does not have"),
        ("line1\n{{#a}}x{{/b}}", "overlay site, file /etc/x: node n001: the template does not parse: sectionCloseNameIncorrect at line 2"),
    ]

    @Test(arguments: refusals)
    func refusesMissingNamesAndBadSyntaxNamingNodeOverlayFile(_ template: String, _ message: String) {
        #expect {
            try OverlayRender.render(node: Self.cluster[0], cluster: Self.cluster, overlays: Self.overlay(template))
        } throws: { error in
            "\(error)".hasPrefix(message) || { print("got: \(error)"); return false }()
        }
    }

    @Test func hostsOverlayIsBuiltIn() throws {
        var node = Self.cluster[1]
        node.overlays = ["hosts"]
        let files = try OverlayRender.render(node: node, cluster: Self.cluster, overlays: [:])
        #expect(files.map(\.path) == ["/etc/hosts"])
        let text = String(decoding: files[0].data, as: UTF8.self)
        #expect(text.contains("127.0.0.1\tlocalhost\n"))
        #expect(text.contains("10.1.0.1\tn001\n10.1.0.2\tn002\n"))
        #expect(!text.contains("nodhcp"))
    }

    @Test func laterOverlayWinsAtTheSamePathAndUnknownOverlayIsNamed() throws {
        var node = Self.cluster[0]
        node.overlays = ["hosts", "site"]
        let files = try OverlayRender.render(node: node, cluster: Self.cluster, overlays: Self.overlay("mine", path: "/etc/hosts"))
        #expect(files.map(\.overlay) == ["site"])
        node.overlays = ["nope"]
        #expect(throws: OverlayError(overlay: "nope", file: nil, problem: "node n001 lists overlay nope, which does not exist")) {
            try OverlayRender.render(node: node, cluster: Self.cluster, overlays: [:])
        }
    }

    @Test func pluginParametersAreTemplatesToo() throws {
        var node = Self.cluster[0]
        node.plugins = [PluginConfig(name: "network", parameters: ["address": "{{vars.ip}}/16", "gateway": "10.1.255.254"])]
        #expect(try OverlayRender.renderPlugins(node: node, cluster: Self.cluster)[0].parameters["address"] == "10.1.0.1/16")
        node.plugins[0].parameters["address"] = "{{vars.nope}}/16"
        #expect(throws: OverlayError.self) { try OverlayRender.renderPlugins(node: node, cluster: Self.cluster) }
    }

    static let badOverlays: [(String, String)] = [
        ("etc/x", "the path must be absolute (start with /)"),
        ("/etc/../../x", "the path escapes the root with \"..\""),
        ("/etc//x", "the path has an empty part (//, or a trailing /)"),
        ("/./x", "the path escapes the root with \".\""),
    ]

    @Test(arguments: badOverlays)
    func refusesPathsThatLeaveTheRoot(_ path: String, _ problem: String) {
        let overlay = Overlay(name: "site", files: [OverlayFile(path: path, data: Data())])
        #expect(throws: OverlayError(overlay: "site", file: path, problem: problem)) { try overlay.validated() }
    }
}
