import Testing

@testable import ProvisionerCore

@Suite struct HostlistTests {
    static let expansions: [(String, [String])] = [
        ("login1", ["login1"]),
        ("n[1-3]", ["n1", "n2", "n3"]),
        ("n[001-003]", ["n001", "n002", "n003"]),
        ("n[08-11]", ["n08", "n09", "n10", "n11"]),
        ("n[8-11]", ["n8", "n9", "n10", "n11"]),
        ("gpu[01-04,07],login1", ["gpu01", "gpu02", "gpu03", "gpu04", "gpu07", "login1"]),
        ("rack[1-2]-n[01-02]", ["rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02"]),
        ("n[1-2]x", ["n1x", "n2x"]),
        ("10.1.0.[1-3]", ["10.1.0.1", "10.1.0.2", "10.1.0.3"]),
        ("a,b,a", ["a", "b"]),
        ("n[5]", ["n5"]),
        ("[1-2]", ["1", "2"]),
    ]

    @Test(arguments: expansions)
    func expands(_ expression: String, _ names: [String]) throws {
        #expect(try Hostlist.expand(expression) == names)
    }

    static let refusals: [(String, Hostlist.Problem, Int, String)] = [
        ("n[1-3", .unbalancedBracket, 2, "[1-3"),
        ("n1-3]", .unbalancedBracket, 5, "]"),
        ("n[1-[2]]", .unbalancedBracket, 2, "[1-["),
        ("a,,b", .emptyPart, 3, ""),
        ("n[]", .emptyPart, 2, "[]"),
        ("", .emptyPart, 1, ""),
        ("n[1,,2]", .emptyPart, 5, ""),
        ("n[a-3]", .notANumber, 3, "a-3"),
        ("n[1-2-3]", .notANumber, 3, "1-2-3"),
        ("n[1-]", .notANumber, 3, "1-"),
        ("n[5-3]", .descendingRange, 3, "5-3"),
        ("n[001-1000]", .overflowsWidth, 3, "001-1000"),
        ("gpu[01-04,07-100]", .overflowsWidth, 11, "07-100"),
        ("n[1-100000],m[1-2]", .tooManyNames, 13, "m[1-2]"),
        ("n[1-200000]", .tooManyNames, 1, "n[1-200000]"),
        ("n[1-999999999]", .tooManyNames, 1, "n[1-999999999]"),
        ("n[1-9]x[1-99999]", .tooManyNames, 1, "n[1-9]x[1-99999]"),
        ("n 1", .badCharacter, 2, " "),
        ("n/1", .badCharacter, 2, "/"),
    ]

    @Test(arguments: refusals)
    func refuses(_ expression: String, _ problem: Hostlist.Problem, _ column: Int, _ fragment: String) {
        #expect(throws: Hostlist.ParseError.self) { try Hostlist.expand(expression) }
        do {
            _ = try Hostlist.expand(expression)
        } catch {
            #expect(error.problem == problem, "\(error)")
            #expect(error.column == column, "\(error)")
            #expect(error.fragment == fragment, "\(error)")
            #expect(error.description.contains("column \(column)"))
        }
    }

    static let compressions: [([String], String)] = [
        (["n001", "n002", "n003", "n007"], "n[001-003,007]"),
        (["n1", "n2", "n10"], "n[1-2,10]"),
        (["n08", "n09", "n10", "n11"], "n[08-11]"),
        (["login1", "gpu01", "gpu02"], "login1,gpu[01-02]"),
        (["a", "b"], "a,b"),
        (["n3", "n1", "n2"], "n[1-3]"),
        (["rack1-n01", "rack1-n02"], "rack1-n[01-02]"),
        (["x5"], "x5"),
        ([], ""),
    ]

    @Test(arguments: compressions)
    func compresses(_ names: [String], _ expression: String) throws {
        #expect(Hostlist.compress(names) == expression)
        if !names.isEmpty {
            #expect(Set(try Hostlist.expand(expression)) == Set(names))
        }
    }

    @Test func largestAllowedRangeExpandsInOrder() throws {
        let names = try Hostlist.expand("n[000001-100000]")
        #expect(names.count == Hostlist.maxNames)
        #expect(names.first == "n000001" && names.last == "n100000")
        #expect(Hostlist.compress(names) == "n[000001-100000]")
    }
}

@Suite struct IPv4NetworkTests {
    @Test(arguments: [
        ("10.0.2.0/24", "10.0.2.0/24"), ("10.0.2.17/24", "10.0.2.0/24"), ("0.0.0.0/0", "0.0.0.0/0"),
        ("192.168.1.1/32", "192.168.1.1/32"), ("172.16.5.4/12", "172.16.0.0/12"),
    ])
    func parses(text: String, normal: String) { #expect(IPv4Network(parsing: text)?.description == normal) }

    @Test(arguments: ["10.0.2.0", "10.0.2.0/33", "10.0.2/24", "10.0.2.256/24", "a.b.c.d/8", "10.0.2.0/-1", "10.0.2.0/ 24", "010.0.2.0000/24", ""])
    func refuses(text: String) { #expect(IPv4Network(parsing: text) == nil) }

    @Test func containsAndNetmasks() throws {
        let net = try #require(IPv4Network(parsing: "10.0.2.0/24"))
        #expect(net.contains(IPv4Network.address("10.0.2.200")!))
        #expect(!net.contains(IPv4Network.address("10.0.3.1")!))
        #expect(IPv4Network(address: IPv4Network.address("10.0.2.7")!, netmask: 0xffff_ff00) == net)
        #expect(IPv4Network(address: 1, netmask: 0xff00_ff00) == nil)  // not a prefix
    }
}
