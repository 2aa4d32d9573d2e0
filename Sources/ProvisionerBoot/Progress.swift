/// Console and event text for long steps: pure, so the wording is tested.
public enum ProgressText {
    /// `image: 37% (1,203 of 3,000 files, 71.2 MB of 190.0 MB, received 9.8 MB/s)`.
    public static func sync(
        filesDone: Int, filesPlanned: Int, bytesDone: Int, bytesPlanned: Int, bytesPerSecond: Double
    ) -> (fraction: Double, text: String) {
        let fraction = bytesPlanned > 0 ? min(1, Double(bytesDone) / Double(bytesPlanned)) : (filesPlanned > 0 ? Double(filesDone) / Double(filesPlanned) : 0)
        let percent = Int((fraction * 100).rounded(.down))
        let text =
            "\(percent)% (\(grouped(filesDone)) of \(grouped(filesPlanned)) files, \(megabytes(bytesDone)) of \(megabytes(bytesPlanned)), "
            + "received \(megabytes(Int(bytesPerSecond)))/s)"
        return (fraction, text)
    }

    /// `71.2 MB` (decimal megabytes, one digit).
    public static func megabytes(_ bytes: Int) -> String {
        let tenths = (bytes + 50_000) / 100_000
        return "\(tenths / 10).\(tenths % 10) MB"
    }

    /// `12.3 s`.
    public static func seconds(_ s: Double) -> String {
        let tenths = Int((s * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) s"
    }

    /// `1,234,567`.
    public static func grouped(_ n: Int) -> String {
        let digits = Array(String(abs(n)))
        var out: [Character] = []
        for (i, d) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(d)
        }
        return (n < 0 ? "-" : "") + String(out)
    }
}
