#ifndef CFUZZDRIVER_H
#define CFUZZDRIVER_H
#include <stddef.h>
#include <stdint.h>

/// libFuzzer's entry for programs that keep their own main (compiler-rt, LLVM 12 and later). Only
/// `provisioner-fuzz` built with -sanitize=fuzzer links it; SwiftPM names the executable's main itself.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
