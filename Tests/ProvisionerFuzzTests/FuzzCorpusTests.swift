import Foundation
import ProvisionerFuzz
import ProvisionerImage
import Testing

/// Replays the committed fuzz corpus (fuzz/corpus/TARGET/*, seeds and every input a fuzz run
/// found) through each target without sanitizers: what once crashed or broke a round trip stays fixed.
@Suite struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fuzz/corpus")

    @Test(arguments: FuzzTarget.allCases)
    func corpusReplays(_ target: FuzzTarget) throws {
        let dir = Self.corpus.appendingPathComponent(target.rawValue)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        #expect(!files.isEmpty, "no seeds in \(dir.path)")
        for file in files {
            let data = try Data(contentsOf: dir.appendingPathComponent(file))
            let problem = target.run(Array(data))
            #expect(problem == nil, "\(target.rawValue)/\(file): \(problem ?? "")")
        }
    }

    /// The manifest encoding is canonical: a number written in more bytes than it needs (which once
    /// decoded to the same manifest under another version id) is refused, as is one past 64 bits.
    @Test func manifestVarintsHaveOneSpelling() {
        let root: [UInt8] = [0, 0, 2, 0xED, 0x03, 0, 0, 0, 0, 0]
        let canonical: [UInt8] = Array("PIMG".utf8) + [1, 1] + root
        #expect(FuzzTarget.manifest.run(canonical) == nil)
        #expect((try? ManifestCodec.decode(canonical)) != nil)
        for count: [UInt8] in [[0x81, 0x00], [0x80, 0x80, 0x01], [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02]] {
            #expect(throws: ManifestError.self) { try ManifestCodec.decode(Array("PIMG".utf8) + [1] + count + root) }
        }
        // Paths share the longest prefix with the entry before: "ab" after "a" is written (1, "b").
        let dir: [UInt8] = [2, 0xED, 0x03, 0, 0, 0, 0, 0]
        let a: [UInt8] = [0, 1, UInt8(ascii: "a")] + dir
        let shared: [UInt8] = Array("PIMG".utf8) + [1, 3] + root + a + [1, 1, UInt8(ascii: "b")] + dir
        let unshared: [UInt8] = Array("PIMG".utf8) + [1, 3] + root + a + [0, 2, UInt8(ascii: "a"), UInt8(ascii: "b")] + dir
        #expect((try? ManifestCodec.decode(shared))?.entries.count == 3)
        #expect(throws: ManifestError.self) { try ManifestCodec.decode(unshared) }
    }
}
