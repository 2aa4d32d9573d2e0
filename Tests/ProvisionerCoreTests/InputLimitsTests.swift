import ProvisionerCore
import Testing

@Suite struct InputLimitsTests {
    @Test(arguments: [
        ("plain", "plain"),
        ("QEMU\u{1B}[31mred\u{1B}[0m", "QEMU\\e[31mred\\e[0m"),
        ("two\r\nlines\tand tab", "two\\r\\nlines\\tand tab"),
        ("bell\u{07} del\u{7F} nul\u{00}", "bell\\x07 del\\x7F nul\\x00"),
        ("csi\u{9B}2J", "csi\\u{9B}2J"),
        ("abc\u{202E}cba", "abc\\u{202E}cba"),
        ("é ✓ 日本", "é ✓ 日本"),
    ])
    func terminalSafe(_ input: String, _ expected: String) {
        #expect(input.terminalSafe == expected)
    }

    @Test func tablesEscapeCellsSoNoRowCanBeForged() {
        var table = TextTable(["SERIAL", "VENDOR"])
        table.add(["S1\nS2  fake-row", "\u{1B}]0;title\u{07}"])
        let text = table.render()
        #expect(text.split(separator: "\n").count == 2)
        #expect(!text.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x07 })
        #expect(text.contains("S1\\nS2  fake-row"))
    }

    @Test func nestingIsLimitedWhereverItHappens() {
        let cases: [(String, String)] = [
            (String(repeating: "[", count: 2500) + String(repeating: "]", count: 2500), "[0][0]"),
            (String(repeating: "{a: ", count: 500) + "1" + String(repeating: "}", count: 500), "a.a.a"),
            ((0..<100).map { String(repeating: " ", count: $0) + "k\($0):" }.joined(separator: "\n"), "k0.k1.k2"),
        ]
        for (text, pathStart) in cases {
            do {
                _ = try ConfigNode.parse(text, source: "deep.yaml")
                Issue.record("\(text.prefix(20))… was accepted")
            } catch {
                #expect(error.problem == "nests deeper than 64 levels, the limit", "\(error)")
                #expect(error.field.hasPrefix(pathStart), "\(error.field.prefix(40))")
                #expect(error.location?.hasPrefix("deep.yaml:") == true)
            }
        }
        // 64 levels are fine.
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect((try? ConfigNode.parse(ok, source: "ok")) != nil)
    }
}
