import Foundation
import HTTPTypes
import Hummingbird
import ProvisionerAPI

/// iPXE scripts: pure text from a node (or none), so they are tested with tables.
public enum IPXEScript {
    /// The first script (`/boot/start.ipxe`, what DHCP points iPXE at): asks for the script of this
    /// machine's MAC, passing what iPXE knows of the hardware so an unknown machine is listed with it.
    public static func start(bootBase: String) -> String {
        """
        #!ipxe
        # provisioner: ask the server what this machine boots
        chain \(bootBase)/boot/ipxe?mac=${net0/mac}&uuid=${uuid}&serial=${serial:uristring}&manufacturer=${manufacturer:uristring}&product=${product:uristring} || goto retry
        :retry
        echo provisioner: the server did not answer; retrying in 10 s
        sleep 10
        chain \(bootBase)/boot/start.ipxe

        """
    }

    /// Boots `node`'s kernel and initramfs with the agent's arguments.
    public static func boot(
        node: NodeConfig?, mac: String, bootBase: String, serverURL: String, mirrors: [String]
    ) -> String {
        let kernel = node?.kernel ?? "default"
        let initramfs = node?.initramfs ?? "default"
        var args = [
            "initrd=initramfs", "root=provisioner", "provisioner.server=\(serverURL)", "provisioner.mac=\(mac)",
        ]
        if !mirrors.isEmpty { args.append("provisioner.mirrors=\(mirrors.joined(separator: ","))") }
        args += node?.kernelArgs ?? []
        return """
            #!ipxe
            # provisioner: \(node.map { "node \($0.name)" } ?? "unknown machine, discovery boot") (\(mac))
            kernel \(bootBase)/boot/kernels/\(kernel) \(args.joined(separator: " "))
            initrd --name initramfs \(bootBase)/boot/initramfs/\(initramfs)
            boot

            """
    }

    /// For a MAC no node has: wait, then ask again (the machine is listed as pending meanwhile).
    public static func wait(mac: String, seconds: Int, bootBase: String) -> String {
        """
        #!ipxe
        # provisioner: \(mac) is not assigned to a node yet (provisionerctl nodes pending / assign)
        echo provisioner: this machine (\(mac)) is not assigned yet; asking again in \(seconds) s
        sleep \(seconds)
        chain \(bootBase)/boot/start.ipxe

        """
    }
}

extension Services {
    /// The plain-HTTP boot routes iPXE uses (it cannot present the cluster client certificate; see
    /// docs/threat-model.md): scripts, kernels, initramfs. Nothing else is served here.
    func addBootRoutes(to router: Router<ProvisionerContext>) {
        let boot = router.group("boot")
        boot.get("start.ipxe") { request, _ -> Response in
            self.script(IPXEScript.start(bootBase: self.bootBase(request)))
        }
        boot.get("ipxe") { request, context -> Response in
            let query: BootQuery
            do throws(BootQueryError) {
                query = try BootQuery.parse(Substring(request.uri.query ?? ""))
            } catch {
                throw APIError.badRequest(error.description)
            }
            let mac = query.mac
            let base = self.bootBase(request)
            if let node = try await store.node(forMAC: mac) {
                return self.script(
                    IPXEScript.boot(
                        node: node, mac: mac, bootBase: base, serverURL: self.serverURL(for: request),
                        mirrors: self.config.mirrors))
            }
            let facts = HardwareFacts(dmi: query.dmi)
            try self.registrations.admit(
                address: context.remoteAddress, macs: [mac], what: "an iPXE request", logger: context.logger)
            _ = try await store.openSession(
                macs: [mac], facts: facts, remoteAddress: context.remoteAddress, source: "ipxe",
                limits: config.registration)
            switch config.unknownMachines {
            case .wait:
                return self.script(IPXEScript.wait(mac: mac, seconds: config.pollAfterSeconds, bootBase: base))
            case .discover:
                return self.script(
                    IPXEScript.boot(
                        node: nil, mac: mac, bootBase: base, serverURL: self.serverURL(for: request),
                        mirrors: self.config.mirrors))
            }
        }
        for kind in [FileKind.kernels, .initramfs] {
            for method in [HTTPRequest.Method.get, .head] {
                boot.on("\(kind.rawValue)/:name", method: method) { request, context -> Response in
                    try await self.files.respond(
                        [kind.rawValue, try context.parameters.require("name")], request: request, context: context)
                }
            }
        }
    }

    func bootBase(_ request: Request) -> String {
        "http://\(Self.authority(of: request) ?? "localhost:\(bootPort.get())")"
    }

    func script(_ text: String) -> Response {
        Response(
            status: .ok, headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

extension Store {
    /// The node that has `mac`, if any.
    public func node(forMAC mac: String) async throws -> NodeConfig? {
        try await read { try await nodeOwning(macs: [mac]) }
    }
}
