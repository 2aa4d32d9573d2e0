import Hummingbird
import ProvisionerPKI

extension Services {
    /// Image manifests and objects from STATE/images, as docs/image-format.md defines them.
    /// Added when ProvisionerImage (the image store) is merged.
    func addImageRoutes(to router: Router<ProvisionerContext>, roles: Set<CertificateRole>) {}
}
