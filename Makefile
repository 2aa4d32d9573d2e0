# The provisioner: top-level targets.
#
#   make demo       build everything, boot a VM with several disks, show what the agent finds
#   make test       all tests: unit, libblkid on image files, and VM tests under QEMU
#   make agent      the static, stripped agent   -> build/bin/provisioner-agent
#   make initramfs  the node initramfs           -> build/initramfs/initramfs-$(KVER).img
#   make initramfs-base  the kernel-independent base every image kernel boots with
#                   -> build/initramfs/initramfs-base.img (copy it to the server's files/initramfs/base)
#   make bench-sync image sync vs rsync over SSH  -> docs/bench-sync.md (a benchmark, not a test)
#   make bench-fleet one image to N agents at once: unicast, mirror, multicast -> docs/bench-fleet.md
#                   (a benchmark, not a test; N="10 25 50", MODES="unicast mirror multicast", RATE=200mbit)
#   make fuzz       every parser under libFuzzer + ASan, FUZZ_SECONDS (300) each -> build/fuzz
#
# Every target installs what it needs with apt-get first (set NO_APT=1 to skip).

SHELL := /bin/bash
REPO  := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
# Evaluated when used: on a fresh machine the kernel only arrives with `deps`,
# which is why the public targets run `deps` and then a second make.
KVER  ?= $(shell ls /boot/vmlinuz-* 2>/dev/null | sed 's|^/boot/vmlinuz-||' | sort -V | tail -n 1)
SUBMAKE := $(MAKE) --no-print-directory -f $(REPO)/Makefile NO_APT=1

AGENT          := $(REPO)/build/bin/provisioner-agent
STATIC_SCRATCH := $(REPO)/.build/static
TEST_INITRAMFS := $(REPO)/build/initramfs/initramfs-test-$(KVER).img
TEST_BASE      := $(REPO)/build/initramfs/initramfs-test-base.img
KERNEL_COPY    := $(REPO)/build/initramfs/vmlinuz-$(KVER)
CLUSTER_TLS    := $(REPO)/build/cluster/tls

# Debian packages for building, the initramfs, the VM tests and the demo.
PACKAGES := build-essential pkg-config libblkid-dev libyaml-dev file binutils \
	libssl-dev libzstd-dev libarchive-dev attr acl libcap2-bin \
	qemu-system-x86 qemu-utils linux-image-amd64 dracut-core dracut-network systemd udev kmod \
	mdadm lvm2 gdisk fdisk parted e2fsprogs xfsprogs dosfstools efibootmgr zstd cpio \
	systemd-boot-efi ovmf mmdebstrap curl python3 nginx systemd-container \
	openssh-client tpm2-tools swtpm swtpm-tools \
	dnsmasq-base ipxe iproute2 udpcast nftables
# Only for make bench-sync.
BENCH_PACKAGES := mmdebstrap rsync openssh-server openssh-client python3 bc e2fsprogs mount
# Only for make bench-fleet.
FLEET_PACKAGES := nginx udpcast iproute2 python3 curl util-linux coreutils procps

.PHONY: all deps agent initramfs initramfs-base build-initramfs-base initramfs-test test demo clean help format bench-sync fuzz run-fuzz \
	build-agent build-debug build-image build-initramfs build-initramfs-test run-tests run-demo run-bench-sync \
	bench-fleet run-bench-fleet

all: agent initramfs

help:
	@sed -n '2,14p' $(REPO)/Makefile | sed 's/^# \{0,1\}//'

# Installs the Debian packages that are missing; does nothing when all are there.
deps:
ifndef NO_APT
	@missing=$$(for p in $(PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endif

agent: deps
	@$(SUBMAKE) build-agent
initramfs: deps
	@$(SUBMAKE) build-initramfs
initramfs-base: deps
	@$(SUBMAKE) build-initramfs-base
initramfs-test: deps
	@$(SUBMAKE) build-initramfs-test
test: deps
	@$(SUBMAKE) run-tests
demo: deps
	@$(SUBMAKE) run-demo
fuzz: deps
	@$(SUBMAKE) run-fuzz
bench-sync: PACKAGES += $(BENCH_PACKAGES)
bench-sync: deps
	@$(SUBMAKE) run-bench-sync
bench-fleet: PACKAGES += $(FLEET_PACKAGES)
bench-fleet: deps
	@$(SUBMAKE) run-bench-fleet

# One static release build, stripped: this is what goes into every node's initramfs.
ICU_LINKED := the agent links ICU's 34 MB table: something it depends on imports Foundation, not FoundationEssentials (docs/architecture.md)
build-agent:
	swift build -c release --product provisioner-agent --static-swift-stdlib \
		-Xswiftc -static-executable --scratch-path $(STATIC_SCRATCH)
	@mkdir -p $(dir $(AGENT))
	strip -o $(AGENT) $(STATIC_SCRATCH)/release/provisioner-agent
	@file $(AGENT) | grep -q 'statically linked' || { echo "error: $(AGENT) is not statically linked" >&2; exit 1; }
	@! nm $(STATIC_SCRATCH)/release/provisioner-agent | grep -q ' icudt[0-9]*_dat$$' || { echo "error: $(ICU_LINKED)" >&2; exit 1; }
	@echo "agent: $(AGENT) ($$(stat -c %s $(AGENT)) bytes, statically linked, stripped)"

build-initramfs: build-agent
	$(MAKE) -C $(REPO)/initramfs initramfs KVER=$(KVER) AGENT=$(AGENT)

build-initramfs-base: build-agent
	$(MAKE) -C $(REPO)/initramfs initramfs KVER=$(KVER) AGENT=$(AGENT) NO_KERNEL=1 \
		OUTPUT=$(REPO)/build/initramfs/initramfs-base.img

# The debug build of everything (server, provisionerctl, provisioner-vm, tests).
build-debug:
	swift build --build-tests

# The cluster CA of the tests and the demo: its client certificate goes into the test
# initramfs, its server certificate names 127.0.0.1 and 10.0.2.2 (the host as QEMU's
# user network shows it). Made once; `make clean` removes it.
$(CLUSTER_TLS)/ca.pem:
	$(REPO)/.build/debug/provisionerctl ca init --dir $(CLUSTER_TLS) --ip 127.0.0.1 --ip 10.0.2.2 \
		--name localhost --admin admin

# The initramfs plus the test runner module the VM harness talks to (inactive unless the
# kernel command line says provisioner.test), with the test cluster's certificates.
build-initramfs-test: build-agent build-debug $(CLUSTER_TLS)/ca.pem
	$(MAKE) -C $(REPO)/initramfs initramfs KVER=$(KVER) AGENT=$(AGENT) \
		EXTRA_MODULES=provisioner-test OUTPUT=$(TEST_INITRAMFS) \
		CA_CERT=$(CLUSTER_TLS)/ca.pem CLIENT_CERT=$(CLUSTER_TLS)/client.pem CLIENT_KEY=$(CLUSTER_TLS)/client-key.pem
	$(MAKE) -C $(REPO)/initramfs initramfs KVER=$(KVER) AGENT=$(AGENT) NO_KERNEL=1 \
		EXTRA_MODULES=provisioner-test OUTPUT=$(TEST_BASE) \
		CA_CERT=$(CLUSTER_TLS)/ca.pem CLIENT_CERT=$(CLUSTER_TLS)/client.pem CLIENT_KEY=$(CLUSTER_TLS)/client-key.pem

# The node image of the demo and the boot scenarios (cached in build/images).
build-image:
	$(REPO)/scripts/build-image.sh $(REPO)/build/images

BOOT_ENV := KERNEL=$(KERNEL_COPY) INITRD=$(TEST_INITRAMFS) BASE_INITRD=$(TEST_BASE) BIN=$(REPO)/.build/debug TLS=$(CLUSTER_TLS) \
	IMAGES=$(REPO)/build/images

VM_ENV := PROVISIONER_VM_KERNEL=$(KERNEL_COPY) PROVISIONER_VM_INITRD=$(TEST_INITRAMFS) \
	PROVISIONER_VM_ARTIFACTS=$(REPO)/build/vm-artifacts

run-tests: build-initramfs-test build-image
	# Every step runs even after one fails, and the run ends with a summary naming each failing
	# test or scenario (scripts/test-all.sh; logs in build/test-logs).
	VM_ENV="$(VM_ENV)" BOOT_ENV="$(BOOT_ENV)" KVER=$(KVER) AGENT=$(AGENT) $(REPO)/scripts/test-all.sh

# Long fuzz runs (make test runs each target for 20 s); new inputs land in build/fuzz/corpus.
FUZZ_SECONDS ?= 300
run-fuzz:
	$(REPO)/scripts/fuzz.sh -t $(FUZZ_SECONDS)

run-demo: build-initramfs-test build-image
	$(BOOT_ENV) $(REPO)/scripts/demo.sh

# Our sync (static agent over HTTPS from provisioner-server, and from a local store) against
# rsync -aHAX over a loopback SSH, on a Debian root plus generated files (>= 100k files, >= 1 GB);
# writes the measured table to docs/bench-sync.md.
run-bench-sync: build-agent
	swift build -c release --product provisionerctl
	swift build -c release --product provisioner-server
	$(REPO)/scripts/bench-sync.sh

# N real static agents boot N stateless nodes at once, each in a network namespace of its own, the
# server's link limited with tc: unicast, through an nginx caching mirror, and multicast; writes the
# measured table to docs/bench-fleet.md.
run-bench-fleet: build-agent build-debug $(CLUSTER_TLS)/ca.pem
	BIN=$(REPO)/.build/debug AGENT=$(AGENT) TLS=$(CLUSTER_TLS) $(REPO)/scripts/bench-fleet.sh

# One formatting command for the whole tree (.swift-format: 4 spaces, 120 columns).
format:
	swift format -i -r $(REPO)/Sources $(REPO)/Tests $(REPO)/Package.swift

clean:
	rm -rf $(REPO)/build $(REPO)/.build
