import Foundation
import HTTPTypes
import Hummingbird
import ProvisionerAPI
import ProvisionerCore
import ProvisionerImage

/// What the admin sees of the image's kernels (docs/boot.md, "Which kernel boots"):
///
/// - `GET /api/v1/admin/images/NAME/kernels?version=REF`: the kernels of a version (the live one by
///   default), what was made of each, and which node boots which;
/// - `GET /api/v1/admin/nodes/NAME/boot`: what one node boots and why.
extension Services {
    func addKernelAdminRoutes(to group: RouterGroup<ProvisionerContext>) {
        group.get("images/:name/kernels") { request, context -> Response in
            let name = try context.parameters.require("name")
            guard ImageNames.isValid(name), let record = try await self.store.image(named: name) else {
                throw APIError.notFound("unknown-image", "no image named \(name.terminalSafe)")
            }
            let ref: ImageRef
            do throws(ConfigError) {
                ref = try ImageRef(parsing: name + (request.uri.queryParameters["version"].map { "@" + $0 } ?? ""))
            } catch {
                throw APIError(.badRequest, "bad-version", "version: \(error.problem)")
            }
            guard let version = record.resolve(ref) else {
                throw APIError.notFound("unknown-version", "image \(name) has no version \(ref.version ?? ref.spelled)")
            }
            return json(try await self.versionKernels(image: name, version: version))
        }
        group.get("nodes/:name/boot") { _, context -> Response in
            let name = try context.parameters.require("name")
            guard let record = try await self.store.node(named: name) else {
                throw APIError.notFound("unknown-node", "no node named \(name.terminalSafe)")
            }
            return json(try await self.nodeBoot(record.config))
        }
    }

    func versionKernels(image: String, version: String) async throws -> VersionKernels {
        guard let scan = try await kernels.scan(image: image, version: version) else {
            throw APIError.notFound("unknown-version", "the store has no manifest for \(image)@\(version.prefix(12))")
        }
        var infos: [KernelInfo] = []
        for kernel in scan.kernels {
            var info = KernelInfo(
                release: kernel.release, kernelPath: kernel.kernelPath, kernelSize: kernel.kernelSize,
                modulesPath: kernel.modulesPath, moduleCount: kernel.moduleCount)
            do {
                let made = try await kernels.derived(kernel, image: image, version: version)
                info.kernelFile = made.kernelFile
                info.modulesFile = made.modulesFile
                info.modulesFileSize = made.modulesSize
                info.initrdModules = made.modules
                info.initrdFirmware = made.firmware
                info.seconds = made.seconds
            } catch {
                info.problem = "\(error)"
            }
            infos.append(info)
        }
        var nodes: [NodeBoot] = []
        for record in try await store.nodes() where record.config.image?.name == image {
            guard let node = try? await resolved(record.config), node.image?.version == version else { continue }
            nodes.append(try await nodeBoot(node))
        }
        return VersionKernels(image: image, version: version, kernels: infos, problems: scan.problems, nodes: nodes)
    }

    func nodeBoot(_ config: NodeConfig) async throws -> NodeBoot {
        let node: NodeConfig
        do { node = try await resolved(config) ?? config } catch let error as APIError {
            return NodeBoot(node: config.name, image: config.image?.spelled, boot: nil, problem: error.message)
        }
        let (result, label) = await bootFiles(for: node)
        switch result {
        case .success(let files): return NodeBoot(node: node.name, image: label, boot: files, problem: nil)
        case .failure(let error): return NodeBoot(node: node.name, image: label, boot: nil, problem: error.description)
        }
    }

    /// A node that pins a kernel release is refused when its image's version (as it resolves now)
    /// does not carry it, naming the kernels it does carry.
    func checkKernelPin(_ config: NodeConfig) async throws {
        guard let pin = config.kernelRelease, config.kernel == nil, config.initramfs == nil,
            let node = try await resolved(config), let ref = node.image, let version = ref.version,
            ImageNames.isVersionID(version), let scan = try await kernels.scan(image: ref.name, version: version)
        else { return }
        guard scan.kernels.contains(where: { $0.release == pin }) else {
            let has = scan.kernels.map(\.release).joined(separator: ", ")
            throw APIError(
                .unprocessableContent, "unknown-kernel",
                "kernelRelease: \(ref.name)@\(version.prefix(12)) carries no kernel \(pin.terminalSafe)"
                    + (has.isEmpty ? " (it has no kernel)" : " (it has \(has))"))
        }
    }

    /// The registry's image record with each version's kernel releases filled in.
    func withKernels(_ record: ImageRecord) async -> ImageRecord {
        var record = record
        for i in record.versions.indices {
            if let scan = try? await kernels.scan(image: record.name, version: record.versions[i].id) {
                record.versions[i].kernels = scan.kernels.map(\.release)
            }
        }
        return record
    }
}
