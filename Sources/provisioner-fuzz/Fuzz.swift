import ProvisionerFuzz

// Built two ways (docs/fuzzing.md):
// - `make fuzz` / `scripts/fuzz.sh` builds with `-sanitize=fuzzer,address -D FUZZING`: libFuzzer owns
//   `main` and calls `LLVMFuzzerTestOneInput`; PROVISIONER_FUZZ_TARGET names the target.
// - the ordinary build gives a replayer: `provisioner-fuzz TARGET FILE...` runs files through a
//   target (what a saved crash input is reproduced with, without sanitizers).

#if canImport(Glibc)
    import Glibc
#endif

/// Writes to standard error without the C `stderr` global (not concurrency-safe in Swift 6).
func printError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

#if FUZZING
    import CFuzzDriver

    nonisolated(unsafe) var selected: FuzzTarget = .layout

    /// SwiftPM links an executable's `main` to this symbol; it hands control to libFuzzer.
    @_cdecl("provisioner_fuzz_main")
    public func fuzzMain(
        _ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
    ) -> Int32 {
        let name = getenv("PROVISIONER_FUZZ_TARGET").map { String(cString: $0) } ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            let known = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
            printError("provisioner-fuzz: set PROVISIONER_FUZZ_TARGET to one of: \(known)")
            return 2
        }
        selected = target
        var count = argc
        var arguments = argv
        return LLVMFuzzerRunDriver(&count, &arguments) { data, size in
            let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
            if let problem = selected.run(input) {
                printError("provisioner-fuzz: \(selected.rawValue): \(problem)")
                abort()
            }
            return 0
        }
    }
#else
    #if canImport(FoundationEssentials)
        import FoundationEssentials
    #else
        import Foundation
    #endif

    @main
    struct Replay {
        static func main() {
            let args = Array(CommandLine.arguments.dropFirst())
            guard let name = args.first, let target = FuzzTarget(rawValue: name), args.count > 1 else {
                let known = FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")
                print("usage: provisioner-fuzz \(known) FILE...  (runs each file through the target)")
                exit(2)
            }
            for path in args.dropFirst() {
                guard let data = FileManager.default.contents(atPath: path) else {
                    print("provisioner-fuzz: cannot read \(path)")
                    exit(1)
                }
                if let problem = target.run(Array(data)) {
                    print("\(target.rawValue): \(path): \(problem)")
                    exit(1)
                }
                print("\(target.rawValue): \(path): ok")
            }
        }
    }
#endif
