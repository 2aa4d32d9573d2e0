import Testing

@testable import ProvisionerCore

@Suite struct ByteSizeTests {
    @Test(arguments: [
        ("120GB", UInt64(120_000_000_000)),
        ("120GiB", UInt64(120) << 30),
        ("120 GiB", UInt64(120) << 30),
        ("120gb", UInt64(120_000_000_000)),
        ("120gib", UInt64(120) << 30),
        ("1.5TB", UInt64(1_500_000_000_000)),
        ("1.5TiB", UInt64(3) << 39),
        ("4096", UInt64(4096)),
        ("512B", UInt64(512)),
        ("0.5KiB", UInt64(512)),
        ("2PiB", UInt64(2) << 50),
        ("1MB", UInt64(1_000_000)),
    ])
    func parses(text: String, bytes: UInt64) throws {
        #expect(try ByteSize(parsing: text).bytes == bytes)
    }

    @Test func decimalAndBinaryAreNeverConfused() throws {
        let gb = try ByteSize(parsing: "1GB")
        let gib = try ByteSize(parsing: "1GiB")
        #expect(gb.bytes == 1_000_000_000)
        #expect(gib.bytes == 1_073_741_824)
        #expect(gb != gib)
    }

    @Test(arguments: [
        ("", ByteSize.ParseError.empty),
        ("120G", .ambiguousUnit("g")),
        ("1T", .ambiguousUnit("t")),
        ("12XB", .unknownUnit("XB")),
        ("GB", .notANumber("GB")),
        ("1.2.3GB", .notANumber("1.2.3GB")),
        (".5GB", .notANumber(".5GB")),
        ("0.3B", .notANumber("0.3B")),
        ("99999999999PB", .tooLarge("99999999999PB")),
        ("-5GB", .notANumber("-5GB")),
        // Found by fuzzing: 20 decimals overflowed the scale (a trap, the agent and server died).
        ("1.00000000000000000001B", .notANumber("1.00000000000000000001B")),
    ])
    func refuses(text: String, error: ByteSize.ParseError) {
        #expect(throws: error) { try ByteSize(parsing: text) }
    }

    @Test func ambiguousUnitMessageOffersBothSpellings() {
        #expect(ByteSize.ParseError.ambiguousUnit("g").description.contains("GB"))
        #expect(ByteSize.ParseError.ambiguousUnit("g").description.contains("GiB"))
    }

    @Test func formats() {
        #expect(ByteSize(bytes: 120_034_123_776).description == "120.0 GB")
        #expect(ByteSize(bytes: 512).description == "512 B")
        #expect(ByteSize(bytes: 1 << 30).binaryDescription == "1.0 GiB")
    }
}

@Suite struct ToleranceTests {
    @Test(arguments: [
        ("5%", SizeTolerance.percent(basisPoints: 500)),
        ("0%", .percent(basisPoints: 0)),
        ("2.5%", .percent(basisPoints: 250)),
        ("0.25 %", .percent(basisPoints: 25)),
        ("10GB", .absolute(ByteSize(bytes: 10_000_000_000))),
        ("1GiB", .absolute(ByteSize(bytes: 1 << 30))),
    ])
    func parses(text: String, tolerance: SizeTolerance) throws {
        #expect(try SizeTolerance(parsing: text) == tolerance)
    }

    @Test(arguments: ["5", "%", "abc%", "101%", "1.234%", "-1%", "5G"])
    func refuses(text: String) {
        #expect(throws: SizeTolerance.ParseError.self) { try SizeTolerance(parsing: text) }
    }

    @Test func rangeIsInclusiveAtBothEdges() {
        let r = SizeTolerance.percent(basisPoints: 500).range(around: ByteSize(bytes: 120_000_000_000))
        #expect(r == 114_000_000_000...126_000_000_000)
    }

    @Test func absoluteRangeDoesNotUnderflow() {
        let r = SizeTolerance.absolute(ByteSize(bytes: 10)).range(around: ByteSize(bytes: 4))
        #expect(r == 0...14)
    }
}
