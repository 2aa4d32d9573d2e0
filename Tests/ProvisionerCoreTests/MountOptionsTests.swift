import ProvisionerCore
import Testing

/// mount(8)'s reading of `-o`, for mount(2): flags, what is dropped, what the filesystem gets.
@Suite struct MountOptionsTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var given: [String]
        /// MS_RDONLY 1, MS_NOSUID 2, MS_NODEV 4, MS_NOEXEC 8, MS_DIRSYNC 128, MS_NOATIME 1024,
        /// MS_RELATIME 1 << 21, MS_LAZYTIME 1 << 25.
        var flags: UInt
        var data: String
        var testDescription: String { given.joined(separator: " ") }
    }

    static let cases: [Case] = [
        Case(given: [], flags: 0, data: ""),
        Case(given: ["defaults"], flags: 0, data: ""),
        Case(given: ["noatime"], flags: 1024, data: ""),
        Case(given: ["nodev", "nosuid", "noexec"], flags: 14, data: ""),
        Case(given: ["ro,nodev,nosuid,noexec"], flags: 15, data: ""),
        Case(given: ["ro", "rw"], flags: 0, data: ""),
        Case(given: ["relatime", "lazytime"], flags: 1 << 21 | 1 << 25, data: ""),
        Case(given: ["errors=remount-ro"], flags: 0, data: "errors=remount-ro"),
        Case(given: ["noatime", "discard", "commit=60"], flags: 1024, data: "discard,commit=60"),
        Case(given: ["umask=0077", "shortname=winnt"], flags: 0, data: "umask=0077,shortname=winnt"),
        Case(
            given: ["nofail", "noauto", "x-systemd.device-timeout=5", "_netdev", "comment=systemd.x"], flags: 0,
            data: ""),
        Case(given: ["sync", "async", "dirsync"], flags: 128, data: ""),
        Case(given: ["logbufs=8,logbsize=256k", "noatime"], flags: 1024, data: "logbufs=8,logbsize=256k"),
    ]

    @Test(arguments: cases)
    func options(_ c: Case) throws {
        let parsed = try MountOptions(c.given)
        #expect(parsed.flags == c.flags)
        #expect(parsed.data == c.data)
    }

    @Test(arguments: ["bind", "rbind", "remount", "move", "loop"])
    func notForAFilesystemOnADevice(_ option: String) {
        #expect(throws: MountOptions.Refused(option: option)) { try MountOptions(["noatime", option]) }
    }
}
