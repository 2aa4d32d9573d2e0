#include "CYAML.h"

const char *CYAML_version(void) { return yaml_get_version_string(); }
