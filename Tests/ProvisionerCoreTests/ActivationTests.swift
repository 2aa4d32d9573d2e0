import ProvisionerCore
import Testing

/// Which mounts may run at once: a mount waits only for the mounts it lies under.
@Suite struct ActivationTests {
    static func mount(_ point: String) -> Activation.Mount {
        Activation.Mount(device: "/dev/x\(point.count)", mountPoint: point, type: .ext4)
    }

    @Test(arguments: [
        (["/", "/boot/efi", "/scratch", "/var"], [["/"], ["/boot/efi", "/scratch", "/var"]]),
        (["/", "/var", "/var/log", "/var/lib/data"], [["/"], ["/var"], ["/var/log", "/var/lib/data"]]),
        // Not under each other although one name starts like the other.
        (["/srv", "/srv2", "/srv/a"], [["/srv", "/srv2"], ["/srv/a"]]),
        (["/data"], [["/data"]]),
        ([String](), [[String]]()),
    ])
    func mountsWaitOnlyForWhatTheyLieUnder(points: [String], waves: [[String]]) {
        let activation = Activation(mounts: points.map(Self.mount))
        #expect(activation.mountWaves.map { $0.map(\.mountPoint) } == waves)
    }
}
