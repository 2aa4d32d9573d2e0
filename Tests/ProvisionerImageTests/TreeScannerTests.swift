import Foundation
import ProvisionerImage
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The scanner's threads share one queue of directories and sleep while it is empty: any number
/// of them sees the same tree, and the scan ends when the last directory is listed. The same
/// descriptor scanned again sees the same tree (each scan opens the root anew).
@Suite struct TreeScannerTests {
    @Test func everyThreadCountSeesTheSameTree() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("scan-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        // 3 levels of 6 directories, 5 files and a symlink each: 259 directories, 1,554 other entries.
        func fill(_ dir: String, depth: Int) throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for f in 0..<5 { try Data("file \(f)".utf8).write(to: URL(fileURLWithPath: "\(dir)/f\(f)")) }
            try FileManager.default.createSymbolicLink(atPath: "\(dir)/link", withDestinationPath: "f0")
            guard depth > 0 else { return }
            for d in 0..<6 { try fill("\(dir)/d\(d)", depth: depth - 1) }
        }
        try fill(root, depth: 3)
        let fd = open(root, O_RDONLY | O_DIRECTORY)
        #expect(fd >= 0)
        defer { close(fd) }
        let one = try TreeScanner(threads: 1).scan(rootfd: fd)
        #expect(one.count == 1 + 259 + 259 * 6 - 1)
        #expect(one.values.filter { $0.kind == .directory }.count == 259)
        for threads in [2, 8, 32] {
            #expect(try TreeScanner(threads: threads).scan(rootfd: fd) == one, "\(threads) threads")
        }
        // A preserved subtree is not walked, with many threads as with one.
        let preserved = try TreeScanner(preserved: [Array("d0".utf8)], threads: 16).scan(rootfd: fd)
        #expect(preserved.count == one.count - (1 + 43 + 43 * 6 - 1))
    }
}
