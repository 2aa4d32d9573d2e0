import Testing

@testable import ProvisionerCore

@Suite struct GlobTests {
    @Test(arguments: [
        ("Samsung*", "Samsung SSD 980", false, true),
        ("samsung*", "SAMSUNG SSD 980", true, true),
        ("samsung*", "SAMSUNG SSD 980", false, false),
        ("*980*", "Samsung SSD 980 PRO", false, true),
        ("S?", "S1", false, true),
        ("S?", "S12", false, false),
        ("pci-*-nvme-1", "pci-0000:00:04.0-nvme-1", false, true),
        ("[ab]*", "beta", false, true),
        ("[!ab]*", "beta", false, false),
        ("disk[0-9]", "disk7", false, true),
        ("disk[0-9]", "diskx", false, false),
        ("a\\*b", "a*b", false, true),
        ("a\\*b", "axb", false, false),
        ("*", "", false, true),
        ("", "", false, true),
        ("", "x", false, false),
        ("a*b*c", "aXbYc", false, true),
        ("a*b*c", "aXbY", false, false),
        ("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false, false),
    ])
    func matches(pattern: String, text: String, caseInsensitive: Bool, expected: Bool) throws {
        #expect(try Glob(pattern, caseInsensitive: caseInsensitive).matches(text) == expected)
    }

    @Test func refusesBrokenPatterns() {
        #expect(throws: Glob.ParseError.unterminatedSet("[abc")) { try Glob("[abc") }
        #expect(throws: Glob.ParseError.danglingEscape("abc\\")) { try Glob("abc\\") }
    }

    @Test func literal() throws {
        #expect(try Glob("S123").isLiteral)
        #expect(try !Glob("S12*").isLiteral)
    }
}
