import ProvisionerCore
import Testing

@Suite struct ImageBuildTests {
    @Test func plansTheMmdebstrapRun() throws {
        let plan = try ImageBuildPlan(
            distro: "debian:bookworm", packages: ["hello", "lvm2"], kernel: "linux-image-cloud-amd64",
            mirror: "http://deb.example/debian")
        #expect(plan.included == ["systemd-sysv", "udev", "iproute2", "mdadm", "lvm2", "hello", "linux-image-cloud-amd64"])
        #expect(
            plan.mmdebstrap(into: "/tmp/r") == [
                "mmdebstrap", "--quiet", "--variant=minbase",
                "--include=systemd-sysv,udev,iproute2,mdadm,lvm2,hello,linux-image-cloud-amd64", "bookworm", "/tmp/r",
                "http://deb.example/debian",
            ])
    }

    @Test func refusalsNameTheFlag() {
        let cases: [(String, [String], String?, String, String)] = [
            ("bookworm", [], nil, "http://m/debian", "--distro: \"bookworm\" is not FAMILY:SUITE"),
            ("rocky:9", [], nil, "http://m/debian", "dnf --installroot"),
            ("debian:Book worm", [], nil, "http://m/debian", "--distro: \"Book worm\" is not a suite name"),
            ("debian:bookworm", ["ok", "bad;rm"], nil, "http://m/debian", "--packages[1]: \"bad;rm\""),
            ("debian:bookworm", [], "-x", "http://m/debian", "--kernel: \"-x\""),
            ("debian:bookworm", [], nil, "ftp x", "--mirror: \"ftp x\""),
        ]
        for (distro, packages, kernel, mirror, message) in cases {
            do {
                _ = try ImageBuildPlan(distro: distro, packages: packages, kernel: kernel, mirror: mirror)
                Issue.record("\(distro) \(packages) was accepted")
            } catch {
                #expect(error.description.contains(message), "\(error)")
            }
        }
    }

    @Test func aptMirrorFromEitherFormat() {
        let deb822 = """
            Types: deb
            URIs: http://security.example/debian-security
            Suites: bookworm-security

            Types: deb
            URIs: http://deb.example/debian
            Suites: bookworm bookworm-updates
            """
        #expect(ImageBuildPlan.aptMirror(deb822: [deb822], sourcesList: nil) == "http://deb.example/debian")
        let list = """
            # comment
            deb [signed-by=/k.gpg] http://mirror.example/debian bookworm main
            deb http://security.example/debian-security bookworm-security main
            """
        #expect(ImageBuildPlan.aptMirror(deb822: [], sourcesList: list) == "http://mirror.example/debian")
        #expect(ImageBuildPlan.aptMirror(deb822: [], sourcesList: "deb http://security.x/ bookworm main") == nil)
    }
}
