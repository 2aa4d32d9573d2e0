#ifndef CARCHIVE_H
#define CARCHIVE_H

// libarchive, for importing root filesystem tarballs (server side only). Swift calls
// libarchive's own functions through this module.

#include <archive.h>
#include <archive_entry.h>

#endif
