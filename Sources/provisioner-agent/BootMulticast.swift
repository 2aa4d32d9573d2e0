import ProvisionerAPI
import ProvisionerBoot
import ProvisionerCore
import ProvisionerImage
import ProvisionerSystem

#if canImport(Glibc)
    import Glibc
#endif

/// The multicast steps of the boot (docs/boot.md, rows M1–M5; docs/multicast.md): ask, receive.
extension BootRunner {
    /// M1: ask the server; its answer (or silence) goes to the machine.
    func askMulticast(_ query: MulticastQuery) -> BootDecision {
        guard let session else { return machine.multicastUnavailable("no session") }
        do {
            return machine.multicastAnswered(try session.multicast(image: query.image, version: query.version))
        } catch {
            return machine.multicastUnavailable("\(error)")
        }
    }

    /// M2: receive on the interface in the offer's network; whatever arrived goes to the sync.
    func receiveMulticast(_ task: MulticastTask) -> BootDecision {
        let offer = task.offer
        guard let network = IPv4Network(parsing: offer.network) else {
            return machine.multicastReceived(objects: 0, problem: "the server's network \(offer.network) is not a CIDR")
        }
        let local: InterfaceAddress?
        do { local = try NetworkInterfaces.interface(in: network) } catch {
            return machine.multicastReceived(objects: 0, problem: "\(error)")
        }
        guard let local else {
            return machine.multicastReceived(
                objects: 0, problem: "this machine has no address in the provisioning network \(network)")
        }
        session?.event(
            "image",
            "multicast: receiving \(offer.image)@\(offer.version.prefix(12)) (\(ProgressText.megabytes(offer.streamBytes)), "
                + "\(offer.objects) objects) on \(local.interface) (\(IPv4Network.text(local.address))), "
                + "port \(offer.portBase); waiting up to \(offer.startTimeoutSeconds) s for it to start")
        session?.flush()
        let started = monotonicSeconds()
        let argv = MulticastReceiver.arguments(
            portBase: offer.portBase, interface: local.interface, startTimeoutSeconds: offer.startTimeoutSeconds,
            receiveTimeoutSeconds: offer.receiveTimeoutSeconds)
        let result = MulticastReceiver.receive(argv, into: task.directory)
        let seconds = monotonicSeconds() - started
        session?.event(
            "image",
            "multicast: received \(result.objects) of \(offer.objects) objects (\(ProgressText.megabytes(result.bytes))) "
                + "in \(ProgressText.seconds(seconds))" + (result.complete ? "" : " (incomplete)"),
            seconds: seconds)
        return machine.multicastReceived(objects: result.objects, problem: result.problem)
    }
}

extension BootRunner {
    /// Removes the received objects after the sync (they are on the root's filesystem, or in RAM).
    func removeTree(_ directory: String) {
        let result = try? Command.run(["rm", "-rf", "--one-file-system", directory])
        if result?.status != 0 {
            warn("could not remove \(directory): \(result?.lastMessage ?? "rm did not start")", phase: .image)
        }
    }
}
