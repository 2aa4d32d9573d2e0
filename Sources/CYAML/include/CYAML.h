#ifndef CYAML_H
#define CYAML_H

// The one door to libyaml (Debian's libyaml-dev). The agent parses layouts with
// libyaml's document loader directly instead of a Swift YAML package, because
// those pull in the whole of Foundation and its 34 MB of ICU data into a
// static binary that has to fit in an initramfs.

#include <yaml.h>

/// libyaml's version string, e.g. "0.2.5".
const char *CYAML_version(void);

#endif
