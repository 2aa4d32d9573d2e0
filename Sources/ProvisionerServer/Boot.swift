import Foundation
import HTTPTypes
import Hummingbird
import NIOPosix
import ProvisionerAPI
import ProvisionerCore
import ProvisionerImage

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

    /// Boots `files` (what `BootSelection` chose for `node`, or the server's default for an unknown
    /// machine) with the agent's arguments. Each initrd is named, and the command line lists them
    /// (`initrd=`), as a kernel started through UEFI needs.
    public static func boot(
        node: NodeConfig?, files: BootFiles, mac: String, bootBase: String, serverURL: String, mirrors: [String]
    ) -> String {
        let names = files.initrds.indices.map { [0: "initramfs", 1: "modules"][$0] ?? "initrd\($0)" }
        var args = names.map { "initrd=\($0)" }
        args += ["root=provisioner", "provisioner.server=\(serverURL)", "provisioner.mac=\(mac)"]
        if !mirrors.isEmpty { args.append("provisioner.mirrors=\(mirrors.joined(separator: ","))") }
        // The kernel modules the node's layout needs, loaded by the initrd while it waits for the
        // network (provisioner-modules.service; docs/boot.md): no mount waits for one later.
        if let text = node?.layout, let layout = try? DiskLayout(parsing: text, source: "layout"),
            !layout.kernelModules.isEmpty
        {
            args.append("provisioner.modules=\(layout.kernelModules.joined(separator: ","))")
        }
        args += node?.kernelArgs ?? []
        // Never the node's name: this script is served without a certificate to whoever asks.
        let what = node == nil ? "unknown machine, discovery boot" : "assigned machine"
        let initrds = zip(names, files.initrds).map { "initrd --name \($0) \(bootBase)\($1.bootPath)\n" }.joined()
        return """
            #!ipxe
            # provisioner: \(what) (\(mac)); kernel \(files.release ?? files.kernel.name): \(files.reason)
            kernel \(bootBase)\(files.kernel.bootPath) \(args.joined(separator: " "))
            \(initrds)boot

            """
    }

    /// A node that cannot boot as told (its pinned kernel is not in its image): ask again. Why is
    /// for the admin (`provisionerctl nodes show`, the server's log), not for whoever asks for the
    /// script without a certificate.
    public static func cannotBoot(seconds: Int, bootBase: String) -> String {
        """
            #!ipxe
            # provisioner: this machine cannot boot as assigned (provisionerctl nodes show NODE says why)
            echo provisioner: this machine cannot boot as assigned; the admin sees why (provisionerctl nodes show)
            echo provisioner: asking again in \(seconds) s
            sleep \(seconds)
            chain \(bootBase)/boot/start.ipxe

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
            if let defined = try await store.node(forMAC: mac) {
                // iPXE runs scripts, not JSON: a node whose image cannot be resolved (it follows a
                // branch that was deleted) is told why on its console and asks again.
                let node: NodeConfig
                do {
                    node = try await self.resolved(defined) ?? defined
                } catch let error as APIError {
                    context.logger.warning("iPXE: node \(defined.name) (\(mac)) cannot boot: \(error.message)")
                    return self.script(IPXEScript.cannotBoot(seconds: config.pollAfterSeconds, bootBase: base))
                }
                switch await self.bootFiles(for: node).result {
                case .success(let files):
                    return self.script(
                        IPXEScript.boot(
                            node: node, files: files, mac: mac, bootBase: base, serverURL: self.serverURL(for: request),
                            mirrors: self.config.mirrors))
                case .failure(let error):
                    context.logger.warning("iPXE: node \(node.name) (\(mac)) cannot boot: \(error.description)")
                    return self.script(IPXEScript.cannotBoot(seconds: config.pollAfterSeconds, bootBase: base))
                }
            }
            let facts = HardwareFacts(dmi: query.dmi)
            try self.registrations.admit(
                address: context.remoteAddress, macs: [mac], what: "an iPXE request", logger: context.logger)
            _ = try await store.openSession(
                macs: [mac], facts: facts, remoteAddress: context.remoteAddress, source: "ipxe",
                limits: config.registration, caller: nil)
            self.metrics.sessionOpened(source: "ipxe")
            switch config.unknownMachines {
            case .wait:
                return self.script(IPXEScript.wait(mac: mac, seconds: config.pollAfterSeconds, bootBase: base))
            case .discover:
                let files = BootFiles.serverDefault(reason: "an unknown machine: the server's default kernel")
                return self.script(
                    IPXEScript.boot(
                        node: nil, files: files, mac: mac, bootBase: base, serverURL: self.serverURL(for: request),
                        mirrors: self.config.mirrors))
            }
        }
        for kind in [FileKind.kernels, .initramfs, .derived] {
            for method in [HTTPRequest.Method.get, .head] {
                boot.on("\(kind.rawValue)/:name", method: method) { request, context -> Response in
                    try await self.files.respond(
                        [kind.rawValue, try context.parameters.require("name")], request: request, context: context)
                }
            }
        }
    }

    /// What `node` (its image resolved to a version) boots, and the image version as messages name it.
    func bootFiles(for node: NodeConfig) async -> (result: Result<BootFiles, BootSelectionError>, image: String?) {
        var label: String?
        var offers: [KernelOffer]?
        if let ref = node.image {
            var version = ref.version
            if version == nil || version == "latest" {
                let store = ImageStore(root: config.imagesDirectory)
                version = (try? await NIOThreadPool.singleton.runIfActive { try store.latest(image: ref.name) })??.hex
            }
            if let version {
                label = "\(ref.name)@\(version.prefix(12))"
                offers = try? await kernels.offers(image: ref.name, version: version)
            } else {
                label = ref.name
            }
        }
        let hasBase = FileManager.default.fileExists(atPath: config.filesDirectory + "/" + BootSelection.base.tree + "/" + BootSelection.base.name)
        do throws(BootSelectionError) {
            return (.success(try BootSelection.choose(node: node, image: label, kernels: offers, hasBase: hasBase)), label)
        } catch {
            return (.failure(error), label)
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
