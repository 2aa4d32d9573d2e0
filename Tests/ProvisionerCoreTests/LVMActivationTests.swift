import ProvisionerCore
import Testing

/// What `vgchange -ay` would load into device-mapper, decided from the metadata: names, UUIDs,
/// tables, read-ahead, and what is left to `vgchange`. The VM test (DiskLayoutVMTests) compares
/// the same decisions with LVM's own activation on a booted node.
@Suite struct LVMActivationTests {
    static let pv0 = "zdfd22DNWneOCVm090hM2yMn1oesoo6g"
    static let pv1 = "Kx1c0tP2lXqS9bQW3dYzV4eR5fT6gU7h"

    static func text(
        volumes: String, groupStatus: String = #""RESIZEABLE", "READ", "WRITE""#, pvStart: String = "pe_start = 2048"
    )
        -> String
    {
        """
        my-vg {
            id = "vZpAw3-N93S-ADAN-xLDz-pG92-65GG-WuDFXo"
            seqno = 3
            format = "lvm2"
            status = [\(groupStatus)]
            flags = []
            extent_size = 8192
            physical_volumes {
                pv0 { id = "zdfd22-DNWn-eOCV-m090-hM2y-Mn1o-esoo6g" status = ["ALLOCATABLE"] flags = [] \(pvStart) pe_count = 100 }
                pv1 { id = "Kx1c0t-P2lX-qS9b-QW3d-YzV4-eR5f-T6gU7h" status = ["ALLOCATABLE"] flags = [] pe_start = 4096 pe_count = 50 }
            }
            logical_volumes {
        \(volumes)
            }
        }
        """
    }

    static let root = """
        root {
            id = "aaaaaa-bbbb-cccc-dddd-eeee-ffff-gggggg"
            status = ["READ", "WRITE", "VISIBLE"]
            flags = []
            segment_count = 2
            segment1 { start_extent = 0 extent_count = 10 type = "striped" stripe_count = 1 stripes = ["pv0", 0] }
            segment2 { start_extent = 10 extent_count = 5 type = "striped" stripe_count = 1 stripes = ["pv1", 20] }
        }
        """
    static let striped = """
        data-1 {
            id = "bbbbbb-bbbb-cccc-dddd-eeee-ffff-gggggg"
            status = ["READ", "WRITE", "VISIBLE"]
            flags = []
            segment_count = 1
            segment1 { start_extent = 0 extent_count = 4 type = "striped" stripe_count = 2 stripe_size = 128 stripes = ["pv0", 10, "pv1", 0] }
        }
        """
    static let readOnly = """
        ro {
            id = "cccccc-bbbb-cccc-dddd-eeee-ffff-gggggg"
            status = ["READ", "VISIBLE"]
            flags = []
            segment_count = 1
            segment1 { start_extent = 0 extent_count = 1 type = "striped" stripe_count = 1 stripes = ["pv0", 12] }
        }
        """

    static let numbers = [
        "/dev/md127": DeviceNumber(major: 9, minor: 127), "/dev/sdb1": DeviceNumber(major: 8, minor: 17),
    ]

    static func view(_ text: String) throws -> LVMView {
        let label0 = LVMLabel(pvUUID: pv0, deviceSizeBytes: 1 << 30, metadataAreas: [])
        let label1 = LVMLabel(pvUUID: pv1, deviceSizeBytes: 1 << 30, metadataAreas: [])
        return try LVMView.build([
            LVMView.Device(path: "/dev/md127", label: label0, texts: [text]),
            LVMView.Device(path: "/dev/sdb1", label: label1, texts: [text]),
        ])
    }

    static func volumes(_ text: String) throws -> [DeviceMapperVolume] {
        try view(text).deviceMapperVolumes(of: "my-vg") { numbers[$0] }
    }

    @Test func tablesNamesAndUUIDs() throws {
        let volumes = try Self.volumes(Self.text(volumes: Self.root + Self.striped + Self.readOnly))
        #expect(volumes.map(\.name) == ["my--vg-root", "my--vg-data--1", "my--vg-ro"])
        #expect(volumes.map(\.path) == ["/dev/my-vg/root", "/dev/my-vg/data-1", "/dev/my-vg/ro"])
        #expect(
            volumes[0].uuid
                == "LVM-vZpAw3N93SADANxLDzpG9265GGWuDFXo" + "aaaaaabbbbccccddddeeeeffffgggggg")
        // One line per segment; offsets are pe_start + extent × extent size (8192 sectors).
        #expect(
            volumes[0].targets.map(\.description) == [
                "0 81920 linear 9:127 2048",
                "81920 40960 linear 8:17 167936",
            ])
        #expect(volumes[1].targets.map(\.description) == ["0 32768 striped 2 128 9:127 83968 8:17 4096"])
        #expect(volumes[2].targets.map(\.description) == ["0 8192 linear 9:127 100352"])
        #expect(volumes.map(\.readOnly) == [false, false, true])
        // Linear: at least the read-ahead of the device under the first extent; striped: twice the stripe.
        #expect(volumes[0].readAhead == .atLeastThatOf(device: "/dev/md127"))
        #expect(volumes[1].readAhead == .atLeast(sectors: 512))
        #expect(volumes.allSatisfy { $0.udevFlags == 0x0060 })
    }

    @Test func aReadOnlyGroupActivatesEverythingReadOnly() throws {
        let volumes = try Self.volumes(Self.text(volumes: Self.root, groupStatus: #""READ""#))
        #expect(volumes.map(\.readOnly) == [true])
    }

    @Test(arguments: [
        (
            "hidden", Self.root.replacing(#""READ", "WRITE", "VISIBLE""#, with: #""READ", "WRITE""#),
            "pe_start = 2048", "hidden"
        ),
        (
            "read-ahead", Self.root.replacing("segment_count = 2", with: "read_ahead = 256\nsegment_count = 2"),
            "pe_start = 2048", "read_ahead"
        ),
        ("outside", Self.root.replacing(#"["pv1", 20]"#, with: #"["pv1", 48]"#), "pe_start = 2048", "outside"),
        ("no pe_start", Self.root, "", "pe_start"),
        (
            "no id", Self.root.replacing(#"id = "aaaaaa-bbbb-cccc-dddd-eeee-ffff-gggggg""#, with: ""),
            "pe_start = 2048", "UUID"
        ),
        // Found by the lvm fuzz target: an id of 32 characters that are not all ASCII.
        ("odd id", Self.root.replacing("aaaaaa-bbbb", with: "aaaaaa-bb\u{e9}b"), "pe_start = 2048", "UUID"),
        (
            "thin",
            Self.root.replacing(
                #"type = "striped" stripe_count = 1 stripes = ["pv1", 20]"#,
                with: #"type = "thin" thin_pool = "pool" transaction_id = 1"#), "pe_start = 2048", "thin"
        ),
    ])
    func leftToVgchange(_ case_: (String, String, String, String)) throws {
        let (name, volume, pvStart, reason) = case_
        let text = Self.text(volumes: volume, pvStart: pvStart)
        do {
            let view = try Self.view(text)
            _ = try view.deviceMapperVolumes(of: "my-vg") { Self.numbers[$0] }
            Issue.record("\(name): activated")
        } catch let error as LVMView.Unsupported {
            #expect(error.reason.contains(reason), "\(name): \(error.reason)")
        }
    }

    @Test func aPhysicalVolumeWithoutADeviceNumberIsRefused() throws {
        let view = try Self.view(Self.text(volumes: Self.root))
        #expect(throws: LVMView.Unsupported.self) {
            _ = try view.deviceMapperVolumes(of: "my-vg") { $0 == "/dev/sdb1" ? nil : Self.numbers[$0] }
        }
        #expect(throws: LVMView.Unsupported.self) {
            _ = try view.deviceMapperVolumes(of: "other") { Self.numbers[$0] }
        }
    }

    @Test(arguments: [(UInt32(256), UInt32(256), UInt32?.none), (512, 256, 512), (128, 256, nil)])
    func readAheadIsOnlyRaised(_ case_: (UInt32, UInt32, UInt32?)) {
        #expect(DeviceMapperVolume.readAheadToSet(wanted: case_.0, current: case_.1) == case_.2)
    }
}
